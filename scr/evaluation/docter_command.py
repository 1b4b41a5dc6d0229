"""`scr eval-docter`: knowledge updates given as DocTER documents, per method (see docter.py); writes the reports."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _method_limits(values: list[str]) -> dict[str, int]:
    """``NAME=N`` pairs (``--method-limit memit-upper=20``)."""
    out = {}
    for value in values:
        name, sep, n = value.partition("=")
        if not sep or not name.strip() or not n.strip().isdigit():
            raise ValueError(f"--method-limit expects NAME=N (a method and a number of documents), got {value!r}")
        out[name.strip()] = int(n)
    return out


def command(
    ctx: typer.Context,
    suite: Optional[Path] = typer.Option(None, "--suite", help="suite file (TOML with docter and settings tables); "
                                                                "flags given here override it"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory [env SCR_DATA_DIR]"),
    methods: Optional[str] = typer.Option(None, "--methods", help="comma-separated: base, scr (= scr-sentences), "
                                          "scr-atomic, scr-upper, <editor>-extracted, <editor>-upper "
                                          "(editor: memit, alphaedit, balancedit, ...); -upper = upper bound"),
    limit: Optional[int] = typer.Option(None, "--limit", help="the first LIMIT documents (default 100)"),
    offset: Optional[int] = typer.Option(None, "--offset", help="skip OFFSET documents first (default 0)"),
    probe_every: Optional[int] = typer.Option(None, "--probe-every", help="answer the probes of every N-th "
                                              "document only; the updates still come from all (default 1)"),
    probe_start: Optional[int] = typer.Option(None, "--probe-start", help="with --probe-every N: the position "
                                              "(0 to N-1) of the first probed document (default 0)"),
    updates: Optional[str] = typer.Option(None, "--updates", help="selected (default): every selected "
                                          "document's updates; probed: only the probed documents'"),
    method_limit: Optional[List[str]] = typer.Option(None, "--method-limit",
                                                     help="NAME=N: fewer documents for one method (repeatable)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="generation batch size (default 16)"),
    edit_batch_size: Optional[int] = typer.Option(None, "--edit-batch-size", help="editing: edits per apply()"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (resumed if it holds records)"),
    title: Optional[str] = typer.Option(None, "--title"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    report_only: bool = typer.Option(False, "--report-only", help="only rebuild the reports from the records"),
) -> None:
    """Evaluate document-level updates (DocTER): edit success, locality, reasoning; writes report.json/.md/.png."""
    from scr.cli_support import out
    from scr.evaluation.command import run_suite
    from scr.evaluation.docter import DocterRunner, make_docter_config

    flags = dict(data_dir=str(data_dir) if data_dir else None, methods=methods, limit=limit,
                 offset=offset, probe_every=probe_every, probe_start=probe_start, updates=updates,
                 batch_size=batch_size, edit_batch_size=edit_batch_size,
                 seed=seed, out=str(out_dir) if out_dir else None, title=title)

    def add_method_limits(fields: dict) -> None:
        if method_limit:
            fields["method_limits"] = {**fields.get("method_limits", {}), **_method_limits(method_limit)}

    def make_runner(config, settings, command, log):
        return DocterRunner(config, settings, command=command, log=log)

    config, report = run_suite(ctx, "eval-docter", suite, "docter", flags, make_docter_config, make_runner,
                               quiet=quiet, report_only=report_only, more_fields=add_method_limits)
    out.print(f"wrote {Path(config.out) / 'report.json'}, report.md and docter.png")
    for name, m in report["methods"].items():
        s = m["scores"]
        shown = ", ".join(f"{k} {100 * s[k]:.1f}" for k in ("edit_success", "locality_unchanged", "reasoning_accuracy")
                          if s.get(k) is not None)
        out.print(f"  {name} ({m['docs_done']}/{m['docs']} documents): {shown}", highlight=False)
