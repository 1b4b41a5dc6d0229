"""`scr edit`: apply a dataset's updates to the model's weights and save the edited model as a folder.

The folder is a normal Hugging Face model folder (``AutoModelForCausalLM.from_pretrained(DIR)``, servable by
vLLM), plus ``scr_editing.json`` (method, hyper-parameters, edits); BalancEdit and GRACE keep the weights as they
were and add their codebook, which ``scr.editing.load_edited(DIR)`` re-attaches.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import List, Optional

import typer


def parse_overrides(items: list[str] | None) -> dict:
    """``NAME=VALUE`` pairs; a VALUE that parses as JSON (numbers, lists, true) is taken as such."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {item!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out


def command(
    ctx: typer.Context,
    method: str = typer.Option(..., "--method", help="memit | alphaedit | come | come-memit | balancedit | grace"),
    data: str = typer.Option(..., "--data", help="dataset file (or a path relative to the data dir)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="knowedit | counterfact | jsonl (default: detected)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="data directory [env SCR_DATA_DIR]"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="only the first LIMIT cases"),
    batch: int = typer.Option(1, "--edit-batch-size", min=1, help="edits per update (the methods' batch editing)"),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="hyper-parameter NAME=VALUE (repeatable)"),
    out_dir: Path = typer.Option(..., "--out", help="folder to write the edited model to (must not exist)"),
) -> None:
    """Edit the model's weights with a parameter-editing method and save it as a Hugging Face folder."""
    from scr.cli_support import USER_ERRORS, out, print_error, progress_bar, settings_from
    from scr.editing import METHODS, make_editor
    from scr.evaluation.data import DatasetError, load_cases, resolve_data
    from scr.models import load_causal_lm

    try:
        if method.lower() not in METHODS:
            raise ValueError(f"unknown editing method {method!r}; choose from {', '.join(METHODS)}")
        if out_dir.exists():
            raise ValueError(f"{out_dir} exists: give a new folder")
        settings = settings_from(ctx)
        cases = load_cases(resolve_data(data, data_dir), fmt, limit)
        if not cases:
            raise DatasetError(f"{data}: no cases")
        requests = [c.edit_request() for c in cases]
        hparams = parse_overrides(overrides)
        model, tokenizer = load_causal_lm(settings.llm, device=settings.device, dtype=settings.dtype)
        editor = make_editor(method, model, tokenizer, **hparams)
        started = time.perf_counter()
        with progress_bar(f"{method}: editing") as progress:
            for start in range(0, len(requests), batch):
                editor.apply(requests[start : start + batch])
                progress(min(start + batch, len(requests)), len(requests))
        seconds = time.perf_counter() - started
        # Written beside the destination and renamed into place: an interrupted save leaves no half folder.
        partial = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        editor.save(partial)
        partial.rename(out_dir)
    except (*USER_ERRORS, DatasetError, TypeError) as exc:
        print_error(exc)
        raise typer.Exit(1)
    out.print(f"{method}: {len(requests)} edits in {seconds:.1f} s ({seconds / len(requests):.2f} s per edit); "
              f"saved to {out_dir}", highlight=False)
