"""A journal of an edit stream's target values: small enough to commit, so a long stream outlives its machine.

A checkpoint (checkpoint.py) holds the edited weights and AlphaEdit's key cache, tens of MB for a 135M model,
kept in the run's scratch folder and lost with it. Most of an edit's time, though, goes into its target value z*
(a gradient descent per request); the closed-form update after it is cheap. The journal appends each request's
z* (float32, base64) and diagnostics as one JSONL line, about 3 kB per edit for a 576-wide model. Replaying it
redoes only the updates (keys, residuals, one solve per layer) in the original order, which reproduces the
edited weights from z* alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from scr.editing.value_cache import decode_vector as _decode, encode_vector as _encode
from scr.evaluation.jsonl_log import append_rows, read_rows


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ValueJournal:
    """The longest stream journalled for ``key`` (the model and editing configuration) in one JSONL file.

    Rows: ``{"key", "at", "request", "z", "info", "seconds"}``: ``at`` the request's position in the stream,
    ``request`` a digest of its request key, ``seconds`` what the edit cost when it was made. Rows of other keys
    are ignored. Appends only ever extend the journalled stream, so a stream resumed from a checkpoint that is
    ahead of its journal is not journalled."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), _digest(key)
        self._rows: list[dict] | None = None

    def rows(self) -> list[dict]:
        if self._rows is None:
            self._rows = []
            for row in read_rows(self.path):
                if row.get("key") == self.key and row.get("at") == len(self._rows):
                    self._rows.append(row)
        return self._rows

    def covers(self, applied: list[str], wanted: list[str]) -> int:
        """How many of ``wanted`` (to follow ``applied``) the journal holds z* for; 0 if its stream differs."""
        stream = [row["request"] for row in self.rows()]
        n = len(applied)
        if len(stream) <= n or stream[:n] != [_digest(k) for k in applied]:
            return 0
        count = 0
        for have, want in zip(stream[n:], wanted):
            if have != _digest(want):
                break
            count += 1
        return count

    def values(self, start: int, count: int) -> list[tuple[torch.Tensor, dict, float]]:
        """(z*, diagnostics, seconds the edit took) of ``count`` requests from position ``start``."""
        return [(_decode(row["z"]), row["info"], row["seconds"]) for row in self.rows()[start : start + count]]

    def extend(self, stream: list[str], values: list[tuple[torch.Tensor, dict]], seconds_each: float) -> bool:
        """Record the z* of the last ``len(values)`` requests of ``stream``, if the journal holds exactly the
        requests before them (a shorter or diverging stream never adds to another's). True if written."""
        start = len(stream) - len(values)
        have = [row["request"] for row in self.rows()]
        if len(have) != start or have != [_digest(k) for k in stream[:start]]:
            return False
        new = [{"key": self.key, "at": start + i, "request": _digest(k), "z": _encode(z), "info": info,
                "seconds": round(seconds_each, 3)} for i, (k, (z, info)) in enumerate(zip(stream[start:], values))]
        append_rows(self.path, new, sync=True)
        self.rows().extend(new)
        return True
