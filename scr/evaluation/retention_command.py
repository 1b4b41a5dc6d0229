"""`scr retention`: general-ability scores of each method after N updates (see retention.py); writes the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    ctx: typer.Context,
    suite: Optional[Path] = typer.Option(None, "--suite", help="suite file (TOML, [retention] and [settings] "
                                                                "tables); flags given here override it"),
    updates: Optional[str] = typer.Option(None, "--updates", help="the stream of updates (dataset file)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory [env SCR_DATA_DIR]"),
    methods: Optional[str] = typer.Option(None, "--methods", help="comma-separated: base, scr, scr-<mode>, memit, "
                                                                  "alphaedit, come, balancedit"),
    n: Optional[str] = typer.Option(None, "--n", help="updates applied, cumulative, e.g. 0,10,100,1000"),
    benchmarks: Optional[str] = typer.Option(None, "--benchmarks", help="comma-separated: arc_easy, hellaswag, "
                                             "piqa, winogrande, wikitext2, knowns (default), arc_challenge, boolq, mmlu"),
    items: Optional[int] = typer.Option(None, "--items", help="items sampled per benchmark (0 = all; default 200)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sequences per forward pass (default 8)"),
    edit_batch_size: Optional[int] = typer.Option(None, "--edit-batch-size", help="editing: edits per apply()"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (resumed if it holds records)"),
    title: Optional[str] = typer.Option(None, "--title"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    report_only: bool = typer.Option(False, "--report-only", help="only rebuild the reports from the records"),
) -> None:
    """Score general benchmarks after N updates per method; writes report.json, report.md and retention.png."""
    from scr.cli_support import USER_ERRORS, err, out
    from scr.config import Settings
    from scr.evaluation.command import command_line
    from scr.evaluation.config import EvalConfigError
    from scr.evaluation.data import DatasetError
    from scr.evaluation.retention import RetentionRunner, load_retention_suite, make_retention_config

    try:
        fields, suite_settings = load_retention_suite(suite) if suite else ({}, {})
        flags = dict(updates=updates, data_dir=str(data_dir) if data_dir else None, methods=methods, n=n,
                     benchmarks=benchmarks, items=items, batch_size=batch_size, edit_batch_size=edit_batch_size,
                     seed=seed, out=str(out_dir) if out_dir else None, title=title)
        fields.update({k: v for k, v in flags.items() if v is not None})
        config = make_retention_config(**fields)
        overrides = {k: v for k, v in ctx.obj["overrides"].items() if v is not None}
        settings = Settings.load(ctx.obj["config"], **{**suite_settings, **overrides})
        log = (lambda msg: None) if quiet else (lambda msg: err.print(msg, highlight=False, markup=False))
        runner = RetentionRunner(config, settings, command=command_line(ctx, "retention", suite, flags), log=log, progress=not quiet)
        report = runner.run(report_only=report_only)
    except (*USER_ERRORS, EvalConfigError, DatasetError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"wrote {Path(config.out) / 'report.json'}, report.md and retention.png")
    for name, m in report["methods"].items():
        for stage_n, stage in m["stages"].items():
            shown = ", ".join(f"{b} {v[report['benchmarks'][b]['headline']]:.4g}" for b, v in stage["benchmarks"].items())
            out.print(f"  {name} N={stage_n}: {shown}", highlight=False)
