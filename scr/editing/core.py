"""The locate-then-edit driver shared by MEMIT, AlphaEdit and CoME.

For a batch of requests:
  1. z*_i = h_i + delta_i at the last edited layer L (``target_value``; CoME overrides it),
  2. for each edited layer l, low to high:
       K1 = keys at l (recomputed: edits below l change them),
       R  = (z* - h_L now) / (number of layers left)   -- the residual is spread over the remaining layers,
       W_out(l) += solve(l, K1, R)                     -- the least-squares step; MEMIT/AlphaEdit differ here.
"""

from __future__ import annotations

from collections import deque

import torch

from scr.editing.base import Editor
from scr.editing.covariance import key_covariances
from scr.editing.hparams import LocateEditHparams
from scr.editing.keys import compute_keys, residual_at_subject
from scr.editing.presets import Architecture, detect_architecture
from scr.editing.prompts import generate_context_templates
from scr.editing.request import EditRequest
from scr.editing.value_cache import TargetValueCache, cached_descent, descent_key, weights_fingerprint
from scr.editing.values import TargetValue, optimise_delta


class LocateThenEditEditor(Editor):
    hparams: LocateEditHparams

    def __init__(self, model, tokenizer, hparams: LocateEditHparams, arch: Architecture | None = None):
        super().__init__(model, tokenizer, hparams)
        self.arch = arch or detect_architecture(model)
        n_layers = self.arch.n_layers(model)
        if not hparams.layers or any(not 0 <= l < n_layers for l in hparams.layers):
            raise ValueError(f"layers {hparams.layers} out of range for a {n_layers}-layer model")
        self.layers = sorted(hparams.layers)
        self._originals: dict[int, torch.Tensor] = {}  # W_out before our first edit, per layer
        self._context_templates: list[str] | None = None
        self._cov: dict[int, torch.Tensor] | None = None
        # z* of each request of the last apply() (what a journal records), and z* computed earlier for requests
        # still to come (a journal being replayed), as (request, z*, diagnostics).
        self.last_values: list[tuple[torch.Tensor, dict]] = []
        self._replay: deque[tuple[EditRequest, torch.Tensor, dict]] = deque()
        # Descents on the unedited model shared with other methods and processes (value_cache.py; None: off), and
        # how many of the last apply()'s descents came from it, with the wall and CPU seconds they cost when made.
        self.value_cache: TargetValueCache | None = None
        self._fingerprint: str | None = None  # of the unedited weights, taken at the first cached descent
        self.last_reused: tuple[int, float, float] = (0, 0.0, 0.0)

    # --- lazily computed, reused across apply() calls -------------------------------------------------
    def context_templates(self) -> list[str]:
        if self._context_templates is None:
            hp = self.hparams
            self._context_templates = generate_context_templates(
                self.model, self.tokenizer, hp.context_template_count, hp.context_template_tokens,
                hp.context_template_seed)
        return self._context_templates

    def covariances(self) -> dict[int, torch.Tensor]:
        """C0 per edited layer, from the unedited model (computed before our first weight change)."""
        if self._cov is None:
            self._cov = key_covariances(self.model, self.tokenizer, self.arch, self.layers,
                                        self.hparams.covariance)
        return self._cov

    def descent(self, request: EditRequest, target: str, templates: list[str], steps: int) -> TargetValue:
        """``optimise_delta`` at the last edited layer; while this editor has changed nothing, looked up in (and
        added to) ``value_cache``."""
        key = None
        if self.value_cache is not None and not self._originals:
            if self._fingerprint is None:
                self._fingerprint = weights_fingerprint(self.model)
            key = descent_key(self._fingerprint, self.hparams, request, target, templates, self.layers[-1], steps)
        value, cost = cached_descent(
            lambda: optimise_delta(self.model, self.tokenizer, self.arch, self.hparams, request, target, templates,
                                   self.layers[-1], steps), self.value_cache, key)
        if cost is not None:
            count, wall, cpu = self.last_reused
            self.last_reused = (count + 1, wall + cost[0], cpu + cost[1])
        return value

    # --- the strategy points ----------------------------------------------------------------------
    def target_value(self, request: EditRequest, templates: list[str]) -> tuple[torch.Tensor, dict]:
        """z* for one request and a dict of diagnostics."""
        v = self.descent(request, request.target_new, templates, self.hparams.v_num_grad_steps)
        return v.h + v.delta, {"nll": v.nll, "steps": v.steps, "delta_norm": v.delta.norm().item()}

    def solve(self, index: int, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        """The update of W_out at ``layer`` [out, in], from keys [in, n] and residuals [out, n] (float64)."""
        raise NotImplementedError

    def after_update(self, index: int, layer: int, keys: torch.Tensor) -> None:
        """Called after W_out at ``layer`` changed (AlphaEdit remembers the keys here)."""

    # --- the driver ---------------------------------------------------------------------------------
    def replay(self, values: list[tuple[EditRequest, torch.Tensor, dict]]) -> None:
        """Use these z* (computed by an earlier run of the same stream) for the next requests instead of
        optimising them: the closed-form updates are redone, the gradient descents are not."""
        self._replay.extend(values)

    def _target_value(self, request: EditRequest, templates: list[str]) -> tuple[torch.Tensor, dict]:
        if self._replay and self._replay[0][0] == request:
            _, z, info = self._replay.popleft()
            return z.to(next(self.model.parameters()).device), info
        self._replay.clear()  # the stream went another way: what was queued no longer applies
        return self.target_value(request, templates)

    def _apply(self, requests: list[EditRequest]) -> list[dict]:
        self.covariances()
        self.last_values = []
        self.last_reused = (0, 0.0, 0.0)
        details = []
        for start in range(0, len(requests), self.hparams.batch_size):
            details += self._edit_batch(requests[start : start + self.hparams.batch_size])
        return details

    def _edit_batch(self, requests: list[EditRequest]) -> list[dict]:
        templates = self.context_templates()
        last = self.layers[-1]
        values = [self._target_value(r, templates) for r in requests]
        self.last_values += values
        z_star = torch.stack([z for z, _ in values])  # [n, hidden]
        for index, layer in enumerate(self.layers):
            keys = compute_keys(self.model, self.tokenizer, self.arch, layer, requests, templates)
            current = residual_at_subject(self.model, self.tokenizer, self.arch, last, requests, templates)
            resid = (z_star - current) / (len(self.layers) - index)
            update = self.solve(index, layer, keys.T.double(), resid.T.double())
            weight = self.arch.weight(self.model, layer)
            if layer not in self._originals:
                self._originals[layer] = weight.detach().clone()
            with torch.no_grad():
                weight.add_(update.to(weight.dtype).to(weight.device))
            self.after_update(index, layer, keys.T.double())
        return [d for _, d in values]

    def _restore(self) -> None:
        with torch.no_grad():
            for layer, original in self._originals.items():
                self.arch.weight(self.model, layer).copy_(original)
        self._originals.clear()
        self._replay.clear()

    def _state(self) -> dict:
        # The edited weights themselves, not their difference: reloading them is exact.
        return {"weights": {layer: self.arch.weight(self.model, layer).detach().cpu().clone()
                            for layer in self._originals}}

    def _load_state(self, state: dict) -> None:
        with torch.no_grad():
            for layer, edited in state["weights"].items():
                weight = self.arch.weight(self.model, layer)
                self._originals[layer] = weight.detach().clone()
                weight.copy_(edited.to(weight.device, weight.dtype))

    def weight_delta(self, layer: int) -> torch.Tensor:
        """W_out(layer) now minus before our first edit ([out, in]; zeros if never edited)."""
        weight = self.arch.weight(self.model, layer).detach()
        return weight - self._originals[layer] if layer in self._originals else torch.zeros_like(weight)
