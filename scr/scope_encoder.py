"""Scope as pair classification: a cross-encoder reads the question and one retrieved fact TOGETHER.

A single cosine between question and fact mixes who the question is about with what it asks, so a question
about the same subject but another relation ("The name of the mother of X is" beside the fact "The name of the
country of citizenship of X is Syria.") looks as close as a paraphrase. Reading both texts in one pass lets
attention compare the relation words directly, which is what the SERAC scope classifier does.

The encoder is the embedded sentence model (all-MiniLM-L6-v2, a 6-layer BERT) with low-rank adapters (LoRA)
on every linear layer of its transformer blocks and one logistic output on the mean-pooled tokens. Only the
adapters and the output are trained (``evals/train_scope.py``, train splits only), so what ships is a small
file (``scr/data/scope_encoder.safetensors``) beside the unchanged base weights from their package.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from scr.models import resolve_embedder, set_offline_env

DEFAULT_ENCODER_PATH = Path(__file__).parent / "data" / "scope_encoder.safetensors"
# Linear layers of a BERT block that get an adapter.
_ADAPTED = ("query", "key", "value", "dense")


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) B A x, with W frozen; B starts at zero so training starts from the base model."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


@dataclass
class EncoderInfo:
    """What a saved adapter was built on and how it decides; stored in the file's metadata."""

    base: str  # the embedder name or folder the adapters belong to
    rank: int = 8
    alpha: float = 16.0
    max_length: int = 128
    threshold: float = 0.5  # probability at or above which the best fact is in scope
    trained_on: str = ""


class ScopeEncoder(nn.Module):
    def __init__(self, info: EncoderInfo, device: str = "cpu"):
        super().__init__()
        set_offline_env()
        from transformers import AutoModel, AutoTokenizer

        from scr.models import quiet_loading

        quiet_loading()
        folder = resolve_embedder(info.base)
        self.info = info
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.bert = AutoModel.from_pretrained(folder)
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for layer in self.bert.encoder.layer:
            for parent in list(layer.modules()):
                for name, child in list(parent.named_children()):
                    if name in _ADAPTED and isinstance(child, nn.Linear):
                        setattr(parent, name, LoRALinear(child, info.rank, info.alpha))
        self.head = nn.Linear(self.bert.config.hidden_size, 1)
        self.to(device)
        self.device = device
        self.eval()

    def logits(self, questions: Sequence[str], facts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(questions), list(facts), truncation=True, max_length=self.info.max_length,
                             padding=True, return_tensors="pt").to(self.device)
        hidden = self.bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return self.head(pooled).squeeze(-1)

    @torch.no_grad()
    def probabilities(self, questions: Sequence[str], facts: Sequence[str], batch_size: int = 64,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """P(fact answers question) for each (question, fact) pair."""
        self.eval()
        out = []
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(questions)), key=lambda i: len(questions[i]) + len(facts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out.append(torch.sigmoid(self.logits([questions[i] for i in idx], [facts[i] for i in idx])))
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
        probs = np.empty(len(questions), dtype=np.float32)
        if out:
            probs[order] = torch.cat(out).float().cpu().numpy()
        return probs

    # Adapter file ----------------------------------------------------------------------------------------
    def trainable(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({n: p.detach().contiguous().cpu() for n, p in self.trainable().items()}, str(tmp),
                  metadata={"scope_encoder": json.dumps(asdict(self.info))})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> "ScopeEncoder":
        info, tensors = _read(path, tensors=True)
        model = cls(info, device=device)
        expected = set(model.trainable())
        if set(tensors) != expected:
            raise ValueError(f"{path}: adapter tensors do not match the {info.base} encoder "
                             f"({len(set(tensors) ^ expected)} names differ)")
        with torch.no_grad():
            for name, p in model.trainable().items():
                p.copy_(tensors[name])
        return model


def read_info(path: str | Path | None = None) -> EncoderInfo:
    """An adapter file's description (base, threshold, training data) without loading any model."""
    return _read(path, tensors=False)[0]


def _read(path: str | Path | None, tensors: bool) -> tuple[EncoderInfo, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path or DEFAULT_ENCODER_PATH)
    try:
        with safe_open(str(path), framework="pt") as fh:
            info = EncoderInfo(**json.loads((fh.metadata() or {})["scope_encoder"]))
            return info, {name: fh.get_tensor(name) for name in fh.keys()} if tensors else {}
    except (OSError, KeyError, TypeError, ValueError, SafetensorError) as exc:
        raise ValueError(f"{path}: not a scope-encoder adapter file ({exc})") from exc
