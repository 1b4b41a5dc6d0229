"""MEMIT (Meng et al., 2023): the locate-then-edit core with a covariance-regularised least-squares step.

    Delta = R K1^T (lambda C0 + K1 K1^T)^-1
keeps W's outputs on the corpus keys (C0) close while writing the residual R for the new keys K1.
"""

from __future__ import annotations

import torch

from scr.editing.core import LocateThenEditEditor


class MEMITEditor(LocateThenEditEditor):
    method = "memit"

    def solve(self, index: int, layer: int, keys: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        cov = self.covariances()[layer].double().to(keys.device)
        # (lambda C0 + K K^T) is symmetric, so solve(A, K)^T = K^T A^-1 and the update is R K^T A^-1.
        adjusted = torch.linalg.solve(self.hparams.mom2_update_weight * cov + keys @ keys.T, keys)
        return resid @ adjusted.T
