"""The SCR ablation table of issue #6: each scope configuration side by side on both test splits.

Reads the committed evaluator reports (nothing is re-run) and writes ``evals/results/scr_ablation.md`` and
``scr_ablation.png``. The rows come from the suites' runs:

    scr eval --suite evals/knowedit_zsre.toml
    scr eval --suite evals/knowedit_wiki.toml
    python evals/scr_ablation.py [--latency evals/results/scope_latency.txt]

The context oracle is the same answer prompt with a perfect scope decision: the ceiling any scope check can
reach with this model. Latency per query comes from ``benchmarks/bench_scope_latency.py`` (its output file).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = [("ZsRE test", "knowedit_zsre_test"), ("WikiData_counterfact test", "knowedit_wiki_counterfact_test")]
ROWS = [  # (method in the reports, what it is, latency-benchmark mode)
    ("base", "unmodified model (no update)", None),
    ("context-oracle", "right fact always in context (perfect scope)", None),
    ("scr-paper", "paper's free-text scope prompt", "paper"),
    ("scr-default", "key-similarity gate (default)", "similarity"),
    ("scr-encoder", "scope cross-encoder", "encoder"),
]
METRICS = ["reliability", "generalization", "locality", "portability", "scope_accuracy"]


def read_latency(path: Path) -> dict[str, float]:
    """``mode -> ratio to the plain answer`` from the benchmark's printed table."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(\S[\w -]*?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s", line + " ")
        if m:
            out[m.group(1).strip()] = float(m.group(3))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", default=str(RESULTS / "scope_latency.txt"))
    ap.add_argument("--out", default=str(RESULTS), help="folder for scr_ablation.md and .png")
    args = ap.parse_args(argv)
    out = Path(args.out)
    latency = read_latency(Path(args.latency))
    lines = ["# SCR configurations side by side (issue #6)", "",
             "SmolLM2-135M-Instruct + all-MiniLM-L6-v2, sequential N = all, generation, `contains`, %. Rows read from",
             "the committed reports by `python evals/scr_ablation.py`; each report names its own command.",
             "x plain = median latency per query relative to the plain answer (`evals/results/scope_latency.txt`).", ""]
    table = {}
    for title, folder in SPLITS:
        report = json.loads((RESULTS / folder / "report.json").read_text())
        lines += [f"## {title}", "", "| method | configuration | " + " | ".join(METRICS) + " | x plain | wall s |",
                  "|---|---|" + "---:|" * (len(METRICS) + 2)]
        for method, what, mode in ROWS:
            entry = report["methods"].get(method)
            if not entry or not entry.get("complete"):
                lines.append(f"| {method} | {what} | " + " | ".join("not run" for _ in METRICS) + " | | |")
                continue
            m = entry["metrics"]
            table.setdefault(title, {})[method] = m
            cells = [f"{100 * m[k]:.1f}" if k in m else "–" for k in METRICS]
            ratio = f"{latency[mode]:.2f}" if mode in latency else "–"
            lines.append(f"| {method} | {what} | " + " | ".join(cells) + f" | {ratio} | {entry['cost']['wall_s']:.0f} |")
        lines.append("")
    lines += ["## Notes", "",
              "- wall s: the run's own wall time on 2 cores, with the unmodified model's answers shared through the",
              "  suite's memo (computed once by `base`); a standalone run costs more (`evals/README.md`).",
              "- x plain below 1: answers with a fact in context end sooner than the plain model's, which often",
              "  restates the prompt up to the 24-token limit.",
              "- Answer prompting, measured on the train splits with a perfect scope decision: the paper's prompt",
              "  stays (`evals/results/answer_prompt.md`); the context oracle is therefore the ceiling of every row.",
              "- Scope classifiers trained on the train splits: `evals/results/scope_encoder.md` (the cross-encoder),",
              "  `scope_classifier.md` (feature logistic regression, an ablation), `scope_calibration.md` (gate threshold),",
              "  `scope_choice.md` (the LLM's constrained choice).", ""]
    (out / "scr_ablation.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, len(table), figsize=(7 * len(table), 4), squeeze=False)
    for ax, (title, methods) in zip(axes[0], table.items()):
        width = 0.8 / len(methods)
        for i, (method, m) in enumerate(methods.items()):
            xs = [j + i * width for j in range(len(METRICS))]
            ax.bar(xs, [100 * m.get(k, 0.0) for k in METRICS], width, label=method)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(METRICS))], METRICS, rotation=20)
        ax.set_ylim(0, 100)
        ax.set_title(title)
    axes[0][0].set_ylabel("%")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scr_ablation.png", dpi=110)
    print((out / "scr_ablation.md").read_text())


if __name__ == "__main__":
    main()
