"""Parameter-editing comparators for SCR: MEMIT, AlphaEdit, CoME (locate-then-edit) and BalancEdit/GRACE.

    from scr.editing import EditRequest, make_editor
    editor = make_editor("alphaedit", model, tokenizer)
    report = editor.apply([EditRequest(prompt, subject, target_new, target_true)])
    ...; editor.save(folder); editor.restore()
"""

from scr.editing.api import METHODS, EditedModel, load_edited, make_editor
from scr.editing.base import EditReport, Editor
from scr.editing.hparams import (AlphaEditHparams, CodebookHparams, CoMEHparams, CovarianceSettings,
                                 LocateEditHparams)
from scr.editing.presets import default_hparams, detect_architecture
from scr.editing.request import EditRequest

__all__ = [
    "METHODS", "EditRequest", "EditReport", "Editor", "EditedModel", "make_editor", "load_edited",
    "default_hparams", "detect_architecture", "LocateEditHparams", "AlphaEditHparams", "CoMEHparams",
    "CodebookHparams", "CovarianceSettings",
]
