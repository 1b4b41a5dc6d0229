"""Checkpoints of an edit stream, so that a long sequence of edits resumes where it stopped.

A thousand sequential MEMIT edits take hours on a CPU. After each batch the stream's editor state (edited weights,
AlphaEdit's key cache, a codebook) is saved with the list of requests applied so far; a later process asking for
the same requests, in the same order, from the same configuration, loads that state instead of redoing them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from scr.editing.base import Editor
from scr.editing.covariance import atomic_save
from scr.editing.request import EditRequest


def request_key(request: EditRequest) -> str:
    return json.dumps(dataclasses.asdict(request), sort_keys=True)


class EditCheckpoint:
    """One file holding the longest stream saved for ``key`` (a digest of the model and editing configuration)."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self._saved: list[str] | None = None  # the saved stream's request keys, read once

    def saved_stream(self) -> list[str]:
        if self._saved is None:
            self._saved = []
            if self.path.exists():
                try:  # memory-mapped: reading the stream does not read the tensors
                    saved = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
                except Exception:  # a damaged checkpoint only costs the work it would have saved
                    saved = {}
                if saved.get("key") == self.key:
                    self._saved = list(saved["stream"])
        return self._saved

    def covers(self, applied: list[str], wanted: list[str]) -> int:
        """How many of ``wanted`` (to follow ``applied``) loading the checkpoint would skip; 0 if it cannot be used.

        The file holds the state at the END of its stream, so it is usable only if that stream is ``applied``
        followed by a prefix of ``wanted``."""
        saved = self.saved_stream()
        n = len(applied)
        if not n < len(saved) <= n + len(wanted) or saved[:n] != applied:
            return 0
        return len(saved) - n if saved[n:] == wanted[: len(saved) - n] else 0

    def load_into(self, editor: Editor, upto: int) -> None:
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        if len(saved["stream"]) != upto:
            raise ValueError(f"{self.path} holds {len(saved['stream'])} edits, not the {upto} asked for")
        editor.load_state(saved["state"])

    def save(self, stream: list[str], editor: Editor) -> None:
        saved = self.saved_stream()
        if len(saved) > len(stream) and saved[: len(stream)] == stream:
            return  # the file already holds this stream and more of it
        atomic_save({"key": self.key, "stream": list(stream), "state": editor.state()}, self.path)
        self._saved = list(stream)
