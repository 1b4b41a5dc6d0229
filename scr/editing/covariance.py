"""C0: the uncentred second moment of W_out's input keys over a general text corpus, cached on disk.

C0 = (1/n) sum_t k_t k_t^T over every token of the corpus, one matrix per (model, layer, corpus, sample size).
The papers use 100k Wikipedia samples. Offline we use, by default, WikiText-2 raw *test* (Wikipedia
articles, ~300k SmolLM2 tokens) from the shared data folder; without it, text sampled from the model itself.
The forward pass stops after the highest layer asked for, so the cost grows with the depth of the edit.
Files live under ``scr.models.cache_dir()/stats/<model>/<corpus>/`` and are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from scr.editing.hooks import StopForward, capture_inputs
from scr.editing.hparams import CovarianceSettings
from scr.editing.presets import Architecture
from scr.models import cache_dir

WIKITEXT2_RELATIVE = Path("general") / "wikitext2_test.raw"


def shared_data_dir() -> Path:
    """$SCR_DATA_DIR, else ``../shared/data`` beside the project root (where the evaluation data lives)."""
    if os.environ.get("SCR_DATA_DIR"):
        return Path(os.environ["SCR_DATA_DIR"]).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def resolve_corpus(settings: CovarianceSettings) -> tuple[str, Path | None]:
    """(corpus name used in the cache path, text file or None for model-generated text)."""
    if settings.corpus == "wikitext2":
        path = shared_data_dir() / WIKITEXT2_RELATIVE
        return ("wikitext2", path) if path.exists() else ("generated", None)
    if settings.corpus == "generated":
        return "generated", None
    path = Path(settings.corpus).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"covariance corpus {path} does not exist")
    digest = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}".encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)}-{digest}", path


def model_fingerprint(model) -> str:
    """Name + hash of the config and the (never edited) input embeddings, so random test models don't collide."""
    h = hashlib.sha1(model.config.to_json_string(use_diff=False).encode())
    emb = model.get_input_embeddings().weight
    h.update(emb[: min(64, emb.shape[0])].detach().float().cpu().numpy().tobytes())
    name = Path(str(getattr(model.config, "_name_or_path", "") or "model")).name
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:40] or 'model'}-{h.hexdigest()[:10]}"


def stats_dir(model, settings: CovarianceSettings) -> Path:
    corpus_name, _ = resolve_corpus(settings)
    return (cache_dir() / "stats" / model_fingerprint(model)
            / f"{corpus_name}-n{settings.n_samples}-t{settings.sample_tokens}")


def atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@torch.no_grad()
def generated_chunks(model, tok, n: int, length: int, batch_size: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` token chunks of ``length`` sampled from the model (top-k 40, seeded), a corpus that always exists."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    starts = [tok(w, add_special_tokens=False)["input_ids"][0]
              for w in ("The", "In", "A", "It", "This", "He", "She", "There", "When", "After")]
    chunks = []
    for b in range(0, n, batch_size):
        rows = min(batch_size, n - b)
        ids = torch.tensor([[starts[(b + i) % len(starts)]] for i in range(rows)], device=device)
        past, step_ids = None, ids
        for _ in range(length - 1):
            out = model(input_ids=step_ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            top = torch.topk(out.logits[:, -1].float().cpu(), 40)
            picks = torch.multinomial(top.values.softmax(-1), 1, generator=generator)
            step_ids = top.indices.gather(1, picks).to(device)
            ids = torch.cat([ids, step_ids], dim=1)
        chunks.extend(ids.cpu())
    return chunks


def text_chunks(tok, path: Path, n: int, length: int) -> list[torch.Tensor]:
    """The first ``n`` consecutive ``length``-token windows of a text file."""
    ids: list[int] = []
    with open(path, encoding="utf-8") as f:
        for line in f:  # tokenise line by line until we have enough tokens
            if line.strip():
                ids.extend(tok(line, add_special_tokens=False)["input_ids"])
            if len(ids) >= n * length:
                break
    return [torch.tensor(ids[i : i + length]) for i in range(0, min(len(ids), n * length) - length + 1, length)]


def key_covariances(model, tok, arch: Architecture, layers, settings: CovarianceSettings) -> dict[int, torch.Tensor]:
    """{layer: C0 [d_in, d_in] float32}; missing layers are computed together in one pass and cached."""
    folder = stats_dir(model, settings)
    result, missing = {}, []
    for layer in layers:
        path = folder / f"layer{layer}.pt"
        if path.exists():
            result[layer] = torch.load(path, map_location="cpu", weights_only=True)["cov"]
        else:
            missing.append(layer)
    if not missing:
        return result

    computed, count = compute_key_covariances(model, tok, arch, missing, settings)
    corpus_name, _ = resolve_corpus(settings)
    for layer, cov in computed.items():
        atomic_save({"cov": cov, "n_tokens": count, "corpus": corpus_name}, folder / f"layer{layer}.pt")
        result[layer] = cov
    return result


def compute_key_covariances(model, tok, arch: Architecture, layers, settings: CovarianceSettings
                            ) -> tuple[dict[int, torch.Tensor], int]:
    """({layer: C0}, number of tokens), computed in one pass over the corpus, not cached."""
    missing = sorted(layers)
    corpus_name, corpus_path = resolve_corpus(settings)
    if corpus_path is None:
        chunks = generated_chunks(model, tok, settings.n_samples, settings.sample_tokens, settings.batch_size)
    else:
        chunks = text_chunks(tok, corpus_path, settings.n_samples, settings.sample_tokens)
    modules = {layer: arch.mlp_out(model, layer) for layer in missing}
    last = modules[max(missing)]
    device = next(model.parameters()).device
    sums = {layer: torch.zeros(arch.key_dim(model, layer), arch.key_dim(model, layer), dtype=torch.float64)
            for layer in missing}
    count = 0
    batches = range(0, len(chunks), settings.batch_size)
    bar = tqdm(batches, desc=f"C0 {corpus_name} layers {missing}", disable=not settings.show_progress)
    with torch.no_grad():
        for b in bar:
            ids = torch.stack(chunks[b : b + settings.batch_size]).to(device)
            store: dict = {}
            with capture_inputs(modules, store, stop_at=last):
                try:
                    model(input_ids=ids)
                except StopForward:
                    pass
            for layer in missing:
                keys = store[layer].reshape(-1, store[layer].shape[-1]).float()
                sums[layer] += (keys.T @ keys).double().cpu()
            count += ids.numel()
    return {layer: (sums[layer] / max(count, 1)).float() for layer in missing}, count
