"""A memoising LLM backend for the evaluator, persisted in the run directory.

Greedy decoding is deterministic: the same prompt to the same unmodified model with the same settings gives
the same answer. The evaluator asks the same questions many times (the unmodified model's reference answers
for locality; SCR's out-of-scope answers, which are by design the unmodified model's; SCR's in-scope answers
with the right fact, which are the context oracle's), so it wraps the shared backend in this memo. Only
methods that leave the model's weights untouched use it. The memo is a JSONL file, so an interrupted run
loses nothing it already generated. Keys hold the model name and dtype, the prompt (text or chat messages),
and the generation length.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from scr.evaluation.jsonl_log import append_rows, read_rows
from scr.llm.base import Prompt, TokenScores


class MemoBackend:
    def __init__(self, factory: Callable[[], object], namespace: str, path: Path | None = None):
        self._factory = factory
        self._backend = None
        self.namespace = namespace
        self.name = f"memo:{namespace}"
        self.path = path
        self.hits = 0
        self.misses = 0
        self._memo: dict[str, object] = {}
        if path is not None:
            self._memo.update((row["k"], row["v"]) for row in read_rows(path))

    @property
    def backend(self):
        """The real backend, loaded on first use (a finished run never loads a model)."""
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def _key(self, *parts) -> str:
        raw = json.dumps([self.namespace, *parts], ensure_ascii=False, sort_keys=True)
        return hashlib.sha1(raw.encode("utf-8")).hexdigest()

    def _store(self, new: dict[str, object]) -> None:
        self._memo.update(new)
        if self.path is not None and new:
            append_rows(self.path, [{"k": k, "v": v} for k, v in new.items()])

    def _run(self, keys: list[str], items: list, compute: Callable[[list], list], decode=lambda v: v) -> list:
        missing: dict[str, object] = {}
        for key, item in zip(keys, items):
            if key not in self._memo and key not in missing:
                missing[key] = item
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            results = compute(list(missing.values()))
            self._store(dict(zip(missing.keys(), results)))
        return [decode(self._memo[k]) for k in keys]

    def seed_generations(self, prompts: Sequence[Prompt], answers: Sequence[str], max_new_tokens: int) -> int:
        """Known answers of this unmodified model (a committed run's ``base`` records), kept in memory beside the
        memo; existing entries win. Returns how many were new. A fresh checkout has no ``cache/``, and without
        this every run there would first regenerate the reference answers the base records already hold."""
        new = 0
        for prompt, answer in zip(prompts, answers):
            key = self._key("gen", prompt, max_new_tokens)
            if key not in self._memo:
                self._memo[key] = answer
                new += 1
        return new

    # LLMBackend protocol ------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 48) -> list[str]:
        keys = [self._key("gen", p, max_new_tokens) for p in prompts]
        return self._run(keys, list(prompts), lambda ps: self.backend.generate(ps, max_new_tokens))

    def token_logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[TokenScores]:
        keys = [self._key("tf", p, c) for p, c in zip(prompts, continuations)]

        def compute(pairs):
            scores = self.backend.token_logprobs([p for p, _ in pairs], [c for _, c in pairs])
            return [asdict(s) for s in scores]

        return self._run(keys, list(zip(prompts, continuations)), compute, lambda v: TokenScores(**v))

    def choose(self, prompts: Sequence[Prompt], options: Sequence[Sequence[str]]) -> list[int]:
        keys = [self._key("choose", p, list(o)) for p, o in zip(prompts, options)]

        def compute(pairs):
            return self.backend.choose([p for p, _ in pairs], [o for _, o in pairs])

        return self._run(keys, list(zip(prompts, options)), compute)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
