"""Can a relation-similarity map learned on train data tell paraphrased relations apart better than MiniLM's cosine?

The subject-relation scope check rejects most paraphrases it misses on the relation cosine (question and fact key
with the subject removed, threshold 0.75; evals/results/scope_relation.md). This script asks whether a linear map
over the embedder's vectors, trained on same-relation wordings, would help on relations it was not trained on
(ZsRE's test relations are mostly not CounterFact's).

Same-relation wordings come from CounterFact train alone: each record's prompt is a relation template filled
with its subject ("{} spoke the language"), and its ``locality_prompt`` is the same relation for another subject
in another template ("The native language of {} is"). Templates linked by at least two records are joined into
relation clusters; clusters of three or more templates are kept. Pairs of templates in one cluster are positives,
pairs across clusters negatives. A generic template ("{}, the") can join two relations into one cluster, so a few
positives are really other-relation pairs: the figures are a rough guide, which is all a negative result needs.

Measured: the cosine's ROC AUC and acceptance at the check's thresholds, then, in 5 folds over the clusters, a
map W (identity at start; supervised contrastive loss, weight decay towards identity) trained on 4/5 of the
clusters and scored on pairs involving the held-out fifth, beside the plain cosine on the same pairs.

Also measured: a nearest-relation rule. Beside a bank of other relations' wordings, a question's wording b is
taken for the fact's relation a when cos(a, b) >= 0.75, or when cos(a, b) >= floor and no bank wording is closer
to the question by more than ``margin``. Two banks: (1) the fact's whole relation cluster left out of the bank (the
fact's relation unseen, every other relation seen: the best case); (2) every other template in the bank, less those
within cosine ``exclude`` of the fact's wording (taken for the same relation: the bank cannot know which are).

    python evals/relation_map_experiment.py [--data-dir ../shared/data] [--out evals/results/relation_map.md]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from scr.kb.embed import Embedder
from scr.models import DEFAULT_EMBEDDER
from scr.scope import relation_wording

PLACEHOLDER_SUBJECT = "Zorblax Quenty"  # a name with no meaning, removed again by relation_wording


def relation_clusters(records: list[dict], min_links: int = 2, min_size: int = 3) -> list[list[str]]:
    """Templates ("{} spoke the language") grouped by relation, from prompt -> locality-prompt links."""
    templates = collections.Counter(r["prompt"].replace(r["subject"], "{}", 1) for r in records
                                    if r["subject"] in r["prompt"])
    patterns = [(t, re.compile("^" + re.escape(t).replace(r"\{\}", "(.+?)") + "$")) for t in templates]
    links: collections.Counter = collections.Counter()
    for r in records:
        if r["subject"] not in r["prompt"]:
            continue
        matched = [t for t, pattern in patterns if pattern.match(r["locality_prompt"])]
        if matched:  # the most specific template that reads the locality prompt
            links[r["prompt"].replace(r["subject"], "{}", 1), max(matched, key=len)] += 1
    parent = {t: t for t in templates}

    def root(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for (a, b), count in links.items():
        if count >= min_links:
            parent[root(a)] = root(b)
    groups = collections.defaultdict(list)
    for t in templates:
        groups[root(t)].append(t)
    return [sorted(g) for g in groups.values() if len(g) >= min_size]


def pair_auc(vectors: np.ndarray, labels: np.ndarray, rows: list[int]) -> float:
    """AUC of cosine for pairs (row, any other template): same cluster = positive."""
    sims = vectors[rows] @ vectors.T
    same = labels[rows][:, None] == labels[None, :]
    keep = np.ones_like(same, dtype=bool)
    keep[np.arange(len(rows)), rows] = False  # a template with itself
    return float(roc_auc_score(same[keep], sims[keep]))


def train_map(vectors: torch.Tensor, labels: torch.Tensor, decay: float, steps: int = 300) -> torch.Tensor:
    dim = vectors.shape[1]
    weight = torch.nn.Parameter(torch.eye(dim))
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    positives = (labels[:, None] == labels[None, :]).float() - torch.eye(len(labels))
    for _ in range(steps):
        z = torch.nn.functional.normalize(vectors @ weight, dim=1)
        logits = z @ z.T / 0.1 - 1e9 * torch.eye(len(labels))
        log_p = logits.log_softmax(1)
        loss = -(log_p * positives).sum(1).div(positives.sum(1).clamp(min=1)).mean()
        loss = loss + decay * ((weight - torch.eye(dim)) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weight.detach()


def nearest_rule(sims: np.ndarray, labels: np.ndarray, margin: float, floor: float,
                 exclude: float | None) -> tuple[float, float]:
    """(same-relation pairs accepted, other-relation pairs accepted) by the nearest-relation rule (docstring);
    ``exclude`` None: bank (1), the fact's cluster left out; else bank (2)."""
    accepted = {True: [], False: []}
    n = len(labels)
    for fact in range(n):
        bank = labels != labels[fact] if exclude is None else sims[:, fact] < exclude
        for question in range(n):
            if question == fact:
                continue
            competitors = bank.copy()
            competitors[[question, fact]] = False
            s = sims[question, fact]
            best = sims[question, competitors].max()
            accepted[bool(labels[question] == labels[fact])].append(s >= 0.75 or (s >= floor and s >= best - margin))
    return float(np.mean(accepted[True])), float(np.mean(accepted[False]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--out", default="evals/results/relation_map.md")
    args = ap.parse_args()
    start = time.time()
    torch.manual_seed(0)
    records = json.loads((Path(args.data_dir) / "counterfact/counterfact_train.json").read_text())
    clusters = relation_clusters(records)
    templates = [t for c in clusters for t in c]
    labels = np.array([i for i, c in enumerate(clusters) for _ in c])
    wordings = [relation_wording(t.format(PLACEHOLDER_SUBJECT), PLACEHOLDER_SUBJECT) for t in templates]
    vectors = Embedder(DEFAULT_EMBEDDER).embed(wordings)
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(templates), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    pos, neg = sims[upper][same], sims[upper][~same]

    lines = ["# A learned relation map against the embedder's cosine (issue #6, measured, not adopted)", "",
             "Command: `python evals/relation_map_experiment.py`; embedder `all-minilm-l6-v2`; data CounterFact "
             "train only (templates and their locality links; see the script's docstring).", "",
             f"{len(clusters)} relation clusters, {len(templates)} templates; {len(pos)} same-relation pairs, "
             f"{len(neg)} other-relation pairs. Cosine ROC AUC **{roc_auc_score(same, sims[upper]):.3f}**.", "",
             "| relation threshold | same-relation pairs accepted | other-relation pairs accepted |",
             "|---:|---:|---:|"]
    lines += [f"| {t} | {(pos >= t).mean():.3f} | {(neg >= t).mean():.3f} |" for t in (0.5, 0.6, 0.65, 0.75)]

    folds = np.array_split(np.random.default_rng(0).permutation(len(clusters)), 5)
    x, y = torch.tensor(vectors), torch.tensor(labels)
    lines += ["", "Held-out relations (5 folds over clusters): AUC of pairs that involve a held-out template.", "",
              "| fold | held-out clusters | cosine | map, decay 1.0 | map, decay 0.01 |", "|---:|---:|---:|---:|---:|"]
    for k, held in enumerate(folds):
        held_set = set(held.tolist())
        test_rows = [i for i in range(len(templates)) if labels[i] in held_set]
        train_rows = [i for i in range(len(templates)) if labels[i] not in held_set]
        cells = [f"{pair_auc(vectors, labels, test_rows):.3f}"]
        for decay in (1.0, 0.01):
            w = train_map(x[train_rows], y[train_rows], decay)
            mapped = torch.nn.functional.normalize(x @ w, dim=1).numpy()
            cells.append(f"{pair_auc(mapped, labels, test_rows):.3f}")
        lines.append(f"| {k} | {len(held)} | " + " | ".join(cells) + " |")
    lines += ["", "Nearest-relation rule (see the docstring): share of same- and other-relation template pairs "
              "accepted.",
              "", "| bank | margin | floor | same-relation accepted | other-relation accepted |",
              "|---|---:|---:|---:|---:|"]
    for exclude in (None, 0.5, 0.6, 0.7):
        bank = "(1) fact's relation left out" if exclude is None else f"(2) all, less cosine >= {exclude} to the fact"
        for margin in (0.0, 0.1):
            for floor in (0.3, 0.45):
                tpr, fpr = nearest_rule(sims, labels, margin, floor, exclude)
                lines.append(f"| {bank} | {margin} | {floor} | {tpr:.3f} | {fpr:.4f} |")
    lines += ["", "Reading: same-relation template pairs are mostly far apart in cosine (a threshold that accepts "
              "half of them also accepts about 3% of other-relation pairs), and a map trained on some relations "
              "does not carry over to the others: no change to the scope check. The nearest-relation rule helps "
              "only where the bank holds none of the fact's own relation (bank 1, about 6 times fewer other-relation "
              "pairs than a plain threshold at the same acceptance); with the fact's relation in the bank, as it "
              "would be in use, its trade-off is the plain threshold's (bank 2 against the table above): not "
              "adopted either.",
              "", f"Wall time {time.time() - start:.0f} s."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
