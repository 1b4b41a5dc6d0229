"""The evaluator's entry points: make_editor(method, model, tokenizer, **overrides) and load_edited(folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scr.editing.alphaedit import AlphaEditEditor
from scr.editing.base import EDITING_INFO_FILE, Editor
from scr.editing.codebook import CODEBOOK_FILE, CodebookEditor, codebook_hparams_from_file
from scr.editing.come import CoMEAlphaEditEditor, CoMEMEMITEditor
from scr.editing.memit import MEMITEditor
from scr.editing.hparams import with_overrides
from scr.editing.presets import default_hparams
from scr.models import loading

METHODS = ("memit", "alphaedit", "come", "come-memit", "balancedit", "grace")
CODEBOOK_METHODS = ("balancedit", "grace")  # weights untouched: a codebook keyed on rendered prompts


def make_editor(method: str, model, tokenizer, **overrides) -> Editor:
    """An editor for ``model`` with the preset hyper-parameters of ``method``, any field overridden by name.

    method: memit | alphaedit | come (CoME over AlphaEdit) | come-memit | balancedit | grace.
    Covariance settings may be passed flat (``n_samples=64``) or as ``covariance=CovarianceSettings(...)``;
    ``hparams=`` replaces the presets (other keyword arguments then override its fields).
    """
    method = method.lower()
    given = overrides.pop("hparams", None)
    hparams = with_overrides(given, overrides) if given is not None else default_hparams(method, model, **overrides)
    if method == "memit":
        return MEMITEditor(model, tokenizer, hparams)
    if method == "alphaedit":
        return AlphaEditEditor(model, tokenizer, hparams)
    if method in ("come", "come-memit"):
        return (CoMEMEMITEditor if hparams.base == "memit" else CoMEAlphaEditEditor)(model, tokenizer, hparams)
    if method in CODEBOOK_METHODS:
        return CodebookEditor(model, tokenizer, hparams)
    raise ValueError(f"unknown editing method '{method}'; choose from {METHODS}")


@dataclass
class EditedModel:
    model: object
    tokenizer: object
    editor: CodebookEditor | None  # the live codebook adapter of a BalancEdit/GRACE folder, else None


def load_edited(folder, device: str = "cpu", dtype: str = "float32") -> EditedModel:
    """Load a folder written by ``Editor.save``; a codebook folder gets its adapter re-attached."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    with loading("edited model", str(folder)):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    editor = None
    if (folder / CODEBOOK_FILE).exists():
        editor = CodebookEditor(model, tokenizer, codebook_hparams_from_file(folder / CODEBOOK_FILE))
        editor.load_codebook(folder / CODEBOOK_FILE)
    return EditedModel(model, tokenizer, editor)


__all__ = ["METHODS", "CODEBOOK_METHODS", "EDITING_INFO_FILE", "EditedModel", "make_editor", "load_edited"]
