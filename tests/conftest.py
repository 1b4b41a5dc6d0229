"""Shared fixtures: real embedded models (loaded once per session) and a tiny random Llama for fast tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scr.models import set_offline_env

set_offline_env(force=True)

DATA_DIR = Path(os.environ.get("SCR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ["SCR_DATA_DIR"] = str(DATA_DIR)  # the library resolves dataset paths the same way as the tests

# Tests marked `data` read the public benchmarks in the shared data folder. One rule when it is missing: the run
# stops before any test with one message (a checkout away from ../shared is the usual cause), unless
# SCR_SKIP_DATA_TESTS=1 asks to skip exactly those tests.
SKIP_DATA_TESTS = os.environ.get("SCR_SKIP_DATA_TESTS", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    needing = [item for item in items if item.get_closest_marker("data")]
    if not needing or DATA_DIR.is_dir():
        return
    if not SKIP_DATA_TESTS:
        raise pytest.UsageError(
            f"{len(needing)} selected tests need the shared benchmark data, and {DATA_DIR} does not exist: set "
            f"SCR_DATA_DIR to the data folder (see the README), or SCR_SKIP_DATA_TESTS=1 to skip those tests")
    skip = pytest.mark.skip(reason=f"SCR_SKIP_DATA_TESTS=1 and no data at {DATA_DIR}")
    for item in needing:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def embedder():
    from scr.kb.embed import Embedder

    return Embedder("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from scr.models import export_smollm2

    return export_smollm2()


@pytest.fixture(scope="session")
def smol_backend(smollm2_dir):
    from scr.llm.hf import TransformersBackend

    return TransformersBackend.load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer and chat template (head_dim 64, as vLLM's CPU kernels need)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_backend(tiny_llama_dir):
    from scr.llm.hf import TransformersBackend

    return TransformersBackend.load(str(tiny_llama_dir), batch_size=4)


@pytest.fixture
def make_kb(tmp_path, embedder):
    """Open (or reopen) a knowledge base in a test folder with the real embedder."""
    from scr.kb import KnowledgeBase

    opened = []

    def _make(store: str = "faiss", directory: Path | None = None, **kwargs) -> KnowledgeBase:
        kb = KnowledgeBase(directory or tmp_path / "kb", embedder=embedder, store=store, **kwargs)
        opened.append(kb)
        return kb

    yield _make
    for kb in opened:
        try:
            kb.close()
        except Exception:
            pass
