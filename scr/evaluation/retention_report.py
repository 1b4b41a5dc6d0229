"""The retention run's report: report.json, report.md (one table per benchmark, N across) and retention.png."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from scr.evaluation import general
from scr.evaluation.jsonl_log import read_sessions
from scr.evaluation.report import host_info, save_report
from scr.evaluation.runner import reported_methods


def build(runner) -> dict:
    c, s = runner.config, runner.settings
    from scr.evaluation.methods import kind_of, make_method
    from scr.evaluation.retention import RENDERING

    methods = {}
    for name in reported_methods(runner.out / "records", c.methods, kind_of):
        records = runner.records(name)
        if not records.rows:
            continue
        # Rows of other configurations (older runs in the same folder) are ignored: only this hash counts.
        method = make_method(name, s, runner.memo, runner.embedder, workdir=runner.out / "tmp",
                             edit_batch_size=c.edit_batch_size, editing=c.editing, prompt_format=RENDERING)
        h = runner._hash(method)
        stages = {}
        # Stages a run with a shorter --n list left out still belong in the report.
        recorded = {r["n"] for r in records.rows if r.get("h") == h and r.get("type") == "score"}
        for n in sorted(set(runner.stages(name)) | recorded):
            scores = {r["benchmark"]: r for r in records.select(h, "score", n)}
            applied = [r for r in records.select(h, "apply", n)]
            peak = [r["peak_rss_mb"] for r in records.select(h, "mem", n)]
            if not scores:
                continue
            stages[str(n)] = {
                "benchmarks": {b: {**scores[b]["metrics"], "seconds": scores[b]["seconds"]}
                               for b in c.benchmarks if b in scores},
                "complete": all(b in scores for b in c.benchmarks),
                "apply_s": applied[-1]["seconds"] if applied else None,
                "apply_details": applied[-1]["details"] if applied else None,
                "peak_rss_mb": max(peak) if peak else None,
            }
        methods[name] = {"info": method.info(), "stages": stages}
    sessions = read_sessions(runner.out)
    benchmarks = {b: {"source": "-", "items": 0, "note": "not scored yet", "headline": general.HEADLINE[b][0]}
                  for b in c.benchmarks}
    for name in methods:  # what each benchmark was, as its score rows recorded it
        for row in runner.records(name).rows:
            if row.get("type") == "score" and row.get("benchmark") in benchmarks:
                benchmarks[row["benchmark"]].update(source=row.get("source", "-"), items=row["metrics"]["items"],
                                                    note=row.get("note", ""))
    return {
        "title": c.title or "General-ability retention after N updates",
        "run": {"command": runner.command, "commands_all_sessions": sorted({x["command"] for x in sessions}),
                "updates": str(c.updates),
                # The N that have scores (a planned N only before any has: a --report-only run given an N
                # without records must not add an empty column).
                "n": sorted({int(n) for m in methods.values() for n in m["stages"]}) or sorted(set(c.n)),
                "llm": s.llm, "embedder": s.embedder, "backend": s.backend,
                "dtype": s.dtype, "scope_mode": s.scope_mode, "seed": c.seed, "edit_batch_size": c.edit_batch_size,
                "sessions": len(sessions), "sessions_wall_s": round(sum(x["seconds"] for x in sessions), 1),
                "host": host_info(),
                "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "benchmarks": benchmarks,
        "methods": methods,
    }


def _value(methods: dict, name: str, n: int, bench: str):
    stage = methods.get(name, {}).get("stages", {}).get(str(n))
    if not stage or bench not in stage["benchmarks"]:
        return None
    return stage["benchmarks"][bench]


def markdown(report: dict) -> str:
    run, methods = report["run"], report["methods"]
    ns = run["n"]
    commands = sorted(set(run["commands_all_sessions"]) | {run["command"]})
    lines = [f"# {report['title']}", "", "Command(s) that wrote these records: "
             + "; ".join(f"`{c}`" for c in commands), "",
             f"Model {run['llm']} ({run['backend']}, {run['dtype']}); SCR embedder {run['embedder']}, scope mode "
             f"`{run['scope_mode']}`. Updates: the first N records of `{run['updates']}`, applied cumulatively "
             f"(editing methods {run['edit_batch_size'] or 'all'} edits per call). N = 0 is the unmodified model "
             f"(`base`). Every score goes through the method: SCR decides scope on each benchmark context and, "
             f"when it injects a fact, scores the options after that fact. Wall time over "
             f"{run['sessions']} session(s): {run['sessions_wall_s']} s.", ""]
    for bench, info in report["benchmarks"].items():
        key = info["headline"]
        better = "higher" if general.HEADLINE[bench][1] else "lower"
        lines += [f"## {bench}: {key} ({better} is better)", "",
                  f"`{info['source']}`, {info['items']} items; {info['note']}".rstrip("; "), "",
                  "| method | " + " | ".join(f"N={n}" for n in ns) + " | facts injected at largest N |",
                  "|---|" + "---:|" * len(ns) + "---:|"]
        base = _value(methods, "base", 0, bench)
        for name in methods:
            cells, injected = [], "-"
            for n in ns:
                v = base if n == 0 else _value(methods, name, n, bench)
                cells.append("-" if v is None else _fmt(key, v[key]))
                if v is not None and n > 0:
                    injected = f"{100 * v.get('injected', 0):.1f}%"
            if name == "base":
                injected = "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {injected} |")
        lines.append("")
    lines += ["## Cost", "", "| method | N | apply (s) | scoring (s) | peak RSS (MB) |", "|---|---:|---:|---:|---:|"]
    for name, m in methods.items():
        for n, stage in m["stages"].items():
            scoring = sum(b["seconds"] for b in stage["benchmarks"].values())
            apply_s = "-" if stage["apply_s"] is None else f"{stage['apply_s']:.1f}"
            partial = "" if stage["complete"] else " (partial)"
            lines.append(f"| {name} | {n}{partial} | {apply_s} | {scoring:.0f} | {stage['peak_rss_mb'] or '-'} |")
    lines += ["", "Plot: `retention.png` (each benchmark's score against N, one line per method).", ""]
    return "\n".join(lines)


def _fmt(key: str, value: float) -> str:
    return f"{value:.2f}" if key == "ppl" else f"{100 * value:.1f}"


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(report["benchmarks"])
    ns = report["run"]["n"]
    methods = report["methods"]
    cols = min(3, len(benches)) or 1
    rows = (len(benches) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, bench in zip(axes.flat, benches):
        key = report["benchmarks"][bench]["headline"]
        base = _value(methods, "base", 0, bench)
        for name in methods:
            if name == "base":
                continue
            xs, ys = [], []
            for n in ns:
                v = base if n == 0 else _value(methods, name, n, bench)
                if v is not None:
                    xs.append(n)
                    ys.append(v[key] if key == "ppl" else 100 * v[key])
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        if base is not None:
            ax.axhline(base[key] if key == "ppl" else 100 * base[key], color="grey", ls="--", lw=1, label="unmodified")
        if key == "ppl" and ax.get_ylim()[1] > 10 * max(ax.get_ylim()[0], 1e-9):
            ax.set_yscale("log")  # a collapsed model's perplexity would flatten every other curve
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=-0.5)  # N is never negative: no empty left half of the symlog axis
        ax.set_title(f"{bench} ({key})")
        ax.set_xlabel("updates applied (N)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(benches):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "retention.png", dpi=120)
    plt.close(fig)


def write_report(runner) -> dict:
    report = build(runner)
    return save_report(runner.out, report, markdown(report), lambda: plot(report, runner.out))
