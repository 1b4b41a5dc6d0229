"""Run an evaluation: every method on the same cases, probes, metrics and protocol; resumable.

Protocols. ``sequential`` with group size N: the cases are split into consecutive groups of N; for each group
the method is reset, the N updates are applied together, then every probe of those N cases is answered.
``single`` is the same with N = 1 (each case alone, state reset between cases).

Run directory:
  config.json            the configuration of the latest invocation
  records/<method>.jsonl one line per evaluated case (every probe, answer and score) and per timed step,
                         each tagged with a hash of everything that determines the results, so a re-run
                         skips what is done and continues an interrupted group where it stopped
  cache/llm.jsonl        memoised answers of the unmodified model (see memo.py); not needed for the report
  report.json, report.md, *.png
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from scr.config import Settings
from scr.evaluation.config import EvalConfig
from scr.evaluation.data import Case, count_records, file_digest, load_cases, resolve_data
from scr.evaluation.methods import Method, Query, make_method
from scr.evaluation.jsonl_log import append_rows, append_session, read_rows, reported_command
from scr.evaluation.memo import MemoBackend
from scr.evaluation.metrics import contains, exact_match, token_accuracy, token_agreement
from scr.pipeline import base_prompt

Log = Callable[[str], None]


# ----- resources ------------------------------------------------------------------------------------------------
class PeakMemory:
    """Peak resident memory of this process while a block runs (Linux: VmHWM reset via clear_refs)."""

    def __enter__(self):
        self._reset = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._reset = True
        except OSError:
            pass
        self._stop = threading.Event()
        self.peak_kb = 0
        if not self._reset:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    @staticmethod
    def _status(field_name: str) -> int:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(field_name + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _poll(self):
        while not self._stop.wait(0.5):
            self.peak_kb = max(self.peak_kb, self._status("VmRSS"))

    def __exit__(self, *exc):
        self._stop.set()
        if self._reset:
            self.peak_kb = self._status("VmHWM")
        if not self.peak_kb:
            self.peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return False

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


# ----- records -----------------------------------------------------------------------------------------------------
class Records:
    """The append-only JSONL file of one method."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = read_rows(path)

    def add(self, rows: list[dict]) -> None:
        append_rows(self.path, rows, sync=True)
        self.rows.extend(rows)

    def select(self, config_hash: str, type_: str, n: int | None = None) -> list[dict]:
        return [r for r in self.rows if r.get("h") == config_hash and r.get("type") == type_
                and (n is None or r.get("n") == n)]


def memo_backend(settings: Settings, out: Path, log: Log, backend=None) -> MemoBackend:
    """The unmodified model behind a memo in ``out/cache`` (``backend``, or the settings' one loaded on first use)."""
    def factory():
        if backend is not None:
            return backend
        from scr.llm import make_backend

        log(f"loading {settings.llm} ({settings.backend}, {settings.dtype})")
        return make_backend(settings)

    namespace = f"{settings.backend}|{settings.llm}|{settings.dtype}|{settings.vllm_model or ''}"
    return MemoBackend(factory, namespace, out / "cache" / "llm.jsonl")


def seed_base_answers(memo: MemoBackend, probes: list[dict], max_new_tokens: int, source: Path, log: Log) -> None:
    """Put the answers of base-method probe records (``prompt``, ``answer``) into the memo, as the unmodified
    model's answers to those questions asked plainly (``base_prompt``)."""
    probes = [p for p in probes if isinstance(p.get("answer"), str)]
    new = memo.seed_generations([base_prompt(p["prompt"]) for p in probes], [p["answer"] for p in probes],
                                max_new_tokens)
    if new:
        log(f"memo: {new} answers of the unmodified model from {source}")


def group_size(n: int, group: int, n_cases: int) -> int:
    """Cases in group ``group`` when ``n_cases`` cases are split into groups of ``n``."""
    return min(n, n_cases - group * n)


def in_grouping(row: dict, n: int, ctx: RunContext) -> bool:
    """Whether a record (a case, or a group's timing) was produced in the group it would have in this run.
    Rows without ``group_cases`` predate --limit sharing and come from full runs."""
    if row["group"] * n >= len(ctx.cases):
        return False
    size = row.get("group_cases", group_size(n, row["group"], ctx.total_cases))
    return size == group_size(n, row["group"], len(ctx.cases))


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def method_slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def reported_methods(records_dir: Path, configured: list[str], valid: Callable[[str], object]) -> list[str]:
    """The methods a report covers: the configured ones, then every other method with records in the folder.

    A run restricted with ``--methods`` (say, the one method still to finish) must not drop the rows the other
    methods already wrote from the rebuilt report. Record files are named by method; names that are not valid
    methods (``_sessions``, stray files) are skipped."""
    names = list(configured)
    slugs = {method_slug(n) for n in names}
    found = sorted(path.stem for path in records_dir.glob("*.jsonl")) if records_dir.is_dir() else []
    for name in found:
        if name.startswith("_") or name in slugs:
            continue
        try:
            valid(name)
        except ValueError:
            continue
        names.append(name)
    return names


@dataclass
class RunContext:
    config: EvalConfig
    settings: Settings
    out: Path
    data_path: Path
    data_sha256: str
    cases: list[Case]
    total_cases: int  # records in the file; more than len(cases) under --limit
    memo: MemoBackend
    command: str
    log: Log
    _embedder: object = None
    extra: dict = field(default_factory=dict)

    def embedder(self):
        if self._embedder is None:
            from scr.kb.embed import Embedder

            self._embedder = Embedder(self.settings.embedder, device=self.settings.device)
        return self._embedder


# ----- the evaluator ---------------------------------------------------------------------------------------------
class Evaluator:
    def __init__(self, config: EvalConfig, settings: Settings | None = None, command: str | None = None,
                 log: Log | None = None, backend=None, embedder=None, progress: bool | None = None):
        from scr.models import set_offline_env

        set_offline_env()
        self.config = config
        settings = settings or Settings()
        # Answers in evaluation are short (the targets are entities); the same length for every method.
        self.settings = settings.model_copy(update={"max_new_tokens": config.max_new_tokens,
                                                    "batch_size": config.batch_size})
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._backend = backend
        self._embedder = embedder
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.judge = None
        self.report_every_s = 600.0
        self._last_report = time.monotonic()
        if config.judge_url:
            from scr.evaluation.judge import Judge

            self.judge = Judge(config.judge_url, config.judge_model, os.environ.get(config.judge_api_key_env))

    # -- setup --------------------------------------------------------------------------------------------------
    def _context(self) -> RunContext:
        c = self.config
        data_path = resolve_data(c.data, c.data_dir)
        cases = load_cases(data_path, c.format, c.limit)
        total = len(cases) if c.limit is None else count_records(data_path, c.format)
        out = Path(c.out)
        out.mkdir(parents=True, exist_ok=True)
        memo = memo_backend(self.settings, out, self.log, self._backend)
        ctx = RunContext(c, self.settings, out, data_path, file_digest(data_path), cases, total, memo, self.command,
                         self.log)
        ctx._embedder = self._embedder
        self._seed_memo(ctx)
        return ctx

    def _seed_memo(self, ctx: RunContext) -> None:
        """The unmodified model's answers recorded by this run's ``base`` method, or by another run's (``base_from``;
        same hash: same data, model and generation settings), go into the memo, so that they are not generated
        again (a fresh checkout; a suite that measures one more configuration of the same cases)."""
        if self.config.mode != "generation":
            return
        h = self._config_hash(ctx, self._make_method("base", ctx))
        folders = [ctx.out] + ([Path(self.config.base_from)] if self.config.base_from else [])
        for folder in folders:
            path = folder / "records" / f"{method_slug('base')}.jsonl"
            if path.exists():
                seed_base_answers(ctx.memo, [p for r in Records(path).select(h, "case") for p in r["probes"]],
                                  self.config.max_new_tokens, path, self.log)

    def _make_method(self, name: str, ctx: RunContext) -> Method:
        return make_method(name, self.settings, ctx.memo, ctx.embedder, workdir=ctx.out / "tmp",
                           edit_batch_size=self.config.edit_batch_size, editing=self.config.editing,
                           log=self.log, prompt_format="chat" if self.config.mode == "generation" else "raw",
                           journal_dir=ctx.out / "journal")

    def _config_hash(self, ctx: RunContext, method: Method) -> str:
        # The hash of the run over the whole file, --limit or not: a case's result depends on its group of N
        # (cases index // N), not on how many cases run, so a --limit run and a full run share their records.
        # The one difference, a last group cut short by --limit, is told apart by each row's group size
        # (``in_grouping``). (Records written before this rule, always by full runs, hash the same.)
        c, s = self.config, self.settings
        return _hash({"data": ctx.data_sha256, "format": c.format, "limit": None, "n_cases": ctx.total_cases,
                      "protocol": c.protocol, "mode": c.mode, "max_new_tokens": c.max_new_tokens,
                      "llm": s.llm, "backend": s.backend, "dtype": s.dtype, "method": method.info(),
                      "judge": c.judge_model if c.judge_url else None, "version": 1})

    # -- run ----------------------------------------------------------------------------------------------------
    def run(self, report_only: bool = False) -> dict:
        """Evaluate what is not done yet, then write the reports; ``report_only``: just rebuild the reports
        from the records (safe beside a run in progress on the same directory)."""
        from scr.evaluation.report import write_reports

        if report_only:
            ctx = self._context()
            ctx.command = reported_command(ctx.out, ctx.command, self.settings)
            return write_reports(ctx, self)
        started = time.time()
        random.seed(self.config.seed)
        try:
            import numpy as np
            import torch

            np.random.seed(self.config.seed)
            torch.manual_seed(self.config.seed)
        except ImportError:
            pass
        ctx = self._context()
        (ctx.out / "config.json").write_text(json.dumps(
            {"eval": self.config.model_dump(), "settings": json.loads(self.settings.model_dump_json()),
             "command": self.command}, indent=2))
        self.log(f"{len(ctx.cases)} cases from {ctx.data_path}; methods {', '.join(self.config.methods)}; "
                 f"protocol {self.config.protocol}, N {self.config.sizes(len(ctx.cases))}, {self.config.mode}")
        done_methods = []
        for name in self.config.methods:
            method = self._make_method(name, ctx)
            try:
                self._run_method(ctx, method)
            finally:
                method.close()
            done_methods.append(name)
            self._write_reports(ctx)
        session = time.time() - started
        self._append_session(ctx, session)
        report = write_reports(ctx, self)
        ctx.memo.close()
        return report

    def _write_reports(self, ctx: RunContext) -> dict:
        from scr.evaluation.report import write_reports

        self._last_report = time.monotonic()
        return write_reports(ctx, self)

    def _append_session(self, ctx: RunContext, seconds: float) -> None:
        append_session(ctx.out, seconds, self.command, loaded_model=ctx.memo.loaded)

    def _run_method(self, ctx: RunContext, method: Method) -> None:
        records = Records(ctx.out / "records" / f"{method_slug(method.name)}.jsonl")
        h = self._config_hash(ctx, method)
        cases = ctx.cases
        for n in self.config.sizes(len(cases)):
            done = {r["case_id"] for r in records.select(h, "case", n) if in_grouping(r, n, ctx)}
            todo_groups = []
            for g, start in enumerate(range(0, len(cases), n)):
                group = cases[start : start + n]
                if any(c.case_id not in done for c in group):
                    todo_groups.append((g, group))
            if not todo_groups:
                self.log(f"{method.name} N={n}: done ({len(done)} cases), nothing to run")
                continue
            left = sum(c.case_id not in done for _, g in todo_groups for c in g)
            self.log(f"{method.name} N={n}: {len(done)} cases done, {left} to go in {len(todo_groups)} group(s)")
            with PeakMemory() as mem:
                self._run_groups(ctx, method, records, h, n, todo_groups, done)
            records.add([{"type": "mem", "h": h, "n": n, "peak_rss_mb": mem.peak_mb}])

    def _run_groups(self, ctx, method, records, h, n, groups, done) -> None:
        total = sum(len(g) for _, g in groups)
        finished = total - sum(c.case_id not in done for _, g in groups for c in g)  # done in earlier sessions
        bar = _Bar(f"{method.name} N={n}", total, self.progress)
        try:
            for g, group in groups:
                t0, c0 = time.perf_counter(), time.process_time()
                method.reset()
                details = method.apply(group)
                apply_s = time.perf_counter() - t0
                records.add([{"type": "time", "h": h, "n": n, "group": g, "phase": "apply",
                              "seconds": round(apply_s, 3), "cpu_s": round(time.process_time() - c0, 3),
                              "cases": len(group), "group_cases": len(group), "details": details}])
                remaining = [c for c in group if c.case_id not in done]
                size = self.config.chunk_cases
                for start in range(0, len(remaining), size):
                    chunk = remaining[start : start + size]
                    hits, misses = ctx.memo.hits, ctx.memo.misses
                    t1, c1 = time.perf_counter(), time.process_time()
                    rows = self._evaluate_chunk(ctx, method, chunk)
                    seconds, cpu_s = time.perf_counter() - t1, time.process_time() - c1
                    n_probes = sum(len(r["probes"]) for r in rows)
                    for r in rows:
                        r.update({"h": h, "n": n, "group": g, "group_cases": len(group)})
                    rows.append({"type": "time", "h": h, "n": n, "group": g, "group_cases": len(group),
                                 "phase": "answer",
                                 "seconds": round(seconds, 3), "cpu_s": round(cpu_s, 3), "cases": len(chunk),
                                 "probes": n_probes,
                                 "memo_hits": ctx.memo.hits - hits, "memo_misses": ctx.memo.misses - misses})
                    records.add(rows)
                    done.update(c.case_id for c in chunk)
                    finished += len(chunk)
                    bar.update(finished)
                    if time.monotonic() - self._last_report > self.report_every_s:
                        self._write_reports(ctx)  # long runs: partial reports (marked partial) as they go
                    if not bar.visible:
                        self.log(f"  {method.name} N={n}: {finished}/{total} cases "
                                 f"({n_probes} probes in {seconds:.1f} s)")
            method.reset()
        finally:
            bar.close()

    # -- one chunk ------------------------------------------------------------------------------------------------
    def _evaluate_chunk(self, ctx: RunContext, method: Method, chunk: list[Case]) -> list[dict]:
        queries = [Query(p, c) for c in chunk for p in c.probes]
        mnt = self.config.max_new_tokens
        loc = [i for i, q in enumerate(queries) if not q.probe.in_scope]
        rows: list[dict] = []
        probe_rows: list[dict] = []
        if self.config.mode == "generation":
            # The unmodified model's answers first: later identical requests of SCR and the oracle reuse them.
            refs = ctx.memo.generate([base_prompt(queries[i].probe.prompt) for i in loc], mnt)
            ref_of = dict(zip(loc, refs))
            responses = method.answer(queries, mnt)
            for i, (q, r) in enumerate(zip(queries, responses)):
                p = q.probe
                row = {"kind": p.kind, "sub": p.sub, "prompt": p.prompt, "answer": r.answer}
                if p.in_scope:
                    row["score"] = float(contains(r.answer, p.aliases))
                    row["exact"] = float(exact_match(r.answer, p.aliases))
                    row["targets"] = p.aliases[:10]
                else:
                    row["reference"] = ref_of[i]
                    row["score"] = float(r.answer.strip() == ref_of[i].strip())
                    if p.aliases:
                        row["gt_contains"] = float(contains(r.answer, p.aliases))
                probe_rows.append(self._decision(row, q, r))
            if self.judge is not None:
                todo = [(row, q) for row, q in zip(probe_rows, queries) if q.probe.in_scope]
                verdicts = self.judge.judge([(q.probe.prompt, q.probe.aliases, row["answer"]) for row, q in todo])
                for (row, _), (verdict, raw) in zip(todo, verdicts):
                    row["judge"] = None if verdict is None else float(verdict)
                    row["judge_raw"] = raw
        else:
            conts = [" " + q.probe.target for q in queries]
            scored = [i for i, q in enumerate(queries) if q.probe.target]
            loc_scored = [i for i in loc if queries[i].probe.target]
            # The unmodified model's argmax tokens on the same raw prompt + target (EasyEdit's locality).
            ref_scores = ctx.memo.token_logprobs([queries[i].probe.prompt for i in loc_scored],
                                                 [conts[i] for i in loc_scored])
            ref_of = dict(zip(loc_scored, ref_scores))
            scores, responses = method.score([queries[i] for i in scored], [conts[i] for i in scored])
            by_index = {i: (s, r) for i, s, r in zip(scored, scores, responses)}
            for i, q in enumerate(queries):
                p = q.probe
                row = {"kind": p.kind, "sub": p.sub, "prompt": p.prompt, "target": p.target}
                if i not in by_index:  # no answer to score (a locality probe without ground truth)
                    row["score"] = None
                    probe_rows.append(row)
                    continue
                s, r = by_index[i]
                row["tokens"] = len(s.tokens)
                row["score"] = token_accuracy(s) if p.in_scope else token_agreement(s, ref_of[i])
                probe_rows.append(self._decision(row, q, r))
        start = 0
        for c in chunk:
            rows.append({"type": "case", "case_id": c.case_id, "index": c.index,
                         "probes": probe_rows[start : start + len(c.probes)]})
            start += len(c.probes)
        return rows

    @staticmethod
    def _decision(row: dict, q: Query, r) -> dict:
        if r.in_scope is not None:
            row["in_scope"] = bool(r.in_scope)
            if r.fact is not None:
                row["fact"] = r.fact
                row["own_fact"] = r.fact == q.case.fact()["text"]
        return row


class _Bar:
    """A rich progress bar on an interactive terminal; nothing otherwise (the runner logs lines instead)."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.visible = enabled
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self._progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)

    def update(self, done: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
