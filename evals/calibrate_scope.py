"""Calibrate the default scope threshold: cosine(question, fact key) on TRAIN splits only.

In-scope pairs: a paraphrase of the edit prompt vs the fact's key (CounterFact train `rephrase_prompt`;
KnowEdit WikiData_counterfact train `Subject_Aliasing` prompts, which ask the same relation of an alias).
Out-of-scope pairs: prompts that must not be touched vs the same fact's key (CounterFact train
`locality_prompt`: same relation, another subject; WikiData_counterfact train `Relation_Specificity`: same
subject, another relation). The threshold maximising balanced accuracy on the pooled pairs is reported.

    python evals/calibrate_scope.py [--data-dir ../shared/data] [--limit 3000] [--out evals/results/scope_calibration]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scr.kb.embed import Embedder
from scr.models import DEFAULT_EMBEDDER


def _pairs(data_dir: Path, limit: int):
    pos, neg = [], []  # (question, key, dataset)
    cf = json.loads((data_dir / "counterfact/counterfact_train.json").read_text())[:limit]
    for r in cf:
        if r.get("rephrase_prompt"):
            pos.append((r["rephrase_prompt"], r["prompt"], "counterfact"))
        if r.get("locality_prompt"):
            neg.append((r["locality_prompt"], r["prompt"], "counterfact"))
    wiki = json.loads((data_dir / "knowedit/wiki_counterfact_train.json").read_text())[:limit]
    for r in wiki:
        for item in (r.get("portability") or {}).get("Subject_Aliasing") or []:
            pos.append((item["prompt"], r["prompt"], "wiki_counterfact"))
        for item in (r.get("locality") or {}).get("Relation_Specificity") or []:
            neg.append((item["prompt"], r["prompt"], "wiki_counterfact"))
    return pos, neg


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    grid = np.unique(np.concatenate([pos, neg]))
    best = (0.0, 0.0)
    for t in grid:
        bal = 0.5 * ((pos >= t).mean() + (neg < t).mean())
        if bal > best[1]:
            best = (float(t), float(bal))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--limit", type=int, default=3000, help="records per train file")
    ap.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    ap.add_argument("--out", default="evals/results/scope_calibration")
    args = ap.parse_args()
    start = time.time()
    pos, neg = _pairs(Path(args.data_dir), args.limit)
    emb = Embedder(args.embedder)

    def cos(pairs):
        q = emb.embed([p[0] for p in pairs])
        k = emb.embed([p[1] for p in pairs])
        return (q * k).sum(axis=1)

    ps, ns = cos(pos), cos(neg)
    threshold, balanced = best_threshold(ps, ns)
    result = {"embedder": args.embedder, "threshold": round(threshold, 4), "balanced_accuracy": balanced,
              "n_pos": len(pos), "n_neg": len(neg), "per_dataset": {}, "seconds": round(time.time() - start, 1)}
    for name in ("counterfact", "wiki_counterfact"):
        p = ps[[i for i, x in enumerate(pos) if x[2] == name]]
        n = ns[[i for i, x in enumerate(neg) if x[2] == name]]
        result["per_dataset"][name] = {
            "n_pos": len(p), "n_neg": len(n),
            "accept_rate_in_scope": float((p >= threshold).mean()), "reject_rate_out_of_scope": float((n < threshold).mean()),
            "own_best": best_threshold(p, n),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Scope threshold calibration (train splits only)", "",
        f"Command: `python evals/calibrate_scope.py --limit {args.limit}`; embedder `{args.embedder}`; "
        f"data: CounterFact train, KnowEdit WikiData_counterfact train; {result['seconds']} s.", "",
        f"Chosen threshold (max balanced accuracy on pooled pairs): **{threshold:.3f}**, "
        f"balanced accuracy {balanced:.3f} ({len(pos)} in-scope, {len(neg)} out-of-scope pairs).", "",
        "| dataset | in-scope pairs | out-of-scope pairs | accepted in-scope | rejected out-of-scope | own best (t, bal. acc.) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["per_dataset"].items():
        lines.append(f"| {name} | {r['n_pos']} | {r['n_neg']} | {r['accept_rate_in_scope']:.3f} | "
                     f"{r['reject_rate_out_of_scope']:.3f} | {r['own_best'][0]:.3f}, {r['own_best'][1]:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
