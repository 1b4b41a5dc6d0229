"""The interface every editing method offers the evaluator: apply, restore, save, and timings."""

from __future__ import annotations

import dataclasses
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from scr.editing.request import EditRequest

EDITING_INFO_FILE = "scr_editing.json"


@dataclass
class EditReport:
    method: str
    n_edits: int
    seconds: float
    details: list[dict] = field(default_factory=list)  # per request, method-specific (final NLL, radius...)

    @property
    def seconds_per_edit(self) -> float:
        return self.seconds / max(self.n_edits, 1)


class Editor(ABC):
    """Edits a model in place; ``apply`` calls accumulate, ``restore`` undoes them all."""

    method: str = "editor"

    def __init__(self, model, tokenizer, hparams):
        self.model = model
        self.tokenizer = tokenizer
        self.hparams = hparams
        self.reports: list[EditReport] = []

    @property
    def n_edits(self) -> int:
        return sum(r.n_edits for r in self.reports)

    @property
    def seconds_per_edit(self) -> float:
        """Mean wall-clock seconds per edit over every apply() since the last restore()."""
        return sum(r.seconds for r in self.reports) / max(self.n_edits, 1)

    def apply(self, requests: Sequence[EditRequest]) -> EditReport:
        requests = [r if isinstance(r, EditRequest) else EditRequest.from_record(r) for r in requests]
        start = time.perf_counter()
        details = self._apply(requests) if requests else []
        report = EditReport(self.method, len(requests), time.perf_counter() - start, details)
        self.reports.append(report)
        return report

    @abstractmethod
    def _apply(self, requests: list[EditRequest]) -> list[dict]:
        ...

    def restore(self) -> None:
        self._restore()
        self.reports.clear()

    @abstractmethod
    def _restore(self) -> None:
        ...

    # --- checkpoints: what apply() changed, to resume a long edit stream in another process ----------------
    def state(self) -> dict:
        """Every change since the last restore(), as tensors and plain values (``torch.save``-able)."""
        reports = json.dumps([dataclasses.asdict(r) for r in self.reports], default=float)
        return {"method": self.method, "reports": reports, **self._state()}

    def load_state(self, state: dict) -> None:
        """Undo our edits, then re-apply the changes ``state()`` captured (same method, same base model)."""
        if state.get("method") != self.method:
            raise ValueError(f"a {state.get('method')!r} checkpoint cannot be loaded into a {self.method!r} editor")
        self.restore()
        self._load_state(state)
        self.reports = [EditReport(**r) for r in json.loads(state["reports"])]

    def _state(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no checkpoints")

    def _load_state(self, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no checkpoints")

    def info(self) -> dict:
        return {"method": self.method, "n_edits": self.n_edits, "hparams": dataclasses.asdict(self.hparams)}

    def save(self, out_dir) -> Path:
        """A Hugging Face folder (``AutoModelForCausalLM.from_pretrained(out_dir)``) plus ``scr_editing.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._save_model(out)
        self.tokenizer.save_pretrained(out)
        (out / EDITING_INFO_FILE).write_text(json.dumps(self.info(), indent=2, default=str))
        return out

    def _save_model(self, out: Path) -> None:
        self.model.save_pretrained(out, safe_serialization=True)
