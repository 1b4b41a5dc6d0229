"""AlphaEdit (Fang et al., ICLR 2025): MEMIT's step projected onto the null space of the preserved keys.

P = U_hat U_hat^T with U_hat the eigenvectors of C0 whose eigenvalue is below ``nullspace_threshold``, so
Delta P K0 ~ 0: outputs on the corpus keys stay put. Sequential edits also keep the running sum of earlier
edit keys (cache_c) so later updates respect them:
    Delta^T = solve(P (K1 K1^T + cache_c) + alpha I, P K1 R^T);  cache_c += K1 K1^T after each batch.
"""

from __future__ import annotations

import torch

from scr.editing.core import LocateThenEditEditor
from scr.editing.covariance import atomic_save, stats_dir
from scr.editing.hparams import AlphaEditHparams


def null_space_projection(cov: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
    """(P, rank of P) from the eigen-decomposition of the symmetric C0."""
    eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
    kept = eigenvectors[:, eigenvalues < threshold]
    return (kept @ kept.T).float(), kept.shape[1]


class AlphaEditEditor(LocateThenEditEditor):
    method = "alphaedit"
    hparams: AlphaEditHparams

    def __init__(self, model, tokenizer, hparams: AlphaEditHparams, arch=None):
        super().__init__(model, tokenizer, hparams, arch)
        self._projections: dict[int, torch.Tensor] | None = None
        self.null_space_rank: dict[int, int] = {}
        self.cache_c: dict[int, torch.Tensor] = {}  # running K K^T of earlier edits, per layer

    def projections(self) -> dict[int, torch.Tensor]:
        """P per edited layer, computed once from C0 and cached on disk beside it."""
        if self._projections is None:
            folder = stats_dir(self.model, self.hparams.covariance)
            self._projections = {}
            for layer, cov in self.covariances().items():
                path = folder / f"layer{layer}-null-{self.hparams.nullspace_threshold:g}.pt"
                if path.exists():
                    saved = torch.load(path, map_location="cpu", weights_only=True)
                else:
                    p, rank = null_space_projection(cov, self.hparams.nullspace_threshold)
                    saved = {"P": p, "rank": rank}
                    atomic_save(saved, path)
                self._projections[layer] = saved["P"]
                self.null_space_rank[layer] = int(saved["rank"])
        return self._projections

    def solve(self, index: int, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        p = self.projections()[layer].double().to(keys.device)
        cache = self.cache_c.get(layer, torch.zeros_like(p))
        eye = torch.eye(p.shape[0], dtype=p.dtype, device=p.device)
        update_t = torch.linalg.solve(p @ (keys @ keys.T + cache) + self.hparams.l2 * eye, p @ keys @ resid.T)
        return update_t.T

    def after_update(self, index: int, layer: int, keys: torch.Tensor) -> None:
        self.cache_c[layer] = self.cache_c.get(layer, 0) + (keys @ keys.T).cpu()

    def _restore(self) -> None:
        super()._restore()
        self.cache_c.clear()

    def _state(self) -> dict:
        return {**super()._state(), "cache_c": dict(self.cache_c)}

    def _load_state(self, state: dict) -> None:
        super()._load_state(state)
        self.cache_c = dict(state["cache_c"])
