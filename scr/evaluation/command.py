"""`scr eval`: evaluate SCR and its comparators on one dataset with one protocol; writes the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    ctx: typer.Context,
    suite: Optional[Path] = typer.Option(None, "--suite", help="suite file (TOML, [eval] and [settings] tables); "
                                                                "flags given here override it"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset file (or a path relative to the data dir)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="knowedit | counterfact | jsonl (default: detected)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory [env SCR_DATA_DIR]"),
    methods: Optional[str] = typer.Option(None, "--methods", help="comma-separated: base, context-oracle, scr, "
                                          "scr-paper, scr-default, scr-llm, scr-similarity, memit, alphaedit, ..."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="single | sequential"),
    n: Optional[str] = typer.Option(None, "--n", help="sequential: updates applied together, e.g. 1,10,100,all"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first LIMIT cases"),
    mode: Optional[str] = typer.Option(None, "--mode", help="generation | teacher-forced"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run directory (resumed if it holds records)"),
    answer_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="answer length (default 24)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="generation batch size (default 64)"),
    edit_batch_size: Optional[int] = typer.Option(None, "--edit-batch-size", help="editing: edits per apply()"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible URL of an LLM judge"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="judge model name (default: the server's)"),
    title: Optional[str] = typer.Option(None, "--title", help="report title"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    report_only: bool = typer.Option(False, "--report-only", help="only rebuild the reports from the records "
                                                                  "(e.g. beside a run in progress)"),
) -> None:
    """Evaluate methods on a knowledge-editing dataset; writes report.json, report.md and plots to --out."""
    from scr.cli_support import out

    flags = dict(data=data, format=fmt, data_dir=str(data_dir) if data_dir else None, methods=methods,
                 protocol=protocol, n=n, limit=limit, mode=mode, out=str(out_dir) if out_dir else None,
                 max_new_tokens=answer_tokens, batch_size=batch_size, edit_batch_size=edit_batch_size,
                 seed=seed, judge_url=judge_url, judge_model=judge_model, title=title)

    def make_config(**fields):
        from scr.evaluation.config import make_config as make_eval_config
        from scr.evaluation.methods import method_names_valid

        config = make_eval_config(**fields)
        method_names_valid(config.methods)
        return config

    def make_runner(config, settings, command, log):
        from scr.evaluation.runner import Evaluator

        return Evaluator(config, settings, command=command, log=log, progress=None if not quiet else False)

    config, report = run_suite(ctx, "eval", suite, "eval", flags, make_config, make_runner, quiet=quiet,
                               report_only=report_only, required=("data", "out"))
    out.print(f"wrote {Path(config.out) / 'report.json'}, report.md and plots")
    for name, m in report["methods"].items():
        metrics = m["metrics"]
        shown = ", ".join(f"{k} {100 * metrics[k]:.1f}" for k in
                          ("reliability", "generalization", "locality", "portability", "scope_accuracy")
                          if metrics.get(k) is not None)
        out.print(f"  {name} (N={m['n']}{'' if m['complete'] else ', partial'}): {shown}; {m['cost']['wall_s']} s",
                  highlight=False)


def command_line(ctx, subcommand: str, suite, flags: dict) -> str:
    """The command as typed when run through the ``scr`` script; else rebuilt from the options (tests, -m),
    each flag ``--key-with-dashes``. Settings given as ``SCR_*`` environment variables lead it, as a shell would
    take them (``SCR_SCOPE_NAME_MATCH=last-word scr eval-docter ...``): the same line reproduces the run."""
    import shlex
    import sys

    from scr.config import settings_environment

    env = "".join(f"{name}={shlex.quote(value)} " for name, value in settings_environment().items())
    if Path(sys.argv[0]).name == "scr":
        return env + "scr " + shlex.join(sys.argv[1:])
    parts = ["scr"]
    for key, value in ctx.obj["overrides"].items():
        if value is not None:
            parts += ["--" + key.replace("_", "-"), str(value)]
    parts.append(subcommand)
    if suite:
        parts += ["--suite", str(suite)]
    for key, value in flags.items():
        if value is not None:
            parts += ["--" + key.replace("_", "-"), str(value)]
    return env + shlex.join(parts)


def run_suite(ctx, subcommand: str, suite, table: str, flags: dict, make_config, make_runner, *, quiet: bool,
              report_only: bool, required: tuple[str, ...] = (), more_fields=None):
    """The body every evaluation command shares; returns (config, report).

    Runner fields: the suite's ``[table]``, then the flags given (``more_fields(fields)`` may add what a flag
    cannot say as one value). Settings: the suite's ``[settings]`` < settings file and environment < global
    flags (``scr --scope-mode ... eval``). ``make_runner(config, settings, command, log)`` returns an object
    with ``run(report_only=...)``. A user error (bad suite, missing data, invalid field) is one red line and
    exit status 1."""
    from scr.cli_support import USER_ERRORS, err, print_error
    from scr.config import Settings
    from scr.evaluation.config import EvalConfigError, load_suite
    from scr.evaluation.data import DatasetError

    try:
        fields, suite_settings = load_suite(suite, table) if suite else ({}, {})
        fields.update({k: v for k, v in flags.items() if v is not None})
        if more_fields is not None:
            more_fields(fields)
        missing = [k for k in required if k not in fields]
        if missing:
            raise EvalConfigError(f"give {' and '.join('--' + k for k in missing)} (or a --suite that sets "
                                  f"{'them' if len(missing) > 1 else 'it'})")
        config = make_config(**fields)
        if Path(config.out).exists() and not Path(config.out).is_dir():
            raise EvalConfigError(f"--out {config.out} is a file; give a folder for the report and the records")
        overrides = {k: v for k, v in ctx.obj["overrides"].items() if v is not None}
        settings = Settings.load(ctx.obj["config"], **{**suite_settings, **overrides})
        log = (lambda msg: None) if quiet else (lambda msg: err.print(msg, highlight=False, markup=False))
        runner = make_runner(config, settings, command_line(ctx, subcommand, suite, flags), log)
        return config, runner.run(report_only=report_only)
    except (*USER_ERRORS, EvalConfigError, DatasetError) as exc:
        print_error(exc)
        raise typer.Exit(1)
