"""Tokenising edit prompts: right-padded batches, the subject's last token, and MEMIT's context templates."""

from __future__ import annotations

import torch

from scr.editing.request import EditRequest


def pad_id(tok) -> int:
    for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0


def encode(tok, text: str) -> list[int]:
    return tok(text)["input_ids"]


def encode_batch(tok, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Right-padded (input_ids, attention_mask, lengths); right padding keeps Llama's default positions right."""
    return pad_rows(tok, [encode(tok, t) for t in texts], device)


def pad_rows(tok, rows: list[list[int]], device=None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Token rows right-padded into (input_ids, attention_mask, lengths)."""
    lengths = [len(r) for r in rows]
    width = max(lengths)
    ids = torch.full((len(rows), width), pad_id(tok), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device), lengths


def target_ids(tok, target: str) -> list[int]:
    """Tokens of the answer as it continues a prompt (a leading space, no special tokens)."""
    ids = tok(" " + target.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"empty target {target!r}")
    return ids


def subject_texts(tok, request: EditRequest, context_templates: list[str]) -> tuple[list[str], list[int]]:
    """The edit prompt inside each context template, and the index of the subject's last token in each.

    The index is len(tokens of the text up to the subject's end) - 1, as in ROME/MEMIT.
    """
    template, subject = request.template()
    texts, indices = [], []
    for ctx in context_templates:
        prompt_template = ctx.format(template)  # e.g. "Because it was ... . The capital of {} is"
        texts.append(prompt_template.format(subject))
        head = prompt_template[: prompt_template.index("{}")].format() + subject  # .format() unescapes {{ }}
        indices.append(len(encode(tok, head)) - 1)
    return texts, indices


@torch.no_grad()
def generate_context_templates(model, tok, count: int, n_tokens: int, seed: int) -> list[str]:
    """["{}"] + ``count`` short texts sampled from the model (top-5, seeded), each followed by ". {}".

    MEMIT samples these from the model so that keys and values are averaged over a few plausible prefixes.
    Sampling uses its own torch.Generator, so it neither reads nor moves the global RNG.
    """
    if count <= 0:
        return ["{}"]
    generator = torch.Generator().manual_seed(seed)
    starts = ["The", "Therefore", "Because", "I", "You"]
    device = next(model.parameters()).device
    templates = ["{}"]
    for i in range(count):
        ids = torch.tensor([encode(tok, starts[i % len(starts)])], device=device)
        for _ in range(n_tokens):
            logits = model(input_ids=ids).logits[0, -1].float().cpu()
            top = torch.topk(logits, 5)
            probs = torch.softmax(top.values, dim=-1)
            pick = top.indices[torch.multinomial(probs, 1, generator=generator)]
            ids = torch.cat([ids, pick.to(device).view(1, 1)], dim=1)
        text = tok.decode(ids[0], skip_special_tokens=True)
        text = text.replace("{", " ").replace("}", " ").replace("\n", " ").strip()
        templates.append(text + ". {}")
    return templates
