"""Fit the feature-based scope classifier (evals/scope_features.py, an ablation) on TRAIN splits; report its decisions on the test splits.

For each dataset a knowledge base holds every case's fact (as in the evaluator's sequential N = all), every
probe retrieves its top k facts through the real store, and each (probe, retrieved fact) pair is labelled 1 when
the probe is in scope (reliability, generalization, portability) and the fact is the probe's own case fact.
The decision per probe is the candidate with the highest probability, in scope when that probability reaches the
threshold; the threshold maximises the balanced scope accuracy on the train splits.

Train: KnowEdit WikiData_counterfact train (1427 cases) and CounterFact train (the first --cf-limit cases).
Reported, never fitted on: KnowEdit WikiData_counterfact test and ZsRE test. No LLM is involved: decisions only.

    python evals/train_scope.py [--cf-limit 3000] [--model evals/results/scope_features_model.json] \
        [--report evals/results/scope_classifier]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scr.evaluation.data import load_cases, resolve_data
from scr.kb.embed import Embedder
from scr.kb.records import FactHit, FactInput
from scr.kb.store import KnowledgeBase
from scr.models import DEFAULT_EMBEDDER, set_offline_env
from scope_features import DEFAULT_MODEL_PATH, FEATURES, ScopeModel, candidate_features

TRAIN = [("wiki_counterfact train", "knowedit/wiki_counterfact_train.json", "knowedit", None),
         ("counterfact train", "counterfact/counterfact_train.json", "counterfact", "cf_limit")]
TEST = [("wiki_counterfact test", "knowedit/wiki_counterfact_test.json", "knowedit", None),
        ("zsre test", "knowedit/zsre_test.json", "knowedit", None)]
SIMILARITY_GATE = 0.591  # the similarity scope mode's threshold (evals/results/scope_calibration.md)


@dataclass
class Split:
    """Every probe of a split's cases, with the facts it retrieves from a KB of all the split's facts."""

    name: str
    prompts: list[str]
    hits: list[list[FactHit]]  # per probe: its top-k retrieved facts
    own: list[int | None]  # per probe: index of its own fact among the candidates (None: not retrieved)
    own_text: list[str]  # per probe: its own case's fact
    own_key: list[str]  # per probe: that fact's key (the fact without its object: the case's prompt)
    in_scope: np.ndarray  # per probe
    kinds: list[str]
    case_index: list[int]
    feats: list[np.ndarray] | None = None  # per probe: [candidates, features], see with_features()

    def subset(self, keep: list[int], name: str) -> "Split":
        pick = lambda xs: [xs[n] for n in keep]  # noqa: E731
        return Split(name, pick(self.prompts), pick(self.hits), pick(self.own), pick(self.own_text),
                     pick(self.own_key), self.in_scope[keep], pick(self.kinds), pick(self.case_index),
                     pick(self.feats) if self.feats is not None else None)

    def with_features(self, embedder: Embedder) -> "Split":
        self.feats = candidate_features(self.prompts, self.hits, embedder.embed)
        return self

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = [], []
        for f, own, ins in zip(self.feats, self.own, self.in_scope):
            for i in range(len(f)):
                x.append(f[i])
                y.append(1.0 if ins and own == i else 0.0)
        return np.asarray(x, np.float32), np.asarray(y, np.float32)


def build_split(name: str, path: str, fmt: str, limit: int | None, embedder: Embedder, k: int) -> Split:
    cases = load_cases(resolve_data(path), fmt, limit)
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(Path(tmp) / "kb", embedder=lambda: embedder, embedder_name=embedder.name, create=True)
        kb.add([FactInput(**c.fact()) for c in cases])
        probes = [(p, n, c) for n, c in enumerate(cases) for p in c.probes]
        hits = kb.search([p.prompt for p, _, _ in probes], k)
        kb.close()
    own, own_text = [], []
    for (p, _, c), row in zip(probes, hits):
        text = c.fact()["text"]
        own_text.append(text)
        own.append(next((i for i, h in enumerate(row) if h.text == text), None))
    return Split(name, [p.prompt for p, _, _ in probes], hits, own, own_text, [c.prompt for _, _, c in probes],
                 np.array([p.in_scope for p, _, _ in probes]), [p.label for p, _, _ in probes],
                 [n for _, n, _ in probes])


def decide(split: Split, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(best candidate index, its score) per probe, from per-probe candidate scores."""
    best, value = np.full(len(scores), -1), np.full(len(scores), -np.inf)
    for n, s in enumerate(scores):
        if len(s):
            best[n], value[n] = int(np.argmax(s)), float(np.max(s))
    return best, value


def feature_scores(split: Split, score) -> list[np.ndarray]:
    return [score(f) for f in split.feats]


def metrics(split: Split, best: np.ndarray, value: np.ndarray, threshold: float) -> dict:
    accept = value >= threshold
    ins = split.in_scope
    right = np.array([a and o is not None and b == o for a, b, o in zip(accept, best, split.own)])
    out = {"accept_in_scope": float(accept[ins].mean()), "reject_locality": float((~accept[~ins]).mean())}
    out["balanced"] = 0.5 * (out["accept_in_scope"] + out["reject_locality"])
    out["right_fact_in_scope"] = float(right[ins].mean())  # accepted with the probe's own fact
    for kind in ("reliability", "generalization", "portability"):
        sel = np.array([k.split(".")[0] == kind for k in split.kinds])
        if sel.any():
            out[f"right_fact_{kind}"] = float(right[sel].mean())
    return out


def best_threshold(splits: list[Split], scores: list[list[np.ndarray]]) -> float:
    """The threshold that maximises the mean balanced accuracy over the splits (scores: per split, per probe)."""
    decided = [decide(s, sc) for s, sc in zip(splits, scores)]
    grid = np.unique(np.concatenate([v[np.isfinite(v)] for _, v in decided]))
    grid = grid[:: max(1, len(grid) // 2000)]
    bal = [np.mean([metrics(s, b, v, t)["balanced"] for s, (b, v) in zip(splits, decided)]) for t in grid]
    return float(grid[int(np.argmax(bal))])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cf-limit", type=int, default=3000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default=str(DEFAULT_MODEL_PATH))
    ap.add_argument("--report", default="evals/results/scope_classifier")
    args = ap.parse_args()
    set_offline_env()
    started = time.time()
    embedder = Embedder(DEFAULT_EMBEDDER)
    limits = {"cf_limit": args.cf_limit}
    train = [build_split(n, p, f, limits.get(lim) if lim else None, embedder, args.k).with_features(embedder)
             for n, p, f, lim in TRAIN]
    test = [build_split(n, p, f, None, embedder, args.k).with_features(embedder) for n, p, f, lim in TEST]
    x = np.concatenate([s.pairs()[0] for s in train])
    y = np.concatenate([s.pairs()[1] for s in train])
    trained_on = f"wiki_counterfact_train + counterfact_train[:{args.cf_limit}], k={args.k}, {len(y)} pairs"

    # Ablation: the similarity gate alone, and the classifier with feature groups removed (set constant).
    variants = {
        "similarity gate (key_cos >= 0.591)": None,
        "classifier: key_cos, text_cos, margin": ("key_cos", "text_cos", "margin"),
        "classifier: + rel_cos (subject removed)": ("key_cos", "text_cos", "margin", "rel_cos"),
        "classifier: + word cover (subject, relation)": ("key_cos", "text_cos", "margin", "subj_cover",
                                                         "rel_cover", "q_cover"),
        "classifier: all features (default)": FEATURES,
    }
    rows, shipped = [], None
    for label, names in variants.items():
        if names is None:
            def score(f):
                return f[:, FEATURES.index("key_cos")]
            threshold = SIMILARITY_GATE
        else:
            keep = np.array([n in names for n in FEATURES])
            model = ScopeModel.fit(np.where(keep, x, 0.0), y, trained_on=trained_on)
            def score(f, model=model, keep=keep):
                return model.probability(np.where(keep, f, 0.0))
            threshold = best_threshold(train, [feature_scores(s, score) for s in train])
            model.threshold = threshold
            if names == FEATURES:
                shipped = model
        row = {"variant": label, "threshold": round(threshold, 4)}
        for s in train + test:
            row[s.name] = metrics(s, *decide(s, feature_scores(s, score)), threshold)
        rows.append(row)
        print(label, {s.name: round(row[s.name]["balanced"], 3) for s in train + test}, flush=True)
    shipped.save(Path(args.model))
    seconds = time.time() - started
    write_report(Path(args.report), rows, train, test, args, seconds, shipped)


def write_report(out: Path, rows: list[dict], train, test, args, seconds: float, model: ScopeModel) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "model": model.to_json(),
                                                    "seconds": round(seconds, 1)}, indent=2) + "\n")
    names = [s.name for s in train + test]
    lines = [
        "# Scope decisions: similarity gate vs the scope classifier",
        "",
        f"Command: `python evals/train_scope.py --cf-limit {args.cf_limit} --k {args.k}`; embedder "
        f"all-minilm-l6-v2; {seconds:.0f} s on 2 CPU cores. Fitted and thresholded on the train splits only; the "
        "test splits are reported, never fitted on. Knowledge base = every case's fact of the split (sequential "
        "N = all); each probe retrieves its top 5; no LLM involved.",
        "",
        "Balanced scope accuracy = mean of (in-scope probes accepted) and (locality probes rejected); "
        "'right fact' = in-scope probes accepted WITH their own case's fact.",
        "",
        "| variant | threshold | " + " | ".join(f"{n}: balanced (accept / reject) / right fact" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = [f"{r[n]['balanced']:.3f} ({r[n]['accept_in_scope']:.3f} / {r[n]['reject_locality']:.3f}) / "
                 f"{r[n]['right_fact_in_scope']:.3f}" for n in names]
        lines.append(f"| {r['variant']} | {r['threshold']} | " + " | ".join(cells) + " |")
    lines += ["", "Right fact by probe kind (default classifier):", "",
              "| split | " + " | ".join(("reliability", "generalization", "portability")) + " |", "|---|---|---|---|"]
    last = rows[-1]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{last[n].get('right_fact_' + k, float('nan')):.3f}"
                                              for k in ("reliability", "generalization", "portability")) + " |")
    lines += ["", f"Fitted model: `evals/results/scope_features_model.json` (threshold {model.threshold:.4f}; weights over "
              f"standardised features {dict(zip(model.features, [round(float(w), 3) for w in model.weights]))})."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
