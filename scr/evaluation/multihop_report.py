"""Reports of a multi-hop run: report.json (metrics, cost, per-case results), report.md (tables), multihop.png."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from scr.evaluation.jsonl_log import read_sessions
from scr.evaluation.methods import kind_of, make_method, reused_cost
from scr.evaluation.report import host_info, save_report
from scr.evaluation.runner import reported_methods

# (key, label) of the headline metrics, in table order.
HEADLINE = (("multihop", "multi-hop acc"), ("multihop_word", "multi-hop, whole word"),
            ("single_hop", "single-hop acc"), ("single_hop_word", "single-hop, whole word"))


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


def method_summary(ev, name: str) -> dict | None:
    # The method object only for its identity (resume hash); no backend is needed for that.
    method = make_method(name, ev.settings, None, ev.embedder, edit_batch_size=ev.config.edit_batch_size,
                         editing=ev.config.editing)
    h = ev.config_hash(method)
    records = ev.records(name)
    order = {c.case_id: c for c in ev.cases}
    rows = sorted((r for r in records.select(h, "case") if r["case_id"] in order),
                  key=lambda r: order[r["case_id"]].index)
    rows = list({r["case_id"]: r for r in rows}.values())  # a case recorded twice (an interrupted write) counts once
    if not rows:
        return None
    questions = [q for r in rows for q in r["multihop"]]
    singles = [s for r in rows for s in r["single"]]
    metrics = {
        "multihop": _mean(any(q["correct"] for q in r["multihop"]) for r in rows),
        "multihop_word": _mean(any(q["correct_word"] for q in r["multihop"]) for r in rows),
        "multihop_per_question": _mean(q["correct"] for q in questions),
        "multihop_old_answer": _mean(any(q["old"] for q in r["multihop"]) for r in rows),
        "single_hop": _mean(s["correct"] for s in singles),
        "single_hop_word": _mean(s["correct_word"] for s in singles),
    }
    if any("hops" in q for q in questions):  # SCR's multi-hop mode: how the chain was walked
        n_edits = {c.case_id: len(c.edits) for c in ev.cases}
        metrics.update({
            "hops_per_question": _mean(len(q["hops"]) for q in questions),
            "subquestions_by_llm": _mean(h["by"] == "llm" for q in questions for h in q["hops"]),
            "links_walked": _mean(h["by"] == "kb" for q in questions for h in q["hops"]),
            "hops_in_scope": _mean(h["in_scope"] for q in questions for h in q["hops"]),
            "edit_facts_used": _mean(max(len(q["used"]) for q in r["multihop"]) / n_edits[r["case_id"]]
                                     for r in rows),
            "edit_facts_retrieved": _mean(max(len(q["retrieved"]) for q in r["multihop"]) / n_edits[r["case_id"]]
                                          for r in rows),
            "all_edit_facts_used": _mean(any(len(q["used"]) == n_edits[r["case_id"]] for q in r["multihop"])
                                         for r in rows),
        })
    if any("in_scope" in s for s in singles):
        metrics["single_hop_in_scope"] = _mean(s["in_scope"] for s in singles)
        metrics["single_hop_own_fact"] = _mean(s.get("own_fact", False) for s in singles)
    times = records.select(h, "time")
    apply_s = sum(t["seconds"] for t in times if t["phase"] == "apply")
    answer_s = sum(t["seconds"] for t in times if t["phase"] == "answer")
    mems = [m["peak_rss_mb"] for m in records.select(h, "mem")]
    edit_s = sum(t.get("details", {}).get("edit_seconds", 0.0) for t in times if t["phase"] == "apply")
    reused_wall, reused_cpu = reused_cost(times)
    apply_s += reused_wall
    cost = {"wall_s": round(apply_s + answer_s, 1), "apply_s": round(apply_s, 1), "answer_s": round(answer_s, 1),
            "cpu_s": round(sum(t.get("cpu_s", 0.0) for t in times) + reused_cpu, 1),
            "questions": sum(t.get("questions", 0) for t in times if t["phase"] == "answer"),
            "peak_rss_mb": max(mems) if mems else None}
    if edit_s:
        n = sum(t.get("details", {}).get("edits", 0) for t in times if t["phase"] == "apply")
        cost["seconds_per_edit"] = round(edit_s / max(n, 1), 2)
    stops = Counter(q["stop"] for q in questions if "stop" in q)
    return {"n_cases": len(rows), "complete": len(rows) == len(ev.cases), "protocol": ev.protocol(name),
            "metrics": metrics, "cost": cost, "info": method.info(), "stops": dict(stops),
            "records": str(Path("records") / records.path.name),
            "cases": [{"case_id": r["case_id"], "multihop": any(q["correct"] for q in r["multihop"]),
                       "multihop_word": any(q["correct_word"] for q in r["multihop"]),
                       "single_hop": _mean(s["correct"] for s in r["single"])} for r in rows]}


def common_cases(methods: dict) -> dict | None:
    """Each method's scores on the cases that every method has answered, when some have answered fewer (a long
    editing run in progress): the side-by-side on the same cases, beside the rows over each method's own."""
    if len(methods) < 2 or all(m["complete"] for m in methods.values()):
        return None
    shared = set.intersection(*({c["case_id"] for c in m["cases"]} for m in methods.values()))
    if not shared:
        return None
    out = {}
    for name, m in methods.items():
        cases = [c for c in m["cases"] if c["case_id"] in shared]
        out[name] = {"multihop": _mean(c["multihop"] for c in cases),
                     "multihop_word": _mean(c["multihop_word"] for c in cases),
                     "single_hop": _mean(c["single_hop"] for c in cases if c["single_hop"] is not None)}
    return {"n_cases": len(shared), "methods": out}


def build_report(ev) -> dict:
    c, s = ev.config, ev.settings
    sessions = read_sessions(ev.out)
    methods = {}
    for name in reported_methods(ev.out / "records", c.methods, kind_of):
        summary = method_summary(ev, name)
        if summary is not None:
            methods[name] = summary
    return {
        "title": c.title,
        "run": {
            "command": ev.command, "commands_all_sessions": sorted({x["command"] for x in sessions}),
            "methods": list(methods),
            "data": c.data, "data_sha256": ev.data_sha256, "cases": len(ev.cases), "cases_in_file": len(ev.all_cases),
            "limit": c.limit, "questions_per_case": sorted({len(x.questions) for x in ev.cases}),
            "edits_per_case": sorted({len(x.edits) for x in ev.cases}),
            "scr_kb": c.scr_kb, "kb_facts": len({f for x in ev.all_cases for f in x.facts()}),
            "max_hops": c.max_hops, "decompose": c.decompose, "max_new_tokens": c.max_new_tokens,
            "batch_size": c.batch_size, "llm": s.llm, "embedder": s.embedder, "backend": s.backend,
            "dtype": s.dtype, "device": s.device, "k": s.k, "scope_mode": s.scope_mode,
            "scope_threshold": s.scope_threshold,
            "host": host_info(),
            "sessions": len(sessions), "sessions_wall_s": round(sum(x["seconds"] for x in sessions), 1),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "methods": methods,
        "common_cases": common_cases(methods),
    }


def write_reports(ev) -> dict:
    report = build_report(ev)
    return save_report(ev.out, report, markdown(report, example=_example(ev, report)),
                       lambda: plot(report, ev.out / "multihop.png"), ev.log)


# ----- markdown ----------------------------------------------------------------------------------------------------
def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _protocol_text(name: str, protocol: str, kb_facts: int) -> str:
    if protocol == "dataset":
        return f"one knowledge base with every case's edits ({kb_facts} distinct facts)"
    if protocol == "case":
        return "the case's 4 edits alone, reset between cases" if kind_of(name)[0] == "edit" else \
            "a knowledge base of the case's own edits, reset between cases"
    return "no update" if kind_of(name)[0] == "base" else "the case's edit facts in context"


def markdown(report: dict, example: list[str] | None = None) -> str:
    run, methods = report["run"], report["methods"]
    lines = [f"# {report.get('title') or 'Multi-hop evaluation: ' + run['data']}", "",
             f"Command: `{run['command']}`", ""]
    lines += ["| run | |", "|---|---|",
              f"| data | {run['data']}: {run['cases']} of {run['cases_in_file']} cases evaluated "
              f"(sha256 {run['data_sha256'][:12]}), {', '.join(map(str, run['edits_per_case']))} edits and "
              f"{', '.join(map(str, run['questions_per_case']))} paraphrased questions per case |",
              *([f"| SCR | memory: {run['scr_kb']}; multi-hop mode: at most {run['max_hops']} hops, "
                 + ("stored links walked first, then sub-questions by llm"
                    if run["decompose"] == "walk" else f"sub-questions by {run['decompose']}")
                 + f"; k {run['k']}, scope {run['scope_mode']} (threshold {run['scope_threshold']}) |"]
                if any(kind_of(n)[0] == "scr" for n in run.get("methods", ["scr"])) else []),
              f"| models | LLM {run['llm']} ({run['backend']}, {run['dtype']}, {run['device']}), greedy, "
              f"{run['max_new_tokens']} new tokens; embedder {run['embedder']} |",
              f"| host | {', '.join(f'{k} {v}' for k, v in run['host'].items())} |",
              f"| sessions | {run['sessions']} ({run['sessions_wall_s']} s in all, model loading included) |", ""]
    if not methods:
        return "\n".join(lines + ["No results yet.", ""])
    lines += ["## Results (%)", "",
              "| method | updates | cases | " + " | ".join(label for _, label in HEADLINE)
              + " | wall s | peak RSS MB |",
              "|---|---|---:|" + "---:|" * len(HEADLINE) + "---:|---:|"]
    for name, m in methods.items():
        cells = [_pct(m["metrics"].get(key)) for key, _ in HEADLINE]
        cases = f"{m['n_cases']}" + ("" if m["complete"] else " (partial)")
        lines.append(f"| {name} | {_protocol_text(name, m['protocol'], run['kb_facts'])} | {cases} | "
                     + " | ".join(cells) + f" | {m['cost']['wall_s']} | {m['cost']['peak_rss_mb'] or '–'} |")
    lines += ["", "Multi-hop acc: a case is right when the answer to ANY of its paraphrased questions contains the "
                  "new answer or an alias (case-insensitive substring, MQuAKE's protocol). Single-hop acc: each "
                  "edited link asked alone (new_single_hops), same test. *Whole word*: the alias must not sit "
                  "inside a longer word; MQuAKE's aliases include codes such as \"ar\", \"de\" or \"NA\" that the "
                  "substring test finds in \"are\" or \"founder\", so the substring scores are slightly lenient "
                  "for every method.", ""]
    common = report.get("common_cases")
    if common:
        lines += [f"### The same {common['n_cases']} cases for every method (%)", "",
                  "| method | multi-hop acc | multi-hop, whole word | single-hop acc |", "|---|---:|---:|---:|"]
        for name, m in common["methods"].items():
            lines.append(f"| {name} | {_pct(m['multihop'])} | {_pct(m['multihop_word'])} | {_pct(m['single_hop'])} |")
        lines += ["", "The rows above are over each method's own cases; here every method is scored on the cases "
                      "that all of them have answered.", ""]
    extra = [(n, m) for n, m in methods.items() if "hops_per_question" in m["metrics"] or
             "single_hop_in_scope" in m["metrics"]]
    if extra:
        keys = [("multihop_per_question", "multi-hop acc per question"),
                ("multihop_old_answer", "cases answered with the OLD answer"),
                ("hops_per_question", "hops per question (mean)"), ("subquestions_by_llm", "sub-questions by the LLM"),
                ("links_walked", "links walked in the knowledge base (no sub-question)"),
                ("hops_in_scope", "hops answered with a stored fact"),
                ("edit_facts_retrieved", "case's edit facts retrieved (best paraphrase)"),
                ("edit_facts_used", "case's edit facts used (best paraphrase)"),
                ("all_edit_facts_used", "cases with all edit facts used"),
                ("single_hop_in_scope", "single-hop questions in scope"),
                ("single_hop_own_fact", "single-hop answered with the link's own fact")]
        lines += ["## Diagnostics (%, hops as a count)", "", "| | " + " | ".join(n for n, _ in extra) + " |",
                  "|---|" + "---:|" * len(extra)]
        for key, label in keys:
            values = [m["metrics"].get(key) for _, m in extra]
            if all(v is None for v in values):
                continue
            fmt = (lambda v: "–" if v is None else f"{v:.2f}") if key == "hops_per_question" else _pct
            lines.append(f"| {label} | " + " | ".join(fmt(v) for v in values) + " |")
        for name, m in extra:
            if m["stops"]:
                lines.append("")
                lines.append(f"{name}: why the hop loop ended: " + ", ".join(f"{k} {v}" for k, v in m["stops"].items()))
        lines.append("")
    if example:
        lines += example
    lines += ["## Cost", "", "| method | wall s | apply s | answer s | CPU s | questions | peak RSS MB | s / edit |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in methods.items():
        c = m["cost"]
        cells = [c["wall_s"], c["apply_s"], c["answer_s"], c["cpu_s"], c["questions"], c["peak_rss_mb"],
                 c.get("seconds_per_edit")]
        lines.append(f"| {name} | " + " | ".join("–" if v is None else str(v) for v in cells) + " |")
    lines += ["", "Wall time excludes model loading (apply: building the knowledge base or editing; a resumed run "
                  "builds the knowledge base again and counts it again). Identical requests to the unmodified model "
                  "are memoised within the run, so a method's time depends on what ran before it. CPU s is this "
                  "process's CPU time. Editing methods share the target-value descents made on the unmodified "
                  "model (scr/editing/value_cache.py); a method that reuses one counts it at the wall and CPU "
                  "seconds it cost when made, so its costs read as if it had made it.", "",
              "Every question, answer and hop: `records/<method>.jsonl`; per-case results in `report.json`.", ""]
    return "\n".join(lines)


def _example(ev, report: dict) -> list[str]:
    """The hops of SCR's first recorded question, so a reader sees what the multi-hop mode did."""
    for name, m in report["methods"].items():
        if "hops_per_question" not in m["metrics"]:
            continue
        method = make_method(name, ev.settings, None, ev.embedder)
        h = ev.config_hash(method)
        for row in ev.records(name).select(h, "case"):
            q = row["multihop"][0]
            case = next((c for c in ev.cases if c.case_id == row["case_id"]), None)
            if case is None:
                continue
            lines = [f"## Example ({name}, case {row['case_id']})", "", f"Question: {q['q']}  ",
                     f"Expected: {case.new_answers[0]}; answer: {q['answer']!r} "
                     f"({'right' if q['correct'] else 'wrong'})", "",
                     "| hop | sub-question (by) | fact used | sub-answer |", "|---:|---|---|---|"]
            for n, hop in enumerate(q["hops"], start=1):
                cell = lambda t: (t or "–").replace("|", "/").replace("\n", " ")
                lines.append(f"| {n} | {cell(hop['q'])} ({hop['by']}) | {cell(hop['fact'])} | {cell(hop['a'])} |")
            return lines + [""]
    return []


# ----- plot ----------------------------------------------------------------------------------------------------------
def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    if not methods:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(HEADLINE) * len(methods) / 2), 4))
    width = 0.8 / len(methods)
    for i, (name, m) in enumerate(methods.items()):
        values = [100 * (m["metrics"].get(key) or 0) for key, _ in HEADLINE]
        bars = ax.bar([j + i * width for j in range(len(HEADLINE))], values, width,
                      label=f"{name} ({m['n_cases']} cases)")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(HEADLINE))], [l for _, l in HEADLINE],
                  fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(f"{report['run']['data']} ({report['run']['llm']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
