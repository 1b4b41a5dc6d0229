"""In-process transformers backend: batched, left-padded greedy generation on CPU or GPU."""

from __future__ import annotations

import math
import threading
from typing import Sequence

import torch

from transformers import DynamicCache

from scr.llm.base import Prompt, TokenScores, answer_prefix
from scr.llm.prefix import common_prefix_length, group_prefix_lengths, sorted_order
from scr.models import load_causal_lm

GROUP_BATCH = 32  # group prefixes per forward pass: enough rows for efficient products, little padding


class TransformersBackend:
    group_prefixes = True  # run a prefix shared by a group of prompts once (off: only to measure what it saves)

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
        self._prefixes_state = self._model_state()

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
        prefix = answer_prefix(prompt)
        if prefix:  # the answer's start is given: the model continues it (what vLLM's continue_final_message does)
            return self.tokenizer.apply_chat_template(prompt[:-1], tokenize=False, add_generation_prompt=True) + prefix
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
        order = sorted_order(encoded)  # a group's rows are adjacent
        grouped = group_prefix_lengths(encoded, order) if self.group_prefixes else [0] * len(encoded)
        for window in self._windows(encoded, grouped, order):
            with self._lock:
                generated = self._generate_window([encoded[i] for i in window], [grouped[i] for i in window],
                                                  max_new_tokens)
            for i, tokens in zip(window, generated):
                out[i] = (answer_prefix(prompts[i]) + self.tokenizer.decode(tokens, skip_special_tokens=True)).strip()
        return out

    # -- greedy decoding ------------------------------------------------------------------------------------------
    # Our own loop instead of ``model.generate`` for savings that matter on CPU (measured in
    # benchmarks/bench_generation.py):
    # - the tokens every prompt starts with (the chat template's system prompt) run once, their key/value cache
    #   shared by every row;
    # - the tokens a group of prompts starts with (the same fact in context, see scr/llm/prefix.py) run once per
    #   group, and each row of the group starts from a copy of that cache;
    # - rows that have finished leave the batch instead of being computed until the longest answer ends.
    # Greedy choices are the same as ``generate``'s up to float rounding (a near-tie can tip either way when a
    # prefix is computed in a different batch, as with any change of batch).

    def _windows(self, encoded: list[list[int]], grouped: list[int], order: list[int]):
        """The request (``order``: sorted, so a group's rows are adjacent) in windows of up to eight batches, each
        holding whole groups (group caches live for one window, which bounds their memory); windows are of even
        size, so none ends in a small batch."""
        size = math.ceil(len(order) / max(1, math.ceil(len(order) / (8 * self.batch_size))))
        window: list[int] = []
        for i in order:
            same_group = window and grouped[i] and encoded[i][: grouped[i]] == encoded[window[-1]][: grouped[i]]
            if len(window) >= size and not same_group:
                yield window
                window = []
            window.append(i)
        if window:
            yield window

    def _model_state(self) -> tuple[int, int]:
        """Changes when the model does: in-place writes to any weight (an edit, its undo) bump the tensors' version
        counters; attaching or removing a forward hook (a codebook adapter) changes the hook count."""
        versions = sum(p._version for p in self.model.parameters())
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in self.model.modules())
        return versions, hooks

    def clear_prefix_cache(self) -> None:
        """Forget cached prefix keys/values. Call after changing the model in a way ``_model_state`` cannot see
        (new entries in an attached codebook); weight edits are noticed by themselves."""
        self._prefixes.clear()
        self._prefixes_state = self._model_state()

    def _prefix_cache(self, prefix: list[int]):
        """Key/value tensors of a token prefix, computed once per prefix (the chat system prompt) and reused
        while the model stays the same (an edited model must not reuse keys/values of the model before)."""
        state = self._model_state()
        if state != self._prefixes_state:
            self._prefixes.clear()
            self._prefixes_state = state
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

    def _group_caches(self, common: list, shared: int, groups: list[tuple[int, ...]]) -> dict:
        """Per group prefix (the tokens after the common prefix), its key/value tensors per layer."""
        caches = {}
        # Small batches of similar length: group prefixes vary in length (the facts do), and padding costs as much
        # as the tokens themselves.
        groups = sorted(groups, key=len)
        for start in range(0, len(groups), GROUP_BATCH):
            chunk = groups[start : start + GROUP_BATCH]
            cache = _cache_from(common, len(chunk), self.model.config)
            ids, pad = self._pad_left([list(g) for g in chunk])
            mask = torch.cat([torch.ones(len(chunk), shared, dtype=pad.dtype, device=self.device), pad], dim=1)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            self.model(input_ids=ids, attention_mask=mask, position_ids=positions[:, shared:],
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
            width = ids.shape[1]
            for row, group in enumerate(chunk):
                span = slice(shared + width - len(group), shared + width)
                caches[group] = [(layer.keys[row, :, span], layer.values[row, :, span]) for layer in cache.layers]
        return caches

    def _generate_window(self, rows: list[list[int]], grouped: list[int], max_new_tokens: int) -> list[list[int]]:
        shared = min(common_prefix_length(rows), min(len(r) for r in rows) - 1)  # every row keeps a token to run
        shared = shared if shared >= 8 else 0  # a short common prefix is not worth a cache of its own
        common = self._prefix_cache(rows[0][:shared]) if shared else []
        heads = [tuple(r[shared:g]) for r, g in zip(rows, grouped)]  # () for a row in no group
        groups = self._group_caches(common, shared, sorted({h for h in heads if h}))
        out: list[list[int]] = [[] for _ in rows]
        # Batches by the length of what each row runs itself, so they pad little.
        for batch in self._batches(len(rows), [len(r) - shared - len(h) for r, h in zip(rows, heads)]):
            cache, mask = self._head_cache(common, shared, [groups.get(heads[i]) for i in batch])
            tails = [rows[i][shared + len(heads[i]):] for i in batch]
            for i, tokens in zip(batch, self._greedy(tails, cache, mask, max_new_tokens)):
                out[i] = tokens
        return out

    def _head_cache(self, common: list, shared: int, heads: list):
        """One batch's cache before its rows' own tokens: the common prefix, then each row's group prefix
        (left-padded to the longest; ``None`` for a row in no group). Returns the cache and its attention mask."""
        n = len(heads)
        width = max((layers[0][0].shape[1] for layers in heads if layers), default=0)
        mask = torch.zeros(n, shared + width, dtype=torch.long, device=self.device)
        mask[:, :shared] = 1
        if not width:
            return _cache_from(common, n, self.model.config), mask
        data = []
        first = next(layers for layers in heads if layers)
        for layer in range(self.model.config.num_hidden_layers):
            template = first[layer][0]
            keys = template.new_zeros(n, template.shape[0], shared + width, template.shape[2])
            values = torch.zeros_like(keys)
            if shared:
                keys[:, :, :shared], values[:, :, :shared] = common[layer][0], common[layer][1]
            for row, layers in enumerate(heads):
                if layers:
                    k, v = layers[layer]
                    keys[row, :, shared + width - k.shape[1]:] = k
                    values[row, :, shared + width - v.shape[1]:] = v
            data.append((keys, values))
        for row, layers in enumerate(heads):
            if layers:
                mask[row, shared + width - layers[0][0].shape[1]:] = 1
        return DynamicCache(ddp_cache_data=data, config=self.model.config), mask

    def _greedy(self, rows: list[list[int]], cache: DynamicCache, head_mask, max_new_tokens: int) -> list[list[int]]:
        """Greedy answers of ``rows`` (each row's tokens after its cached head)."""
        n = len(rows)
        ids, own_mask = self._pad_left(rows)
        mask = torch.cat([head_mask, own_mask], dim=1)
        # Positions count real tokens only, so a padded row sees the same positions as it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions[:, -ids.shape[1]:],
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        position = positions[:, -1]
        mask = _drop_padding(cache, mask)
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


def _cache_from(layers: list, rows: int, config) -> DynamicCache:
    """A cache of ``rows`` rows that all start with the same cached prefix (``layers``; empty: no prefix)."""
    if not layers:
        return DynamicCache(config=config)
    return DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1).contiguous(),
                                         v.expand(rows, -1, -1, -1).contiguous()) for k, v in layers],
                        config=config)


def _drop_padding(cache: DynamicCache, mask: torch.Tensor) -> torch.Tensor:
    """Move each row's cached tokens to the right and cut the columns that are padding in every row.

    Rows padded in two places (before the group prefix and before their own tokens) would otherwise carry the
    padding through every decoding step. Keys already hold their rotary positions, and attention does not
    depend on where in the cache a key sits, so the answers do not change (beyond float rounding). Returns the
    new attention mask."""
    length = int(mask.sum(-1).max())
    if length == mask.shape[1]:
        return mask
    keep = torch.argsort(mask, dim=1, stable=True)[:, -length:]  # padding first, then the tokens in order
    for layer in cache.layers:
        index = keep[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.keys, layer.values = layer.keys.gather(2, index), layer.values.gather(2, index)
    return mask.gather(1, keep)
