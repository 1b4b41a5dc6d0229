"""General-ability retention: does a method keep the model generally capable as updates accumulate?

A stream of updates (CounterFact train records by default) is applied cumulatively; after N = 10, 100, 1000
of them every method is scored on the general benchmarks (``general.py``): ARC-Easy, HellaSwag, PIQA,
WinoGrande, WikiText-2 perplexity and known facts. N = 0 is the unmodified model, scored once as ``base``.
This is the measurement of "Should We Really Edit Language Models?" (score against N per method).

Run directory: ``records/<method>.jsonl`` (one row per (N, benchmark) score, per applied stage, per session;
tagged with a hash of everything that determines the results, so a re-run resumes), ``cache/llm.jsonl`` (the
unmodified model's scores, shared by the methods that leave the weights alone: SCR's out-of-scope items cost
nothing), ``report.json``, ``report.md``, ``retention.png``. A resumed editing method re-applies the updates
up to the first stage it still has to score (the edited weights are not saved between sessions).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scr.config import Settings
from scr.evaluation import general
from scr.evaluation.config import EvalConfigError, split_names, validated
from scr.evaluation.data import file_digest, load_cases, resolve_data
from scr.evaluation.jsonl_log import append_session, reported_command
from scr.evaluation.methods import Method, Query, counted_apply_seconds, make_method, method_names_valid
from scr.evaluation.runner import PeakMemory, Records, _hash, memo_backend, method_slug

# Every benchmark here is scored by log-likelihood on raw text (lm-evaluation-harness style), so a codebook method
# keys raw prompts.
RENDERING = "raw"

Log = Callable[[str], None]


class RetentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    updates: str = Field("counterfact/counterfact_train.json", description="the stream of updates")
    updates_format: Literal["knowedit", "counterfact", "jsonl"] | None = None
    data_dir: str | None = None
    methods: list[str] = Field(default_factory=lambda: ["base", "scr"])
    n: list[int] = Field(default_factory=lambda: [0, 10, 100, 1000], description="updates applied (cumulative)")
    stream: int = Field(1000, ge=1, description="length of the update stream: the known facts it rewrites are left "
                                                "out, so runs with different N lists share their records")
    benchmarks: list[str] = Field(default_factory=lambda: list(general.DEFAULT_BENCHMARKS))
    items: int = Field(200, ge=0, description="items sampled per benchmark (0 = all)")
    ppl_tokens: int = Field(20480, ge=64)
    ppl_window: int = Field(512, ge=16)
    ppl_context: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1, description="sequences per forward pass (full-vocabulary logits: keep small)")
    gen_tokens: int = Field(256, ge=1, description="generation benchmarks (GSM8K): new tokens per answer")
    edit_batch_size: int | None = Field(10, ge=1, description="editing methods: edits per apply() call")
    editing: dict[str, Any] = Field(default_factory=dict)
    seed: int = 1234
    out: str = "evals/results/retention"
    title: str | None = None

    @field_validator("methods", "benchmarks", mode="before")
    @classmethod
    def _split(cls, value):
        return split_names(value)

    @field_validator("n", mode="before")
    @classmethod
    def _split_n(cls, value):
        if isinstance(value, (str, int)):
            value = str(value).split(",")
        out = []
        for v in value:
            try:
                number = int(str(v).strip())
            except ValueError:
                raise ValueError(f"N must be a whole number >= 0, got {v!r}") from None
            if number < 0:
                raise ValueError(f"N must be a whole number >= 0, got {v!r}")
            out.append(number)
        return sorted(set(out)) or [0]

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value):
        known = general.DEFAULT_BENCHMARKS + general.EXTRA_BENCHMARKS
        for name in value:
            if name not in known:
                raise ValueError(f"unknown benchmark {name!r} ({', '.join(known)})")
        return value


def make_retention_config(**fields) -> RetentionConfig:
    return validated(RetentionConfig, "retention", fields)


class RetentionRunner:
    def __init__(self, config: RetentionConfig, settings: Settings | None = None, command: str | None = None,
                 log: Log | None = None, backend=None, embedder=None, progress: bool = False):
        from scr.models import set_offline_env

        set_offline_env()
        method_names_valid(config.methods)
        self.config = config
        self.settings = (settings or Settings()).model_copy(update={"batch_size": config.batch_size})
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.progress = progress
        self._backend = backend
        self._embedder = embedder
        self.out = Path(config.out)

    # -- set-up -------------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        c, s = self.config, self.settings
        self.updates_path = resolve_data(c.updates, c.data_dir)
        if max(c.n) > c.stream:
            raise EvalConfigError(f"N goes up to {max(c.n)}, beyond the stream of {c.stream} updates (set stream)")
        self.cases = load_cases(self.updates_path, c.updates_format, c.stream)
        if len(self.cases) < max(c.n):
            raise EvalConfigError(f"{self.updates_path} holds {len(self.cases)} updates; N goes up to {max(c.n)}")
        self.memo = memo_backend(s, self.out, self.log, self._backend)
        self._benchmarks: dict[str, general.Benchmark] = {}

    def embedder(self):
        if self._embedder is None:
            from scr.kb.embed import Embedder

            self._embedder = Embedder(self.settings.embedder, device=self.settings.device)
        return self._embedder

    def benchmark(self, name: str) -> general.Benchmark:
        if name not in self._benchmarks:
            c = self.config
            # Known facts the stream rewrites are expected to change: leave them out of the damage measure.
            rewritten = {(case.subject or "").strip().lower() for case in self.cases}
            tokenizer = self.memo.backend.tokenizer if name == "wikitext2" else None
            self._benchmarks[name] = general.load_benchmark(
                name, c.data_dir, c.items, c.seed, tokenizer=tokenizer, exclude_subjects=rewritten,
                ppl_tokens=c.ppl_tokens, ppl_window=c.ppl_window, ppl_context=c.ppl_context)
        return self._benchmarks[name]

    def stages(self, method_name: str) -> list[int]:
        """``base`` is the unmodified model (N = 0 only); every other method is scored after N > 0 updates."""
        ns = self.config.n
        return [0] if method_name == "base" else [n for n in ns if n > 0]

    def _hash(self, method: Method) -> str:
        c, s = self.config, self.settings
        return _hash({"updates": file_digest(self.updates_path), "items": c.items, "seed": c.seed,
                      "ppl": [c.ppl_tokens, c.ppl_window, c.ppl_context],
                      "stream": c.stream, "llm": s.llm, "backend": s.backend,
                      "dtype": s.dtype, "method": method.info(), "version": 1})

    # -- run ----------------------------------------------------------------------------------------------------
    def run(self, report_only: bool = False) -> dict:
        from scr.evaluation.retention_report import write_report

        self._setup()
        if not report_only:
            started = time.time()
            (self.out / "records").mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(
                {"retention": self.config.model_dump(), "settings": json.loads(self.settings.model_dump_json()),
                 "command": self.command}, indent=2))
            for name in self.config.methods:
                method = make_method(name, self.settings, self.memo, self.embedder, workdir=self.out / "tmp",
                                     edit_batch_size=self.config.edit_batch_size, editing=self.config.editing,
                                     log=self.log, prompt_format=RENDERING, journal_dir=self.out / "journal")
                try:
                    self._run_method(method)
                finally:
                    method.close()
                write_report(self)
            append_session(self.out, time.time() - started, self.command)
        else:
            self.command = reported_command(self.out, self.command, self.settings)
        report = write_report(self)
        self.memo.close()
        return report

    def records(self, name: str) -> Records:
        return Records(self.out / "records" / f"{method_slug(name)}.jsonl")

    def _run_method(self, method: Method) -> None:
        records = self.records(method.name)
        h = self._hash(method)
        applied = 0
        method.reset()
        for n in self.stages(method.name):
            done = {r["benchmark"] for r in records.select(h, "score", n)
                    if r.get("generation") == self._generation(r["benchmark"])}
            todo = [b for b in self.config.benchmarks if b not in done]
            if not todo:
                self.log(f"{method.name} N={n}: done")
                continue
            with PeakMemory() as mem:
                if n > applied:
                    t0 = time.perf_counter()
                    details = method.apply(self.cases[applied:n])
                    # The edits an earlier session made count at what they cost then, not at their reloading.
                    seconds = counted_apply_seconds(time.perf_counter() - t0, details)
                    records.add([{"type": "apply", "h": h, "n": n, "from": applied, "seconds": round(seconds, 3),
                                  "details": details}])
                    self.log(f"{method.name}: updates {applied + 1}-{n} applied in {seconds:.1f} s")
                    applied = n
                for name in todo:
                    bench = self.benchmark(name)
                    t0 = time.perf_counter()
                    result = general.score_benchmark(bench, self._score_fn(method), batch=256,
                                                     progress=self._progress(method.name, n, name),
                                                     answer=self._answer_fn(method))
                    seconds = time.perf_counter() - t0
                    generation = self._generation(name)
                    records.add([{"type": "score", "h": h, "n": n, "benchmark": name, "seconds": round(seconds, 2),
                                  "source": bench.source, "note": bench.note, "metrics": result["metrics"],
                                  "items": result["items"], **({"generation": generation} if generation else {})}])
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items())
                    self.log(f"{method.name} N={n} {name}: {shown} ({seconds:.0f} s)")
            records.add([{"type": "mem", "h": h, "n": n, "peak_rss_mb": mem.peak_mb}])

    def _generation(self, benchmark: str) -> dict | None:
        """What a generation benchmark's score depends on beyond the method's hash (kept beside its records, so
        the hash of the benchmarks scored by log-likelihood stays as it was)."""
        return {"gen_tokens": self.config.gen_tokens} if benchmark in general.GENERATION_BENCHMARKS else None

    def _answer_fn(self, method: Method):
        def answer(contexts):
            return method.answer([Query(p, None) for p in general.as_probes(contexts)], self.config.gen_tokens)

        return answer

    @staticmethod
    def _score_fn(method: Method):
        def score(contexts, continuations):
            return method.score([Query(p, None) for p in general.as_probes(contexts)], continuations)

        return score

    def _progress(self, method: str, n: int, bench: str):
        if not self.progress:
            return None
        return lambda done, total: self.log(f"  {method} N={n} {bench}: {done}/{total} sequences")
