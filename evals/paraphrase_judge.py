"""Can SmolLM2-135M-Instruct tell whether two wordings ask the same relation? (issue #6, measured, not adopted)

The relation cosine of the subject-relation check rejects paraphrases worded apart from the fact's relation. A
second opinion from the LLM was tried: the model is shown two sentence beginnings about one placeholder subject
and asked "Yes or No" whether they ask for the same fact; score = log p(Yes) - log p(No). Pairs: CounterFact
TRAIN relation templates (the clusters of ``evals/relation_map_experiment.py``), 200 same-relation and 200
other-relation pairs drawn at random (seed 0). ROC AUC of the LLM's score beside MiniLM's relation-wording cosine,
on all pairs and on those in the cosine band [0.3, 0.75) that the check leaves unsure.

    python evals/paraphrase_judge.py [--data-dir ../shared/data] [--out evals/results/paraphrase_judge.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from scr.config import Settings
from scr.evaluation.data import data_dir
from scr.kb.embed import Embedder
from scr.llm import make_backend
from scr.models import DEFAULT_EMBEDDER
from scr.scope import relation_wording

from relation_map_experiment import relation_clusters  # noqa: E402

SUBJECT = "Jon Tarsk"  # a placeholder name
PAIRS = 200  # per class


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="evals/results/paraphrase_judge.md")
    args = ap.parse_args()
    start = time.time()
    records = json.loads((data_dir(args.data_dir) / "counterfact/counterfact_train.json").read_text())
    clusters = relation_clusters(records)
    templates = [t for c in clusters for t in c]
    labels = np.array([i for i, c in enumerate(clusters) for _ in c])
    upper = np.triu_indices(len(templates), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    rng = np.random.default_rng(0)
    chosen = np.concatenate([rng.choice(np.where(same)[0], PAIRS, replace=False),
                             rng.choice(np.where(~same)[0], PAIRS, replace=False)])
    pairs = [(templates[upper[0][i]].format(SUBJECT), templates[upper[1][i]].format(SUBJECT)) for i in chosen]
    y = np.array([1] * PAIRS + [0] * PAIRS)
    embedder = Embedder(DEFAULT_EMBEDDER)
    a = embedder.embed([relation_wording(p, SUBJECT) for p, _ in pairs])
    b = embedder.embed([relation_wording(q, SUBJECT) for _, q in pairs])
    cosine = (a * b).sum(1)
    backend = make_backend(Settings())
    prompts = [[{"role": "user", "content": f"Do these two sentence beginnings ask for the same fact about {SUBJECT}?"
                                            f"\n1. {p} ...\n2. {q} ...\nAnswer Yes or No."}] for p, q in pairs]
    yes = backend.token_logprobs(prompts, ["Yes"] * len(prompts))
    no = backend.token_logprobs(prompts, ["No"] * len(prompts))
    judge = np.array([s.total - t.total for s, t in zip(yes, no)])
    band = (cosine >= 0.3) & (cosine < 0.75)
    lines = ["# The LLM as a relation-paraphrase judge (issue #6, measured, not adopted)", "",
             "Command: `python evals/paraphrase_judge.py`; SmolLM2-135M-Instruct, all-minilm-l6-v2; CounterFact train "
             "relation templates (see the script's docstring).", "",
             "| pairs | n | same relation | MiniLM cosine AUC | LLM yes/no AUC |", "|---|---:|---:|---:|---:|",
             f"| all | {len(y)} | {y.sum()} | {roc_auc_score(y, cosine):.3f} | {roc_auc_score(y, judge):.3f} |",
             f"| cosine in [0.3, 0.75) | {band.sum()} | {y[band].sum()} | {roc_auc_score(y[band], cosine[band]):.3f} | "
             f"{roc_auc_score(y[band], judge[band]):.3f} |", "",
             "Reading: the model's yes/no carries almost no signal about whether two wordings ask the same relation, "
             "and none in the band where the cosine is unsure, so it is not used.", "",
             f"Wall time {time.time() - start:.0f} s (2 cores)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
