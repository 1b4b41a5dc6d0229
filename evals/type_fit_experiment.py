"""Does the question expect the fact's object? An LLM signal for the subject-relation check (issue #6).

The subject-relation check (scr/scope.py) decides "same relation" by the embedder's cosine between relation
wordings, and the cosine cannot tell "What family are Epaspidoceras?" (in scope of "Which family does
Epaspidoceras belong to? Noctuidae") from "The taxon rank of Epaspidoceras is" (another relation). The model may:
a question that asks the fact's relation should make the fact's object about as likely as the fact's own prompt
does, and a question about another relation should not. Scores per (question Q, fact prompt K, object O), mean
log-probability per token of O as the chat answer (the answer prompt SCR uses, no fact in context):
- ``fit_fact``  = logp(O | Q) - logp(O | K): how far the question falls short of the fact's own prompt;
- ``fit_prior`` = logp(O | Q) - logp(O | "Tell me about S."): pointwise mutual information against a neutral
  question about the subject.

Pairs are each probe against its own case's fact, as in evals/calibrate_relation.py. The report gives each score's
ROC AUC between an in-scope and an out-of-scope probe set; a score would earn a threshold (chosen on TRAIN) only if
it separated them where the cosine cannot: the "band" pairs, which the check leaves to the cosine (no word rule,
relation cosine in [0.5, 0.75)). The test splits are reported, never used to choose.

    python evals/type_fit_experiment.py [--limit 1000] [--out evals/results/type_fit]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from scr.config import Settings
from scr.kb.embed import Embedder
from scr.llm import as_chat, make_backend
from scr.models import DEFAULT_EMBEDDER

from calibrate_relation import features  # noqa: E402  (evals/ is the script's own folder)

BAND = (0.5, 0.75)


def _objects(value) -> str:
    return value[0] if isinstance(value, list) else value


def _pairs(data_dir: Path, limit: int, seed: int) -> dict[str, list[tuple[str, str, str, str]]]:
    """(question, fact prompt, subject, object) per probe set; the object is the update's new target."""
    cf = json.loads((data_dir / "counterfact/counterfact_train.json").read_text())
    wtr = json.loads((data_dir / "knowedit/wiki_counterfact_train.json").read_text())
    wte = json.loads((data_dir / "knowedit/wiki_counterfact_test.json").read_text())
    zte = json.loads((data_dir / "knowedit/zsre_test.json").read_text())

    def probes(records, part, kind):
        return [(x["prompt"], r["prompt"], r["subject"], _objects(r["target_new"])) for r in records
                for x in ((r.get(part) or {}).get(kind) or [])]

    sets = {
        "train: counterfact rephrase (in)": [(r["rephrase_prompt"], r["prompt"], r["subject"], r["target_new"])
                                              for r in cf],
        "train: wiki_counterfact Subject_Aliasing (in)": probes(wtr, "portability", "Subject_Aliasing"),
        "train: wiki_counterfact Relation_Specificity (out)": probes(wtr, "locality", "Relation_Specificity"),
        "test: wiki_counterfact rephrase (in)": [(r["rephrase"], r["prompt"], r["subject"],
                                                   _objects(r["target_new"])) for r in wte],
        "test: wiki_counterfact Relation_Specificity (out)": probes(wte, "locality", "Relation_Specificity"),
        "test: zsre rephrase (in)": [(r["rephrase_prompt"], r["prompt"], r["subject"], _objects(r["target_new"]))
                                      for r in zte],
        "test: zsre Relation_Specificity (out)": probes(zte, "locality", "Relation_Specificity"),
    }
    rng = random.Random(seed)
    return {name: rng.sample(p, min(limit, len(p))) for name, p in sets.items()}


def _mean_logprob(backend, questions: list[str], objects: list[str]) -> np.ndarray:
    scores = backend.token_logprobs([as_chat(q) for q in questions], objects)
    return np.array([s.total / max(len(s.logprobs), 1) for s in scores])


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of in-scope against out-of-scope scores; NaN when either side is empty."""
    if not len(pos) or not len(neg):
        return float("nan")
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--limit", type=int, default=1000, help="pairs sampled per probe set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="evals/results/type_fit")
    args = ap.parse_args()
    start = time.time()
    backend = make_backend(Settings())
    emb = Embedder(DEFAULT_EMBEDDER)
    rows = {}
    for name, pairs in _pairs(Path(args.data_dir), args.limit, args.seed).items():
        q, k, s, o = map(list, zip(*pairs))
        lq = _mean_logprob(backend, q, o)
        lk = _mean_logprob(backend, k, o)
        ln = _mean_logprob(backend, [f"Tell me about {x}." for x in s], o)
        f = features(emb, [(a, b, c) for a, b, c, _ in pairs])
        band = ~f["contains"] & f["names"] & (f["relation"] >= BAND[0]) & (f["relation"] < BAND[1])
        rows[name] = {"fit_fact": lq - lk, "fit_prior": lq - ln, "relation": f["relation"], "band": band}
        print(f"{name}: {len(pairs)} pairs, {band.sum()} in the band ({time.time() - start:.0f} s)", flush=True)

    train_in = [n for n in rows if n.startswith("train:") and n.endswith("(in)")]
    train_out = [n for n in rows if n.startswith("train:") and n.endswith("(out)")]
    lines = ["# Does the question expect the fact's object? (issue #6, an experiment)", "",
             f"Command: `python evals/type_fit_experiment.py --limit {args.limit} --seed {args.seed}`; "
             f"SmolLM2-135M-Instruct, {DEFAULT_EMBEDDER}; {time.time() - start:.0f} s on the 2-core machine. "
             "See the script's docstring for the scores.", "",
             "ROC AUC, in-scope probe set against out-of-scope probe set of the same split (all pairs / band "
             f"pairs: no word rule, relation cosine in [{BAND[0]}, {BAND[1]})):", "",
             "| in scope | out of scope | relation cosine | fit_fact | fit_prior | band: relation cosine | "
             "band: fit_fact | band: fit_prior | band pairs (in / out) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    pairs_of = [(i, o) for i in train_in for o in train_out] + [
        ("test: wiki_counterfact rephrase (in)", "test: wiki_counterfact Relation_Specificity (out)"),
        ("test: zsre rephrase (in)", "test: zsre Relation_Specificity (out)")]
    for i, o in pairs_of:
        a, b = rows[i], rows[o]
        cells = [auc(a[x], b[x]) for x in ("relation", "fit_fact", "fit_prior")]
        cells += [auc(a[x][a["band"]], b[x][b["band"]]) for x in ("relation", "fit_fact", "fit_prior")]
        lines.append(f"| {i} | {o} | " + " | ".join(f"{c:.3f}" for c in cells)
                     + f" | {a['band'].sum()} / {b['band'].sum()} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
