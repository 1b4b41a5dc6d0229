"""In-process transformers backend: batched, left-padded greedy generation on CPU or GPU."""

from __future__ import annotations

import threading
from typing import Sequence

import torch

from transformers import DynamicCache

from scr.llm.base import Prompt, TokenScores
from scr.models import load_causal_lm


class TransformersBackend:
    def __init__(self, model, tokenizer, name: str = "local", batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        # Generation must see a left-padded batch so every row's last real token sits at the end.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
        # One forward pass at a time: torch on CPU is not faster with concurrent calls, and the API is threaded.
        self._lock = threading.Lock()
        self._prefixes: dict[tuple[int, ...], list] = {}

    @classmethod
    def from_settings(cls, settings) -> "TransformersBackend":
        return cls.load(settings.llm, device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size)

    @classmethod
    def load(cls, name: str, device: str = "cpu", dtype: str = "float32", batch_size: int = 16):
        model, tokenizer = load_causal_lm(name, device=device, dtype=dtype)
        return cls(model, tokenizer, name=name, batch_size=batch_size)

    @property
    def device(self):
        return self.model.device

    def render(self, prompt: Prompt) -> str:
        """The exact text fed to the model (chat template applied to message lists)."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def _encode(self, prompt: Prompt) -> list[int]:
        # The chat template already carries its special tokens; raw prompts get the tokenizer's defaults.
        return self.tokenizer(self.render(prompt), add_special_tokens=isinstance(prompt, str))["input_ids"]

    def _batches(self, n: int, lengths: list[int]):
        # Sort by length so each batch pads little; callers get results back in their own order.
        order = sorted(range(n), key=lambda i: lengths[i])
        for start in range(0, n, self.batch_size):
            yield order[start : start + self.batch_size]

    def _pad_left(self, rows: list[list[int]]):
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 48) -> list[str]:
        encoded = [self._encode(p) for p in prompts]
        out: list[str] = [""] * len(encoded)
        for batch in self._batches(len(encoded), [len(e) for e in encoded]):
            with self._lock:
                generated = self._greedy([encoded[i] for i in batch], max_new_tokens)
            for row, i in enumerate(batch):
                out[i] = self.tokenizer.decode(generated[row], skip_special_tokens=True).strip()
        return out

    # -- greedy decoding ------------------------------------------------------------------------------------------
    # Our own loop instead of ``model.generate`` for two savings that matter on CPU (measured in
    # benchmarks/bench_generation.py): the tokens every prompt of a batch starts with (the chat template's system
    # prompt) are run once and their key/value cache is shared, and rows that have finished leave the batch
    # instead of being computed until the longest answer ends. Greedy choices are the same as ``generate``'s.

    def _prefix_cache(self, prefix: list[int]):
        """Key/value tensors of a token prefix, computed once per prefix (the chat system prompt) and reused."""
        key = tuple(prefix)
        cached = self._prefixes.get(key)
        if cached is None:
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=torch.tensor([prefix], device=self.device), past_key_values=cache, use_cache=True)
            cached = [(layer.keys, layer.values) for layer in cache.layers]
            if len(self._prefixes) >= 8:
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[key] = cached
        return cached

    def _greedy(self, rows: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        n = len(rows)
        shared = _common_prefix_length(rows)
        shared = min(shared, min(len(r) for r in rows) - 1)  # every row keeps one token to run
        shared = shared if shared >= 8 else 0  # a short common prefix is not worth a cache of its own
        if shared:
            layers = self._prefix_cache(rows[0][:shared])
            cache = DynamicCache(ddp_cache_data=[(k.expand(n, -1, -1, -1).contiguous(),
                                                  v.expand(n, -1, -1, -1).contiguous()) for k, v in layers],
                                 config=self.model.config)
        else:
            cache = DynamicCache(config=self.model.config)
        ids, suffix_mask = self._pad_left([r[shared:] for r in rows])
        mask = torch.cat([torch.ones(n, shared, dtype=suffix_mask.dtype, device=self.device), suffix_mask], dim=1)
        # Positions count real tokens only, so a padded row sees the same positions as it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions[:, shared:],
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        position = positions[:, -1]
        alive = torch.arange(n, device=self.device)
        eos = torch.tensor(sorted(self.eos_ids), device=self.device)
        out: list[list[int]] = [[] for _ in range(n)]
        for step in range(max_new_tokens):
            token = logits.argmax(-1)
            for row, tok in zip(alive.tolist(), token.tolist()):
                out[row].append(tok)
            if step == max_new_tokens - 1:
                break
            keep = ~torch.isin(token, eos)
            if not keep.all():
                if not keep.any():
                    break
                cache.batch_select_indices(keep.nonzero().squeeze(-1))
                alive, token, mask, position = alive[keep], token[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            position = position + 1
            logits = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None],
                                past_key_values=cache, use_cache=True).logits[:, -1]
        return out

    @torch.no_grad()
    def token_logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[TokenScores]:
        if len(prompts) != len(continuations):
            raise ValueError("prompts and continuations differ in length")
        pairs = []
        for prompt, cont in zip(prompts, continuations):
            cont_ids = self.tokenizer(cont, add_special_tokens=False)["input_ids"]
            pairs.append((self._encode(prompt), cont_ids))
        out: list[TokenScores] = [None] * len(pairs)  # type: ignore[list-item]
        for batch in self._batches(len(pairs), [len(p) + len(c) for p, c in pairs]):
            ids, mask = self._pad_left([pairs[i][0] + pairs[i][1] for i in batch])
            # Left padding puts every continuation at the end: only the last positions need the vocabulary
            # projection (a fifth of the model's compute per position) and the log-softmax.
            keep = min(max(len(pairs[i][1]) for i in batch) + 1, ids.shape[1])
            positions_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            with self._lock:
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions_ids,
                                    logits_to_keep=keep).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            width = keep
            for row, i in enumerate(batch):
                cont = pairs[i][1]
                # Token t at position p is predicted by the logits at p-1.
                positions = range(width - len(cont) - 1, width - 1)
                lps = [logp[row, p, tok].item() for p, tok in zip(positions, cont)]
                argmax = [int(logp[row, p].argmax()) for p in positions]
                greedy = [a == tok for a, tok in zip(argmax, cont)]
                tokens = [self.tokenizer.decode([t]) for t in cont]
                out[i] = TokenScores(tokens=tokens, logprobs=lps, greedy=greedy, argmax=argmax)
        return out

    @torch.no_grad()
    def choose(self, prompts: Sequence[Prompt], options: Sequence[Sequence[str]]) -> list[int]:
        """Greedy decoding restricted to a trie of the options (what vLLM's structured "choice" output does)."""
        if len(prompts) != len(options):
            raise ValueError("prompts and options differ in length")
        results = []
        for prompt, opts in zip(prompts, options):
            if not opts:
                raise ValueError("choose() needs at least one option")
            base = self._encode(prompt)
            opt_ids = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in opts]
            prefix: list[int] = []
            while True:
                alive = [j for j, ids in enumerate(opt_ids) if ids[: len(prefix)] == prefix]
                complete = [j for j in alive if len(opt_ids[j]) == len(prefix)]
                nexts = {opt_ids[j][len(prefix)] for j in alive if len(opt_ids[j]) > len(prefix)}
                if not nexts:
                    results.append(complete[0])
                    break
                allowed = sorted(nexts | (self.eos_ids if complete else set()))
                with self._lock:
                    logits = self.model(input_ids=torch.tensor([base + prefix], device=self.device)).logits[0, -1]
                best = allowed[int(torch.argmax(logits[allowed]))]
                if best in self.eos_ids:
                    results.append(complete[0])
                    break
                prefix.append(best)
        return results

    def close(self) -> None:
        pass


def _common_prefix_length(rows: list[list[int]]) -> int:
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < length and row[i] == first[i]:
            i += 1
        length = i
    return length
