"""CoME (Jung et al., NAACL 2025): conflict-free editing by unlearning the old answer inside z*.

Only the target value changes; the closed form is MEMIT's or AlphaEdit's:
    delta_old: optimised toward the OLD answer (half the steps), delta: toward the new one,
    c = normalize(delta + delta_old),  proj = (delta_old . c) c   (what both share: generic features),
    z* = h + delta - a * delta_old + proj  on the top-p dimensions of |h + delta|,  h + delta elsewhere.
"""

from __future__ import annotations

import warnings

import torch

from scr.editing.alphaedit import AlphaEditEditor
from scr.editing.memit import MEMITEditor
from scr.editing.request import EditRequest


class CoMEMixin:
    def target_value(self, request: EditRequest, templates: list[str]) -> tuple[torch.Tensor, dict]:
        hp = self.hparams
        z_new, info = super().target_value(request, templates)
        if not request.target_true:
            warnings.warn("CoME needs the old answer (target_true); editing this request without unlearning")
            return z_new, info
        old = self.descent(request, request.target_true, templates,
                           max(1, round(hp.v_num_grad_steps * hp.old_steps_fraction)))
        h, delta, delta_old = old.h, z_new - old.h, old.delta
        c = torch.nn.functional.normalize(delta + delta_old, dim=0)
        shared = (delta_old @ c) * c
        corrected = h + delta - hp.unlearn_weight * delta_old + shared
        n_top = max(1, round(hp.top_p_dims * z_new.numel()))
        top = torch.zeros_like(z_new, dtype=torch.bool)
        top[z_new.abs().topk(n_top).indices] = True
        return torch.where(top, corrected, z_new), {**info, "old_nll": old.nll}


class CoMEAlphaEditEditor(CoMEMixin, AlphaEditEditor):
    method = "come"


class CoMEMEMITEditor(CoMEMixin, MEMITEditor):
    method = "come-memit"
