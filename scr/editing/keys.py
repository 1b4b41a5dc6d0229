"""Keys: the input of W_out at the subject's last token, averaged over the context templates.

The same routine also reads the residual stream (a block's output) at the subject's last token, which the
spread step needs to know how much of z* is already written.
"""

from __future__ import annotations

import torch

from scr.editing.hooks import StopForward, capture_inputs, capture_output
from scr.editing.presets import Architecture
from scr.editing.prompts import encode_batch, subject_texts
from scr.editing.request import EditRequest


@torch.no_grad()
def _at_subject(model, tok, requests, context_templates, read) -> torch.Tensor:
    """[n_requests, dim]: ``read(input_ids, mask)`` activations at each subject's last token, template-averaged."""
    texts, indices = [], []
    for request in requests:
        t, i = subject_texts(tok, request, context_templates)
        texts += t
        indices += i
    device = next(model.parameters()).device
    ids, mask, _ = encode_batch(tok, texts, device)
    hidden = read(ids, mask)  # [rows, seq, dim]
    rows = hidden[torch.arange(len(texts), device=device), torch.tensor(indices, device=device)]
    return rows.view(len(requests), len(context_templates), -1).mean(1).float()


def compute_keys(model, tok, arch: Architecture, layer: int, requests: list[EditRequest],
                 context_templates: list[str]) -> torch.Tensor:
    """K1 as rows, [n_requests, d_in]."""
    module = arch.mlp_out(model, layer)

    def read(ids, mask):
        store = {}
        with capture_inputs({"k": module}, store, stop_at=module):
            try:
                model(input_ids=ids, attention_mask=mask)
            except StopForward:
                pass
        return store["k"]

    return _at_subject(model, tok, requests, context_templates, read)


def residual_at_subject(model, tok, arch: Architecture, layer: int, requests: list[EditRequest],
                        context_templates: list[str]) -> torch.Tensor:
    """The output of block ``layer`` at the subject's last token, [n_requests, hidden]."""
    block = arch.block(model, layer)

    def read(ids, mask):
        store = {}
        with capture_output(block, store, "h", stop=True):
            try:
                model(input_ids=ids, attention_mask=mask)
            except StopForward:
                pass
        return store["h"]

    return _at_subject(model, tok, requests, context_templates, read)
