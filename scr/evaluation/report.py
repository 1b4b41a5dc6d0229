"""Reports of a run: report.json (every case), report.md (tables, methods side by side), PNG plots."""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from scr.evaluation.jsonl_log import read_sessions
from scr.evaluation.metrics import (MAIN, aggregate, case_scores, conflicting_updates, edited_fact_probes,
                                    scope_metrics)
from scr.evaluation.methods import kind_of, reused_cost
from scr.evaluation.runner import Records, in_grouping, method_slug, reported_methods

HEADLINE = ("reliability", "generalization", "locality", "portability", "average", "scope_accuracy")


def _method_summary(ctx, evaluator, name: str) -> dict | None:
    method = evaluator._make_method(name, ctx)
    h = evaluator._config_hash(ctx, method)
    records = Records(ctx.out / "records" / f"{method_slug(name)}.jsonl")
    sizes = evaluator.config.sizes(len(ctx.cases))
    order = {c.case_id: c.index for c in ctx.cases}
    by_n = {}
    main_cases = []
    for n in sizes:
        rows = {r["case_id"]: r for r in records.select(h, "case", n)
                if r["case_id"] in order and in_grouping(r, n, ctx)}
        if not rows:
            continue
        cases = sorted(rows.values(), key=lambda r: order[r["case_id"]])
        per_case = []
        for r in cases:
            scores = case_scores(r["probes"])
            for field, prefix in (("exact", "exact."), ("judge", "judge."), ("gt_contains", "locality_gt.")):
                extra = case_scores(r["probes"], field)
                scores.update({prefix + k: v for k, v in extra.items() if not (prefix == "locality_gt." and
                                                                                not k.startswith("locality"))})
            per_case.append((r, scores))
        metrics = aggregate([s for _, s in per_case])
        probes = [p for r in cases for p in r["probes"]]
        metrics.update(scope_metrics(probes))
        metrics.update(_unedited_metrics(cases, edited_fact_probes(ctx.cases, n)))
        metrics.update(_unconflicted_metrics(per_case, conflicting_updates(ctx.cases, n)))
        judged = [p for p in probes if "judge_raw" in p]
        if judged:
            metrics["judge.unparsed"] = sum(p.get("judge") is None for p in judged) / len(judged)
        times = [t for t in records.select(h, "time", n) if in_grouping(t, n, ctx)]
        reused_wall, reused_cpu = reused_cost(times)  # descents made by another method, at their cost
        apply_s = sum(t["seconds"] for t in times if t["phase"] == "apply") + reused_wall
        answer_s = sum(t["seconds"] for t in times if t["phase"] == "answer")
        mems = [m["peak_rss_mb"] for m in records.select(h, "mem", n)]
        edit_s = sum(t.get("details", {}).get("edit_seconds", 0.0) for t in times if t["phase"] == "apply")
        # CPU time only where every step recorded it (records of older versions do not).
        cpu_s = round(sum(t["cpu_s"] for t in times) + reused_cpu, 1) if all("cpu_s" in t for t in times) else None
        cost = {"wall_s": round(apply_s + answer_s, 1), "cpu_s": cpu_s, "apply_s": round(apply_s, 1), "answer_s": round(answer_s, 1),
                "probes": sum(t.get("probes", 0) for t in times if t["phase"] == "answer"),
                "memo_hits": sum(t.get("memo_hits", 0) for t in times if t["phase"] == "answer"),
                "memo_misses": sum(t.get("memo_misses", 0) for t in times if t["phase"] == "answer"),
                "peak_rss_mb": max(mems) if mems else None}
        if edit_s:
            n_edits = sum(t.get("details", {}).get("edits", 0) for t in times if t["phase"] == "apply")
            cost["seconds_per_edit"] = round(edit_s / max(n_edits, 1), 3)
        by_n[str(n)] = {"n_cases": len(cases), "complete": len(cases) == len(ctx.cases),
                        "groups": -(-len(ctx.cases) // n), "metrics": _round(metrics), "cost": cost}
        main_cases = [{"case_id": r["case_id"], "n": n, "scores": _round(s)} for r, s in per_case]
    if not by_n:
        return None
    main_n = max(by_n, key=int)
    return {"metrics": by_n[main_n]["metrics"], "n": int(main_n), "complete": by_n[main_n]["complete"],
            "cost": by_n[main_n]["cost"], "by_n": by_n, "info": method.info(),
            "records": str(Path("records") / f"{method_slug(name)}.jsonl"), "cases": main_cases}


def _unedited_metrics(cases: list[dict], edited: set[tuple[str, str]]) -> dict[str, float]:
    """Locality and scope accuracy without the locality probes that ask an edited fact (metrics.py)."""
    if not edited:
        return {}

    def asks_edited(r, p) -> bool:
        return p["kind"] == "locality" and (r["case_id"], p["prompt"]) in edited

    n_locality = sum(p["kind"] == "locality" for r in cases for p in r["probes"])
    kept = [[p for p in r["probes"] if not asks_edited(r, p)] for r in cases]
    locality = [s["locality"] for s in (case_scores(ps) for ps in kept) if "locality" in s]
    out = {"locality_edited_share": sum(asks_edited(r, p) for r in cases for p in r["probes"]) / max(n_locality, 1)}
    if locality:
        out["locality_unedited"] = sum(locality) / len(locality)
    scope = scope_metrics([p for ps in kept for p in ps])
    if "scope_accuracy" in scope:
        out["scope_accuracy_unedited"] = scope["scope_accuracy"]
    return out


def _unconflicted_metrics(per_case: list[tuple[dict, dict]], conflicted: set[str]) -> dict[str, float]:
    """Reliability and generalization without the cases another update contradicts (metrics.py)."""
    kept = [scores for r, scores in per_case if r["case_id"] not in conflicted]
    if len(kept) == len(per_case):
        return {}
    out = {"conflicted_share": 1 - len(kept) / max(len(per_case), 1)}
    for kind in ("reliability", "generalization"):
        values = [s[kind] for s in kept if kind in s]
        if values:
            out[f"{kind}_unconflicted"] = sum(values) / len(values)
    return out


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def build_report(ctx, evaluator) -> dict:
    c, s = evaluator.config, evaluator.settings
    sessions = read_sessions(ctx.out)
    methods = {}
    for name in reported_methods(ctx.out / "records", c.methods, kind_of):
        summary = _method_summary(ctx, evaluator, name)
        if summary is not None:
            methods[name] = summary
    try:
        data_rel = str(ctx.data_path.resolve().relative_to(_data_root(c)))
    except ValueError:
        data_rel = str(ctx.data_path)
    kinds: dict[str, int] = {}
    for case in ctx.cases:
        for p in case.probes:
            kinds[p.label] = kinds.get(p.label, 0) + 1
    return {
        "title": c.title,
        "run": {
            "command": ctx.command,
            "commands_all_sessions": sorted({x["command"] for x in sessions}),
            "data": data_rel, "data_sha256": ctx.data_sha256, "format": c.format or "detected",
            "cases": len(ctx.cases), "probes": kinds, "limit": c.limit,
            "protocol": c.protocol, "n": c.sizes(len(ctx.cases)), "mode": c.mode,
            "max_new_tokens": c.max_new_tokens, "batch_size": c.batch_size, "seed": c.seed,
            "llm": s.llm, "embedder": s.embedder, "backend": s.backend, "dtype": s.dtype, "device": s.device,
            "k": s.k, "scope_threshold": s.scope_threshold,
            "judge": {"url": c.judge_url, "model": c.judge_model} if c.judge_url else None,
            "host": host_info(),
            "sessions": len(sessions), "sessions_wall_s": round(sum(x["seconds"] for x in sessions), 1),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "methods": methods,
    }


def host_info() -> dict:
    """What the figures were measured on: machine, Python, usable CPUs, torch version and threads."""
    try:
        import torch

        torch_info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    except ImportError:
        torch_info = {}
    return {"machine": platform.machine(), "python": platform.python_version(), "cpus": _cpus(), **torch_info}


def _cpus():
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _data_root(config) -> Path:
    from scr.evaluation.data import data_dir

    return data_dir(config.data_dir).resolve()


def save_report(out: Path, report: dict, markdown_text: str, plot: Callable[[], None],
                log: Callable[[str], None] | None = None) -> dict:
    """Write ``report.json`` (atomically: a reader never sees half of it), ``report.md``, then the plot(s).

    Every evaluator's reports go through here. Plots are a convenience: a failed plot is logged, and the
    reports are kept."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    tmp.replace(out / "report.json")
    (out / "report.md").write_text(markdown_text)
    try:
        plot()
    except Exception as exc:
        (log or (lambda msg: print(msg, file=sys.stderr, flush=True)))(f"plot not written: {exc}")
    return report


def write_reports(ctx, evaluator) -> dict:
    report = build_report(ctx, evaluator)
    return save_report(ctx.out, report, markdown(report), lambda: plots(report, ctx.out), evaluator.log)


# ----- markdown ------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _labels(methods: dict, key: str = "metrics") -> list[str]:
    seen: dict[str, None] = {}
    for m in methods.values():
        for label in m[key]:
            seen[label] = None
    return list(seen)


def _scope_line(name: str, info: dict) -> str:
    mode = info["scope_mode"]
    if info.get("scope_check") == "subject-relation":
        line = (f"{name}: {mode} (subject-relation), key similarity >= {info['scope_threshold']}, relation wording "
                f">= {info['scope_relation_threshold']} or all its words asked, other subject: key similarity >= "
                f"{info['scope_other_subject_threshold']}")
        if "scope_relation_band" in info:
            line += (f"; relation wordings in [{info['scope_relation_band']}, {info['scope_relation_threshold']}) "
                     f"left to the scope encoder (probability >= {info['scope_min_probability']:.3f})")
        return line
    if "scope_min_probability" in info:
        return f"{name}: {mode}, scope encoder ({info['scope_encoder']}) probability >= {info['scope_min_probability']:.3f}"
    if mode in ("default", "similarity", "gated-llm"):
        return f"{name}: {mode}, key similarity >= {info['scope_threshold']}"
    return f"{name}: {mode}"


def markdown(report: dict) -> str:
    run, methods = report["run"], report["methods"]
    lines = [f"# {report.get('title') or 'Evaluation: ' + run['data']}", ""]
    lines += [f"Command: `{run['command']}`", ""]
    others = [c for c in run.get("commands_all_sessions", []) if c != run["command"]]
    if others:  # a report over records that several runs made (methods finished one by one) names them all
        lines += ["Records also from: " + ", ".join(f"`{c}`" for c in others), ""]
    lines += ["| run | |", "|---|---|"]
    rows = [("data", f"{run['data']} ({run['cases']} cases, sha256 {run['data_sha256'][:12]})"),
            ("probes", ", ".join(f"{k} {v}" for k, v in run["probes"].items())),
            ("protocol", f"{run['protocol']}, N = {', '.join(map(str, run['n']))}"),
            ("mode", f"{run['mode']}, max_new_tokens {run['max_new_tokens']}, greedy"),
            ("models", f"LLM {run['llm']} ({run['backend']}, {run['dtype']}, {run['device']}); "
                       f"embedder {run['embedder']}; k {run['k']}"),
            ("scope checks", "; ".join(_scope_line(name, m.get("info", {})) for name, m in methods.items()
                                       if "scope_mode" in m.get("info", {})) or "–"),
            ("seed", run["seed"]),
            ("host", ", ".join(f"{k} {v}" for k, v in run["host"].items())),
            ("sessions", f"{run['sessions']} ({run['sessions_wall_s']} s in all, model loading included)")]
    lines += [f"| {k} | {v} |" for k, v in rows] + [""]
    if not methods:
        return "\n".join(lines + ["No results yet.", ""])
    names = list(methods)
    lines += ["## Metrics (%)", ""]
    main_n = {name: m["n"] for name, m in methods.items()}
    lines += ["Scores are percentages. " + _metric_note(run["mode"]), ""]
    header = "| metric | " + " | ".join(f"{n} (N={main_n[n]}{'' if methods[n]['complete'] else ', partial'})"
                                        for n in names) + " |"
    lines += [header, "|---|" + "---:|" * len(names)]
    labels = _labels(methods)
    for label in labels:
        bold = label in HEADLINE
        cells = [_fmt(methods[n]["metrics"].get(label)) for n in names]
        name = f"**{label}**" if bold else label
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Cost", ""]
    lines += ["| method | wall s | CPU s | apply s | answer s | probes | memo hits | peak RSS MB | s / edit |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        c = methods[n]["cost"]
        memo = c["memo_hits"] / max(c["memo_hits"] + c["memo_misses"], 1)
        cells = [c["wall_s"], c.get("cpu_s"), c["apply_s"], c["answer_s"], c["probes"], f"{100 * memo:.0f}%",
                 c["peak_rss_mb"], c.get("seconds_per_edit")]
        lines.append(f"| {n} | " + " | ".join("–" if v is None else str(v) for v in cells) + " |")
    lines += ["", "Wall time excludes model loading; CPU s is this process's CPU time (all threads), which does not "
                  "grow when other processes share the cores. Answers of the unmodified model to identical requests are "
                  "memoised within the run (greedy decoding is deterministic), so a method's time depends on what "
                  "ran before it. Memo hits: the share of requests to the shared, unmodified model (reference "
                  "answers for locality included) answered from the memo; edited models never use it. Editing "
                  "methods share the target-value descents made on the unmodified model (scr/editing/value_cache.py); "
                  "a method that reuses one counts it at the wall and CPU seconds it cost when made.", ""]
    multi = [n for n in names if len(methods[n]["by_n"]) > 1]
    if multi:
        lines += ["## By N", ""]
        sizes = sorted({int(k) for n in multi for k in methods[n]["by_n"]})
        lines += ["| method | metric | " + " | ".join(f"N={s}" for s in sizes) + " |",
                  "|---|---|" + "---:|" * len(sizes)]
        for n in multi:
            for label in [l for l in HEADLINE if any(l in v["metrics"] for v in methods[n]["by_n"].values())]:
                cells = [_fmt(methods[n]["by_n"].get(str(s), {}).get("metrics", {}).get(label)) for s in sizes]
                lines.append(f"| {n} | {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Every case's probes, answers and scores: `records/<method>.jsonl`; per-case scores in `report.json`.", ""]
    return "\n".join(lines)


def _metric_note(mode: str) -> str:
    if mode == "generation":
        return ("Reliability, generalization, portability: the greedy answer contains the target or an alias "
                "(case-insensitive); `exact.*`: exact match after normalisation. Locality: the answer is identical "
                "to the unmodified model's answer; `locality_gt`: it contains the dataset's locality answer. "
                "Scope (SCR): in-scope probes accepted (`scope.accept_rate`), locality probes rejected "
                "(`scope.reject_rate`); `scope_accuracy` is their mean (balanced accuracy); `scope.right_fact`: "
                "in-scope probes answered with the case's own fact. `locality_unedited`, `scope_accuracy_unedited`: "
                "the same without the locality probes that ask a fact an update of the run changes, often the case's "
                "own (they name an update's subject and expect its original answer; `locality_edited_share` is "
                "their share): their right answer changes with the update. `reliability_unconflicted`, "
                "`generalization_unconflicted`: the same without the cases another update of the run contradicts "
                "(same subject and original answer, another new object; `conflicted_share` is their share): at most "
                "one of such updates can be right.")
    return ("Teacher-forced (EasyEdit-compatible) on raw prompts: token accuracy of the target; locality: "
            "agreement of argmax tokens with the unmodified model on the locality prompt + its answer.")


# ----- plots ---------------------------------------------------------------------------------------------------
def plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    if not methods:
        return
    labels = [l for l in HEADLINE if any(l in m["metrics"] for m in methods.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(labels) * max(1, len(methods)) / 2), 4))
    width = 0.8 / len(methods)
    for i, (name, m) in enumerate(methods.items()):
        values = [100 * (m["metrics"].get(l) or 0) for l in labels]
        xs = [j + i * width for j in range(len(labels))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(f"{report['run']['data']} — {report['run']['protocol']}, {report['run']['mode']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=120)
    plt.close(fig)
    multi = {n: m for n, m in methods.items() if len(m["by_n"]) > 1}
    if multi:
        fig, axes = plt.subplots(1, len(MAIN), figsize=(4 * len(MAIN), 3.4), sharey=True)
        for ax, label in zip(axes, MAIN):
            for name, m in multi.items():
                ns = sorted(int(k) for k in m["by_n"])
                ys = [100 * (m["by_n"][str(k)]["metrics"].get(label) or 0) for k in ns]
                ax.plot(ns, ys, marker="o", label=name)
            ax.set_xscale("log")
            ax.set_title(label)
            ax.set_xlabel("N (updates applied together)")
        axes[0].set_ylabel("%")
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "metric_vs_n.png", dpi=120)
        plt.close(fig)
