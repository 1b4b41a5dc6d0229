"""Target values z*: the residual stream at the last edited layer that makes the model say the new answer.

We optimise a delta added to block L's output at the subject's last token, over the edit prompt inside every
context template, minimising
    NLL(target | prompt)  +  kl_factor * KL(current || initial) on "{subject} is a"  +  wd * |delta| / |h|^2
and clamp |delta| <= clamp_norm_factor * |h| after each step (ROME/MEMIT's objective). z* = h + delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scr.editing.hooks import frozen, rewrite_output
from scr.editing.hparams import LocateEditHparams
from scr.editing.presets import Architecture
from scr.editing.prompts import encode, pad_rows, subject_texts, target_ids
from scr.editing.request import EditRequest


@dataclass
class TargetValue:
    h: torch.Tensor  # block L's output at the subject's last token, plain edit prompt (no template)
    delta: torch.Tensor  # the optimised shift; z* = h + delta
    nll: float  # final mean NLL of the target tokens
    steps: int


def optimise_delta(model, tok, arch: Architecture, hp: LocateEditHparams, request: EditRequest,
                   target: str, context_templates: list[str], layer: int, steps: int) -> TargetValue:
    """The delta at block ``layer`` (subject's last token) that makes ``target`` follow the edit prompt."""
    device = next(model.parameters()).device
    answer = target_ids(tok, target)
    prompts, subject_idx = subject_texts(tok, request, context_templates)
    _, subject = request.template()
    kl_prompt, kl_idx = subject_texts(tok, EditRequest("{} is a".replace("{}", subject), subject, target),
                                      ["{}"])

    # Rows: every templated prompt + answer[:-1] (teacher forcing), then the KL prompt.
    rows, answer_pos = [], []
    for text in prompts:
        ids = encode(tok, text)
        answer_pos.append(len(ids) - 1)  # logits at answer_pos + j predict answer[j]
        rows.append(ids + answer[:-1])
    kl_ids = encode(tok, kl_prompt[0])
    rows.append(kl_ids)
    input_ids, mask, _ = pad_rows(tok, rows, device)

    n_rewrite = len(prompts)
    edit_rows = torch.arange(len(rows), device=device)
    edit_cols = torch.tensor(subject_idx + kl_idx, device=device)
    # Positions whose logits we score: each answer token of each rewriting row, and the KL row's last token.
    score_rows = torch.tensor([i for i in range(n_rewrite) for _ in answer] + [n_rewrite], device=device)
    score_cols = torch.tensor([p + j for p in answer_pos for j in range(len(answer))] + [len(kl_ids) - 1],
                              device=device)
    answer_tokens = torch.tensor(answer * n_rewrite, device=device)

    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
    delta = torch.zeros(hidden, device=device, dtype=next(model.parameters()).dtype, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
    seen: dict[str, torch.Tensor] = {}

    def add_delta(h: torch.Tensor) -> torch.Tensor:
        if "h" not in seen:
            seen["h"] = h[0, subject_idx[0]].detach().clone()  # context template 0 is the plain "{}"
        return h.index_put((edit_rows, edit_cols), delta.expand(len(rows), -1), accumulate=True)

    base, head = model.base_model, model.get_output_embeddings()
    kl_init = None
    nll_value, step = float("inf"), 0
    with frozen(model), rewrite_output(arch.block(model, layer), add_delta):
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            last = base(input_ids=input_ids, attention_mask=mask).last_hidden_state
            logits = head(last[score_rows, score_cols]).float()  # only the positions we score
            log_probs = logits.log_softmax(-1)
            n_answer = len(answer) * n_rewrite
            nll = -log_probs[torch.arange(n_answer), answer_tokens].view(n_rewrite, len(answer)).mean(1).mean()
            kl_log_probs = log_probs[n_answer:]
            if kl_init is None:
                kl_init = kl_log_probs.detach().clone()
            kl = F.kl_div(kl_init, kl_log_probs, log_target=True, reduction="batchmean")
            h_norm = seen["h"].norm()
            decay = hp.v_weight_decay * delta.norm() / h_norm**2
            loss = nll + hp.kl_factor * kl + decay
            nll_value = nll.item()
            if nll_value < hp.v_loss_stop:
                break
            if step == steps:
                break  # the loss was measured with the final delta; no further step
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # keep |delta| <= clamp * |h|
                max_norm = hp.clamp_norm_factor * h_norm
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
    return TargetValue(h=seen["h"].float(), delta=delta.detach().float(), nll=nll_value, steps=step)
