"""Shared pieces of the command-line entry points (scr.cli and the serve / eval / edit commands)."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from scr.config import Settings, SettingsError
from scr.engine import Engine
from scr.kb import IngestError, KBError
from scr.llm.base import BackendError
from scr.models import ModelNotFoundError
from scr.pipeline import QuestionError

out = Console()
err = Console(stderr=True)
USER_ERRORS = (KBError, IngestError, QuestionError, SettingsError, BackendError, ModelNotFoundError, ValueError,
               FileNotFoundError)


def settings_from(ctx: typer.Context, **extra) -> Settings:
    overrides = dict(ctx.obj["overrides"])
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return Settings.load(ctx.obj["config"], **overrides)


def print_error(exc: BaseException | str) -> None:
    """``error: <message>`` on stderr, the message printed as it is: square brackets in it ("reads [eval]", a
    question's "[1]") are text, not console markup."""
    err.print("[red]error:[/red]", escape(str(exc)), highlight=False, soft_wrap=True)


@contextmanager
def engine_from(ctx: typer.Context, **extra) -> Iterator[Engine]:
    """An Engine for one command; user errors become a one-line message and exit code 1."""
    engine = None
    try:
        engine = Engine(settings_from(ctx, **extra))
        yield engine
    except USER_ERRORS as exc:
        print_error(exc)
        raise typer.Exit(1)
    finally:
        if engine is not None:
            engine.close()


@contextmanager
def progress_bar(label: str):
    """A progress callback (done, total) drawn on stderr."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
