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
                                             "piqa, winogrande, wikitext2, knowns (default), arc_challenge, boolq, mmlu, "
                                             "bbh, gsm8k"),
    items: Optional[int] = typer.Option(None, "--items", help="items sampled per benchmark (0 = all; default 200)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sequences per forward pass (default 8)"),
    gen_tokens: Optional[int] = typer.Option(None, "--gen-tokens", help="GSM8K: new tokens per answer (default 256)"),
    edit_batch_size: Optional[int] = typer.Option(None, "--edit-batch-size", help="editing: edits per apply()"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (resumed if it holds records)"),
    title: Optional[str] = typer.Option(None, "--title"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    report_only: bool = typer.Option(False, "--report-only", help="only rebuild the reports from the records"),
) -> None:
    """Score general benchmarks after N updates per method; writes report.json, report.md and retention.png."""
    from scr.cli_support import out
    from scr.evaluation.command import run_suite
    from scr.evaluation.retention import RetentionRunner, make_retention_config

    flags = dict(updates=updates, data_dir=str(data_dir) if data_dir else None, methods=methods, n=n,
                 benchmarks=benchmarks, items=items, batch_size=batch_size, gen_tokens=gen_tokens,
                 edit_batch_size=edit_batch_size, seed=seed, out=str(out_dir) if out_dir else None, title=title)

    def make_runner(config, settings, command, log):
        return RetentionRunner(config, settings, command=command, log=log, progress=not quiet)

    config, report = run_suite(ctx, "retention", suite, "retention", flags, make_retention_config, make_runner,
                               quiet=quiet, report_only=report_only)
    out.print(f"wrote {Path(config.out) / 'report.json'}, report.md and retention.png")
    for name, m in report["methods"].items():
        for stage_n, stage in m["stages"].items():
            shown = ", ".join(f"{b} {v[report['benchmarks'][b]['headline']]:.4g}" for b, v in stage["benchmarks"].items())
            out.print(f"  {name} N={stage_n}: {shown}", highlight=False)
