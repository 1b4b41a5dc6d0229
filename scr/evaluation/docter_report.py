"""The DocTER run's report: report.json, report.md (a table per document subset) and docter.png (bars)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from scr.evaluation.docter import aggregate, parse_method, updated_elsewhere
from scr.evaluation.jsonl_log import read_sessions
from scr.evaluation.report import host_info, save_report
from scr.evaluation.runner import reported_methods

# (key in the aggregate, column title, shown as a percentage)
COLUMNS = [("edit_success", "edit success", True), ("efficacy", "query", True), ("paraphrase", "paraphrases", True),
           ("locality_unchanged", "locality: unchanged", True), ("locality_original", "neighbours keep original", True),
           ("locality_altered", "neighbours say altered", True), ("reasoning_accuracy", "reasoning acc.", True)]
# Shown only where a run has it: with probe_every, the neighbour prompts no other updated document edits.
KEPT = ("locality_unchanged_kept", "locality: unchanged, neighbours no other document updates", True)
PLOTTED = ["edit_success", "paraphrase", "locality_unchanged", "locality_original", "reasoning_accuracy"]


def build(runner) -> dict:
    c, s = runner.config, runner.settings
    methods, rows_of = {}, {}
    for name in reported_methods(runner.out / "records", c.methods, parse_method):
        records = runner.records(name)
        if not records.rows:
            continue
        # Only rows of this configuration count (older runs in the same folder are ignored).
        method = runner.make_method(name)
        h = runner.method_hash(name, method)
        spec = parse_method(name)
        docs = runner.docs_for(name)
        rows = {r["id"]: r for r in records.select(h, "doc")}
        # Only where some documents' updates go unprobed can another document edit a probed one's neighbours.
        updates = runner.selected(name) if spec.kind == "base" else runner.update_docs(name)
        elsewhere = ({d.id: updated_elsewhere(d, updates) for d in docs}
                     if c.probe_every > 1 and len(updates) > len(docs) else None)
        applied = records.select(h, "apply")
        peaks = [r["peak_rss_mb"] for r in records.select(h, "mem")]
        rows_of[name] = rows
        methods[name] = {
            "info": method.info(), "kind": spec.kind, "source": spec.source, "upper_bound": spec.upper_bound,
            "selected": len(runner.selected(name)), "update_docs": len(docs if spec.kind == "base" else runner.update_docs(name)),
            "docs": len(docs), "docs_done": sum(d.id in rows for d in docs),
            "scores": aggregate([rows[d.id] for d in docs if d.id in rows], elsewhere),
            "apply_s": applied[-1]["seconds"] if applied else None,
            "apply_details": applied[-1]["details"] if applied else None,
            "answer_s": round(sum(r["seconds"] for r in records.select(h, "time")), 1),
            "peak_rss_mb": max(peaks) if peaks else None,
        }
    # Methods run on fewer documents (method_limits) are compared with every method on that same subset.
    sizes = sorted({m["selected"] for m in methods.values() if m["selected"] < len(runner.cases)})
    subsets = {}
    for n in sizes:
        ids = [d.id for d in runner.probed(runner.cases[:n])]
        subsets[str(n)] = {name: aggregate([rows_of[name][i] for i in ids])
                           for name in methods if all(i in rows_of[name] for i in ids)}
    sessions = read_sessions(runner.out)
    subjects: dict[str, int] = {}
    for d in runner.cases:
        subjects[d.subject_source] = subjects.get(d.subject_source, 0) + 1
    return {
        "title": c.title or "DocTER: knowledge updates given as documents",
        "run": {"command": runner.command, "commands_all_sessions": sorted({x["command"] for x in sessions}),
                "documents": len(runner.cases), "probed": len(runner.probed(runner.cases)),
                "probe_every": c.probe_every, "probe_start": c.probe_start, "updates": c.updates, "offset": c.offset, "method_limits": c.method_limits, "llm": s.llm,
                "embedder": s.embedder, "backend": s.backend, "dtype": s.dtype, "scope_mode": s.scope_mode,
                "k": s.k, "max_new_tokens": c.max_new_tokens, "extract_tokens": c.extract_tokens,
                "edit_batch_size": c.edit_batch_size, "seed": c.seed, "data": runner.digests,
                "subjects": subjects, "sessions": len(sessions),
                "sessions_wall_s": round(sum(x["seconds"] for x in sessions), 1),
                "host": host_info(),
                "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "methods": methods,
        "subsets": subsets,
    }


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _label(name: str, m: dict) -> str:
    return f"{name} (UPPER BOUND)" if m.get("upper_bound") else name


def _updates(m: dict) -> str:
    d = m.get("apply_details") or {}
    if m["kind"] == "scr":
        return f"{d.get('facts_added', '-')} facts"
    if m["kind"] == "edit":
        return f"{d.get('edits', '-')} edits"
    return "-"


def _table(names_scores: list[tuple[str, dict, dict]], main: bool) -> list[str]:
    columns = list(COLUMNS)
    if any(sc.get(KEPT[0]) is not None for _, _, sc in names_scores):
        columns.insert(columns.index(COLUMNS[3]) + 1, KEPT)
    titles = " | ".join(t for _, t, _ in columns)
    lines = [f"| method | docs | updates | {titles} | SCR fact used: edit / neighbour |",
             "|---|---:|---:|" + "---:|" * len(columns) + "---:|"]
    for name, m, sc in names_scores:
        cells = []
        for key, _, _ in columns:
            cell = _pct(sc.get(key))
            if key == "reasoning_accuracy" and sc.get("reasoning_n"):
                cell += (f" (n={sc['reasoning_n']}, parsed {_pct(sc.get('reasoning_parsed'))}, "
                         f"always-yes {_pct(sc.get('reasoning_true_share'))})")
            cells.append(cell)
        scope = "-"
        if "in_scope_edit" in sc:
            scope = (f"{_pct(sc['in_scope_edit'])} / {_pct(sc.get('in_scope_neighbour'))} "
                     f"(fact has target {_pct(sc.get('fact_has_target'))})")
        partial = " (partial)" if main and m["docs_done"] < m["docs"] else ""
        lines.append(f"| {_label(name, m)} | {sc.get('docs', 0)}{partial} | {_updates(m)} | " + " | ".join(cells)
                     + f" | {scope} |")
    return lines


def _which_documents(run: dict) -> str:
    n, offset, every = run["documents"], run.get("offset", 0), run.get("probe_every", 1)
    which = (f"The first {n} DocTER documents (file order)" if not offset else
             f"DocTER documents {offset} to {offset + n - 1} (file order, {n} documents)")
    if every == 1:
        return (f"{which}; all of a method's documents go into ONE knowledge base (SCR) or one sequence of edits "
                f"({run['edit_batch_size'] or 'all'} per batch), then every probe of those documents is answered")
    start = run.get("probe_start", 0)
    probed = (f"the probes of one document in {every} ({run['probed']} documents"
              + (f", from position {start}" if start else "") + ") are answered")
    if run.get("updates") == "probed":
        return (f"{which}; {probed}, and a method gets only those documents' updates (ONE knowledge base, or one "
                f"sequence of edits, {run['edit_batch_size'] or 'all'} per batch)")
    return (f"{which}; every document's updates go into ONE knowledge base (SCR) or one sequence of edits "
            f"({run['edit_batch_size'] or 'all'} per batch), and {probed}: the knowledge base holds {every} times "
            f"more documents than are asked about")


def markdown(report: dict) -> str:
    run, methods = report["run"], report["methods"]
    n, probed = run["documents"], run.get("probed", run["documents"])
    lines = [f"# {report['title']}", "", f"Command: `{run['command']}`", "",
             f"Model {run['llm']} ({run['backend']}, {run['dtype']}), greedy answers in its chat template, "
             f"{run['max_new_tokens']} new tokens; SCR embedder {run['embedder']}, k={run['k']}, scope mode "
             f"`{run['scope_mode']}`. {_which_documents(run)}. Wall time over {run['sessions']} session(s): "
             f"{run['sessions_wall_s']} s.", "",
             "Metrics (percent): **edit success** = mean over documents of the share of the query and its two "
             "paraphrases whose answer contains the altered target (case-insensitive); **query** / **paraphrases** "
             "its two parts; **locality: unchanged** = neighbour prompts answered exactly as by the unmodified "
             "model; **neighbours keep original** / **say altered** = neighbour answers containing the original / "
             "the altered target; **reasoning acc.** = yes/no questions of docter_reasoning_eval (asked with their "
             "extra fact) whose first yes/no word matches the label (no yes/no word = wrong; `parsed` = share "
             "with one; `always-yes` = the accuracy of answering yes to every question: the file lists its "
             "True-labelled questions first, so the first documents' questions are all labelled True and this "
             "column measures how often a method answers yes). **SCR fact used** = share of edit / neighbour "
             "prompts that SCR answered with a fact in context, and the share of those edit answers whose fact "
             "contains the altered target. Methods marked UPPER BOUND are given the benchmark's own "
             "query/altered-target pair instead "
             "of the document.", ""]
    elsewhere = [m["scores"].get("neighbours_updated_elsewhere") for m in methods.values()
                 if m["kind"] != "base" and m["scores"].get("neighbours_updated_elsewhere") is not None]
    if elsewhere:
        lines += [f"**Locality: unchanged, neighbours no other document updates** leaves out the neighbour prompts "
                  f"that another updated document edits ({max(elsewhere)} here): it names the prompt's subject and has "
                  "the same original target (so the same relation). With every document's updates applied, such a "
                  "prompt's answer should change; DocTER's locality, written for one document at a time, counts "
                  "the change as damage.", ""]
    main = [(name, m, m["scores"]) for name, m in methods.items() if m.get("selected", m["docs"]) == n]
    if main:
        heading = f"All {n} documents" if probed == n else f"The {probed} probed documents of {n}"
        lines += [f"## {heading}", ""] + _table(main, True) + [""]
    for size, scores in report["subsets"].items():
        limited = [name for name, m in methods.items() if str(m.get("selected", m["docs"])) == size]
        lines += [f"## First {size} of the {n} documents ({', '.join(limited)} limited to them)", "",
                  "Every method's scores on the same documents. SCR's knowledge base and the other methods' "
                  f"updates still hold all the documents the method was given (up to {n}), so the methods limited "
                  "to this subset face fewer competing updates.", ""]
        lines += _table([(name, methods[name], sc) for name, sc in scores.items()], False) + [""]
    lines += ["## Updates and cost", "", "| method | docs | updates | per document | documents whose updates carry "
              "the altered target | apply (s) | answering (s) | peak RSS (MB) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in methods.items():
        d = m.get("apply_details") or {}
        per_doc = d.get("facts_per_doc", d.get("edits_per_doc", "-"))
        carry = d.get("docs_with_target_fact", d.get("docs_with_target_edit", "-"))
        if m["kind"] == "edit" and m["source"] == "upper":
            per_doc, carry = 1, f"{m['docs'] - d.get('docs_without_subject', 0)} (subjects: {d.get('subjects')})"
        apply_s = "-" if m["apply_s"] is None else f"{m['apply_s']:.1f}"
        updated = m.get("update_docs", m["docs"])
        from_docs = f" (updates of {updated})" if updated != m["docs"] else ""
        lines.append(f"| {_label(name, m)} | {m['docs_done']}/{m['docs']}{from_docs} | {_updates(m)} | {per_doc} | {carry} | "
                     f"{apply_s} | {m['answer_s']:.0f} | {m['peak_rss_mb'] or '-'} |")
    lines += ["", f"Subjects for editing the benchmark pairs: {run['subjects']} (`counterfact`: the CounterFact record "
              "with the same id and the same edit; `derived`: read off the query and its paraphrases).", "",
              "Plot: `docter.png`.", ""]
    return "\n".join(lines)


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, n = report["methods"], report["run"]["documents"]
    probed = report["run"].get("probed", n)
    title = f"all {n} documents" if probed == n else f"{probed} probed of {n} documents"
    panels = [(title, {name: m["scores"] for name, m in methods.items() if m.get("selected", m["docs"]) == n})]
    panels += [(f"first {size} documents", scores) for size, scores in report["subsets"].items()]
    panels = [(t, s) for t, s in panels if s]
    if not panels:
        return
    titles = {key: title for key, title, _ in COLUMNS}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, scores) in zip(axes[0], panels):
        names = list(scores)
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            values = [100 * (scores[name].get(k) or 0) for k in PLOTTED]
            label = name + (" (upper bound)" if methods[name].get("upper_bound") else "")
            ax.bar([x + i * width for x in range(len(PLOTTED))], values, width, label=label,
                   hatch="//" if methods[name].get("upper_bound") else None)
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(PLOTTED))])
        ax.set_xticklabels([titles[k] for k in PLOTTED], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"DocTER, {title}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "docter.png", dpi=120)
    plt.close(fig)


def write_report(runner) -> dict:
    report = build(runner)
    return save_report(runner.out, report, markdown(report), lambda: plot(report, runner.out))
