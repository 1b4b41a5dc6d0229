"""An ablation of the scope check (not used by the product): a logistic regression over hand-made features.

Scope as classification: is a retrieved fact about the same subject AND the same relation as the question?

The LLM of the embedded size cannot say "none" (evals/results/scope_choice.md) and one cosine between the
question and the fact key mixes two things: who the question is about and what it asks. A question about the
same subject but another relation ("The place of birth of X is" beside the fact "The gender of X is female.")
is near the key by its subject alone. So each (question, retrieved fact) pair is described by a few features
that separate the two parts, and a logistic regression trained on the train splits only
(``evals/train_scope.py``) turns them into a probability that the fact answers the question.

Features (the fact's subject is removed from both texts where it occurs, leaving the relation):
  key_cos       cosine(question, fact key)            text_cos      cosine(question, fact text)
  rel_cos       cosine(question - subject, key - subject)
  subj_cover    fraction of the subject's words found in the question
  rel_cover     fraction of the key's relation words found in the question
  q_cover       fraction of the question's relation words found in the key
  margin        key_cos minus the best key_cos among the other candidates
A fact stored without a subject gets subj_cover 0 and the plain texts in place of the relation texts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from scr.kb.records import FactHit

FEATURES = ("key_cos", "text_cos", "rel_cos", "subj_cover", "rel_cover", "q_cover", "margin")
DEFAULT_MODEL_PATH = Path(__file__).parent / "results" / "scope_features_model.json"

# Words that carry no subject or relation (question words, articles, copulas).
_STOP = frozenset("a an the of is are was were be been what which who whom whose where when why how does do did "
                  "to in on at for by with and or as that this name names".split())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _content(words: Sequence[str]) -> set[str]:
    return {w for w in words if w not in _STOP}


def _cover(part: set[str], whole: set[str]) -> float:
    return len(part & whole) / len(part) if part else 0.0


def strip_subject(text: str, subject: str | None) -> tuple[str, bool]:
    """The text without the subject's mention (case-insensitive), and whether it was there."""
    if not subject:
        return text, False
    pattern = re.compile(re.escape(subject.strip()), re.IGNORECASE)
    stripped, count = pattern.subn(" ", text)
    return (" ".join(stripped.split()) or text, count > 0)


@dataclass
class PairTexts:
    """The texts one (question, fact) pair is compared by."""

    question_rel: str  # the question without the fact's subject
    key_rel: str  # the fact key without its subject
    subj_cover: float
    rel_cover: float
    q_cover: float


def pair_texts(question: str, hit: FactHit) -> PairTexts:
    key = hit.key or hit.text
    q_rel, _ = strip_subject(question, hit.subject)
    k_rel, _ = strip_subject(key, hit.subject)
    q_words = set(_words(question))
    subj = _content(_words(hit.subject)) if hit.subject else set()
    subj_cover = _cover(subj, q_words) if subj else 0.0
    q_rel_c, k_rel_c = _content(_words(q_rel)) - subj, _content(_words(k_rel)) - subj
    return PairTexts(q_rel, k_rel, subj_cover, _cover(k_rel_c, q_rel_c), _cover(q_rel_c, k_rel_c))


def candidate_features(questions: Sequence[str], candidates: Sequence[list[FactHit]],
                       embed: Callable[[list[str]], np.ndarray]) -> list[np.ndarray]:
    """One feature matrix [len(hits), len(FEATURES)] per question. ``embed`` gives unit vectors."""
    pairs = [[pair_texts(q, h) for h in hits] for q, hits in zip(questions, candidates)]
    texts = sorted({t for row in pairs for p in row for t in (p.question_rel, p.key_rel)})
    vectors = dict(zip(texts, embed(texts))) if texts else {}
    out = []
    for hits, row in zip(candidates, pairs):
        feats = np.zeros((len(hits), len(FEATURES)), dtype=np.float32)
        for i, (h, p) in enumerate(zip(hits, row)):
            others = [o.key_score for j, o in enumerate(hits) if j != i]
            rel_cos = float(np.dot(vectors[p.question_rel], vectors[p.key_rel]))
            feats[i] = (h.key_score, h.score, rel_cos, p.subj_cover, p.rel_cover, p.q_cover,
                        h.key_score - max(others, default=0.0))
        out.append(feats)
    return out


@dataclass
class ScopeModel:
    """A logistic regression over standardised features (weights fitted by ``evals/train_scope.py``)."""

    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 0.5
    trained_on: str = ""

    def probability(self, feats: np.ndarray) -> np.ndarray:
        z = ((feats - self.mean) / self.std) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict:
        return {"features": list(self.features), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias, "threshold": self.threshold,
                "trained_on": self.trained_on}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | None = None) -> "ScopeModel":
        path = Path(path or DEFAULT_MODEL_PATH)
        try:
            raw = json.loads(path.read_text())
            model = cls(tuple(raw["features"]), np.asarray(raw["mean"], np.float32),
                        np.asarray(raw["std"], np.float32), np.asarray(raw["weights"], np.float32),
                        float(raw["bias"]), float(raw.get("threshold", 0.5)), raw.get("trained_on", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a scope model ({exc})") from exc
        if model.features != FEATURES:
            raise ValueError(f"{path}: model features {model.features} differ from this version's {FEATURES}")
        return model

    @classmethod
    def fit(cls, feats: np.ndarray, labels: np.ndarray, l2: float = 1e-3, steps: int = 500,
            trained_on: str = "") -> "ScopeModel":
        """Logistic regression by Newton's method (few features, so exact and fast); classes weighted equally."""
        mean, std = feats.mean(0), feats.std(0) + 1e-6
        x = np.hstack([(feats - mean) / std, np.ones((len(feats), 1))]).astype(np.float64)
        y = labels.astype(np.float64)
        pos = max(y.sum(), 1.0)
        neg = max(len(y) - y.sum(), 1.0)
        sample_w = np.where(y > 0, 0.5 / pos, 0.5 / neg)
        w = np.zeros(x.shape[1])
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-(x @ w)))
            grad = x.T @ (sample_w * (p - y)) + l2 * np.r_[w[:-1], 0.0]
            hess = (x * (sample_w * p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if math.sqrt(float(step @ step)) < 1e-8:
                break
        return cls(FEATURES, mean.astype(np.float32), std.astype(np.float32), w[:-1].astype(np.float32),
                   float(w[-1]), 0.5, trained_on)
