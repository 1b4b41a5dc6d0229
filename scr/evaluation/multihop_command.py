"""`scr eval-multihop`: multi-hop questions (MQuAKE) for SCR and its comparators; writes the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    ctx: typer.Context,
    suite: Optional[Path] = typer.Option(None, "--suite", help="suite file (TOML with an 'eval' and a "
                                                                "'settings' table); flags given here override it"),
    data: Optional[str] = typer.Option(None, "--data", help="MQuAKE JSON file (default multihop/MQuAKE-hard.json "
                                                            "in the data dir)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory [env SCR_DATA_DIR]"),
    methods: Optional[str] = typer.Option(None, "--methods", help="comma-separated: base, scr, scr-<mode>, "
                                                                  "context-oracle, memit, alphaedit, ..."),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first LIMIT cases"),
    scr_kb: Optional[str] = typer.Option(None, "--scr-kb", help="dataset (default: every case's edits in one "
                                                                "knowledge base) | case (each case alone)"),
    max_hops: Optional[int] = typer.Option(None, "--max-hops", help="SCR: sub-questions per question (default 4)"),
    decompose: Optional[str] = typer.Option(None, "--decompose", help="SCR: walk (default: stored links, then the LLM) | llm | rules"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (resumed if it holds records)"),
    answer_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="answer length (default 24)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="generation batch size (default 64)"),
    chunk_cases: Optional[int] = typer.Option(None, "--chunk-cases", help="cases per batch call (default 16)"),
    edit_batch_size: Optional[int] = typer.Option(None, "--edit-batch-size", help="editing: edits per apply()"),
    title: Optional[str] = typer.Option(None, "--title", help="report title"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    report_only: bool = typer.Option(False, "--report-only", help="only rebuild the reports from the records"),
) -> None:
    """Multi-hop accuracy (MQuAKE): base, SCR's multi-hop mode and editing methods; report.json/.md and a plot."""
    from scr.cli_support import out
    from scr.evaluation.command import run_suite
    from scr.evaluation.multihop import MultiHopEvaluator, make_multihop_config

    flags = dict(data=data, data_dir=str(data_dir) if data_dir else None, methods=methods, limit=limit,
                 scr_kb=scr_kb, max_hops=max_hops, decompose=decompose, out=str(out_dir) if out_dir else None,
                 max_new_tokens=answer_tokens, batch_size=batch_size, chunk_cases=chunk_cases,
                 edit_batch_size=edit_batch_size, title=title)

    def make_runner(config, settings, command, log):
        return MultiHopEvaluator(config, settings, command=command, log=log)

    config, report = run_suite(ctx, "eval-multihop", suite, "multihop", flags, make_multihop_config, make_runner,
                               quiet=quiet, report_only=report_only, required=("out",))
    out.print(f"wrote {Path(config.out) / 'report.json'}, report.md and multihop.png")
    for name, m in report["methods"].items():
        metrics = m["metrics"]
        out.print(f"  {name} ({m['n_cases']} cases{'' if m['complete'] else ', partial'}): multi-hop "
                  f"{100 * metrics['multihop']:.1f}, single-hop {100 * (metrics['single_hop'] or 0):.1f}; "
                  f"{m['cost']['wall_s']} s", highlight=False)

