"""Target-value optimisations on the UNEDITED model, shared by every method and process that needs them.

The gradient descent for an edit's target value (values.py) is most of its cost. On the unedited model its
result depends only on the model, the request, the target, the context templates and the descent's settings,
so MEMIT and AlphaEdit find the same z* for a request, and CoME's delta toward the new answer is that z* too.
Protocols that edit from the unmodified model every time (each MQuAKE case, each sequential stream of N = 10,
the first batch of any stream) then optimise each (request, target) once for all three methods.

Only descents run on a model its editor has not changed are looked up or stored, under a fingerprint of every
weight, so an edited model (or another model) never reads them. Rows are JSONL, one per descent: ``key``, ``h``
and ``delta`` (float32, base64), ``nll``, ``steps``, and the wall ``seconds`` and ``cpu_seconds`` the descent
took, which methods that reuse it count as their own cost so that costs stay comparable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from scr.editing.hparams import LocateEditHparams
from scr.editing.request import EditRequest
from scr.editing.values import TargetValue


def encode_vector(v: torch.Tensor) -> str:
    """A float32 vector as base64 text (exact round trip with ``decode_vector``)."""
    return base64.b64encode(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).decode("ascii")


def decode_vector(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.float32).copy())


@torch.no_grad()
def weights_fingerprint(model) -> str:
    """A digest of every parameter's name, shape, dtype and bytes."""
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        digest.update(p.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


# The settings of optimise_delta; a descent's result depends on nothing else of the hyper-parameters.
_DESCENT_FIELDS = ("v_lr", "v_weight_decay", "clamp_norm_factor", "kl_factor", "v_loss_stop")


def descent_key(fingerprint: str, hp: LocateEditHparams, request: EditRequest, target: str, templates: list[str],
                layer: int, steps: int) -> str:
    spec = {"model": fingerprint, "layer": layer, "steps": steps, "templates": templates, "target": target,
            "request": [request.prompt, request.subject], **{f: getattr(hp, f) for f in _DESCENT_FIELDS}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()[:32]


class TargetValueCache:
    """The descents stored in one JSONL file; several processes may append to it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._rows: dict[str, dict] = {}
        self._read_to = 0  # bytes of the file already read

    def _refresh(self) -> None:
        """Read what was appended since the last look (by this process or another)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._read_to)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
                self._rows[row["key"]] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill
        self._read_to += end

    def get(self, key: str) -> tuple[TargetValue, float, float] | None:
        """The stored descent and the wall and CPU seconds it took, or None."""
        if key not in self._rows:
            self._refresh()
        row = self._rows.get(key)
        if row is None:
            return None
        value = TargetValue(h=decode_vector(row["h"]), delta=decode_vector(row["delta"]), nll=row["nll"],
                            steps=row["steps"])
        return value, float(row["seconds"]), float(row.get("cpu_seconds", row["seconds"]))

    def put(self, key: str, value: TargetValue, seconds: float, cpu_seconds: float) -> None:
        row = {"key": key, "h": encode_vector(value.h), "delta": encode_vector(value.delta), "nll": value.nll,
               "steps": value.steps, "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of a whole line in append mode: concurrent writers do not interleave within it.
        with open(self.path, "ab") as fh:
            fh.write((json.dumps(row) + "\n").encode("utf-8"))
        self._rows[key] = row


def cached_descent(optimise, cache: TargetValueCache | None, key: str | None) -> tuple[TargetValue, tuple | None]:
    """(value, (wall, CPU seconds) it cost when made if it came from ``cache``, else None): ``optimise()`` runs only
    on a miss, and its result is stored when there is a ``key``."""
    if cache is not None and key is not None and (hit := cache.get(key)) is not None:
        return hit[0], hit[1:]
    start, cpu_start = time.perf_counter(), time.process_time()
    value = optimise()
    if cache is not None and key is not None:
        cache.put(key, value, time.perf_counter() - start, time.process_time() - cpu_start)
    return value, None
