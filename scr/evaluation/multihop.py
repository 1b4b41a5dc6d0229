"""Multi-hop evaluation on MQuAKE: does an update propagate to questions that chain several updated facts?

Per method (base, scr / scr-<mode>, context-oracle, any editing method):
  multi-hop    each case asks one 2-4 hop question in several paraphrases; the case is right when ANY
               paraphrase's answer contains the new answer or one of its aliases (case-insensitive substring,
               MQuAKE's protocol). ``*_word`` variants require the alias as a whole word: MQuAKE's aliases include
               two-letter codes ("ar", "de", "NA") that a substring test finds inside unrelated words ("are",
               "founder"), so the substring score overstates every method a little.
  single-hop   each link of the edited chain asked on its own (new_single_hops): the answer contains it.

How the updates are applied:
  scr             ``scr_kb = "dataset"`` (default): ONE knowledge base holding the edits of every case in the
                  file, --limit or not, and every question is answered against all of them; that is how SCR is
                  deployed and it makes retrieval harder than a per-case memory. ``"case"``: a fresh knowledge
                  base with only the case's own edits, per case. Multi-hop questions go through the library's
                  multi-hop mode (scr/multihop.py: decompose, retrieve and answer hop by hop, answer the whole);
                  single-hop questions through the normal pipeline.
  editing methods all of a case's edits applied together on the unmodified model, reset between cases
                  (editing every case of the file into one model is out of reach for these editors on CPU)
  context-oracle  every edit fact of the case in context (the multi-fact answer prompt): how well the model
                  reasons over the right facts when retrieval and decomposition are perfect
  base            the unmodified model

Resumable like ``scr eval``: records/<method>.jsonl holds one line per finished case, tagged with a hash of
everything that decides its answers (not --limit: a case's answers do not depend on how many cases run, so a
larger --limit continues a smaller one).
"""

from __future__ import annotations

import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scr.config import Settings
from scr.evaluation.config import split_names, validated
from scr.evaluation.data import Case, Probe, file_digest, resolve_data
from scr.evaluation.jsonl_log import append_session, reported_command
from scr.evaluation.memo import MemoBackend
from scr.evaluation.methods import Method, Query, kind_of, make_method, method_names_valid
from scr.evaluation.metrics import contains
from scr.evaluation.mquake import MultiHopCase, load_mquake
from scr.evaluation.runner import PeakMemory, Records, _hash, memo_backend, method_slug
from scr.names import names_whole

Log = Callable[[str], None]
DEFAULT_DATA = "multihop/MQuAKE-hard.json"


class MultiHopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(DEFAULT_DATA, description="MQuAKE JSON file (absolute, relative, or in the data dir)")
    data_dir: str | None = None
    methods: list[str] = Field(default_factory=lambda: ["base", "scr"])
    limit: int | None = Field(None, ge=1, description="only the first LIMIT cases are evaluated")
    scr_kb: Literal["dataset", "case"] = Field(
        "dataset", description="SCR's memory: every case's edits in one knowledge base, or each case's alone")
    max_hops: int = Field(4, ge=1, le=8, description="SCR multi-hop: sub-questions per question at most")
    decompose: Literal["walk", "llm", "rules"] = Field(
        "walk", description="SCR multi-hop: stored links first, then the LLM's sub-questions (walk), or who writes "
                            "every sub-question (llm, rules)")
    max_new_tokens: int = Field(24, ge=1, le=512, description="answer length (final and sub-answers)")
    batch_size: int = Field(64, ge=1, description="generation batch size")
    chunk_cases: int = Field(16, ge=1, description="cases answered per batch call (and per saved record line)")
    edit_batch_size: int | None = Field(None, ge=1, description="editing methods: edits per apply() call")
    editing: dict[str, Any] = Field(default_factory=dict, description="overrides passed to make_editor")
    seed: int = 0
    out: str = Field(description="run directory (report.json, report.md, multihop.png, resumable records)")
    title: str | None = None

    @field_validator("methods", mode="before")
    @classmethod
    def _split(cls, value):
        return split_names(value)


def make_multihop_config(**fields) -> MultiHopConfig:
    config = validated(MultiHopConfig, "multi-hop", fields)
    method_names_valid(config.methods)  # before any method runs: a long run must not end on a typo
    return config


# ----- scoring -------------------------------------------------------------------------------------------------------
def mentions(answer: str, aliases) -> bool:
    """MQuAKE's test: any alias is a case-insensitive substring of the answer."""
    return contains(answer, aliases)


def mentions_word(answer: str, aliases) -> bool:
    """Stricter: any alias occurs as whole words (not inside a longer word: "ar" is not found in "are")."""
    return any(names_whole(answer, a) for a in aliases)


def _edit_indexes(texts, case: MultiHopCase) -> list[int]:
    own = case.facts()
    return sorted({i for t in texts if t for i, f in enumerate(own) if f == t})


# ----- the evaluator -------------------------------------------------------------------------------------------------
class MultiHopEvaluator:
    def __init__(self, config: MultiHopConfig, settings: Settings | None = None, command: str | None = None,
                 log: Log | None = None, backend=None, embedder=None):
        from scr.models import set_offline_env

        set_offline_env()
        self.config = config
        settings = settings or Settings()
        self.settings = settings.model_copy(update={"max_new_tokens": config.max_new_tokens,
                                                    "batch_size": config.batch_size})
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._backend = backend
        self._embedder = embedder
        self.report_every_s = 300.0
        self._last_report = time.monotonic()
        c = config
        self.data_path = resolve_data(c.data, c.data_dir)
        self.all_cases = load_mquake(self.data_path)
        self.cases = self.all_cases[: c.limit] if c.limit else self.all_cases
        self.data_sha256 = file_digest(self.data_path)
        self.out = Path(c.out)
        self.memo: MemoBackend | None = None

    # -- parts ---------------------------------------------------------------------------------------------------
    def embedder(self):
        if self._embedder is None:
            from scr.kb.embed import Embedder

            self._embedder = Embedder(self.settings.embedder, device=self.settings.device)
        return self._embedder

    def _memo(self) -> MemoBackend:
        if self.memo is None:
            s = self.settings

            self.memo = memo_backend(s, self.out, self.log, self._backend)
        return self.memo

    def make_method(self, name: str) -> Method:
        return make_method(name, self.settings, self._memo(), self.embedder, workdir=self.out / "tmp",
                           edit_batch_size=self.config.edit_batch_size, editing=self.config.editing,
                           log=self.log)

    def protocol(self, name: str) -> str:
        """How a method receives the updates: "dataset" (one memory of every case), "case", or "none"."""
        kind = kind_of(name)[0]
        if kind == "scr":
            return self.config.scr_kb
        return {"edit": "case"}.get(kind, "none")

    def config_hash(self, method: Method) -> str:
        c, s = self.config, self.settings
        kind = kind_of(method.name)[0]
        return _hash({"data": self.data_sha256, "protocol": self.protocol(method.name),
                      "max_new_tokens": c.max_new_tokens, "llm": s.llm, "backend": s.backend, "dtype": s.dtype,
                      "method": method.info(), "version": 1,
                      # Only SCR decomposes; the other methods' answers do not depend on these.
                      "multihop": {"max_hops": c.max_hops, "decompose": c.decompose} if kind == "scr" else None})

    # -- run -----------------------------------------------------------------------------------------------------
    def run(self, report_only: bool = False) -> dict:
        from scr.evaluation.multihop_report import write_reports

        self.out.mkdir(parents=True, exist_ok=True)
        if report_only:
            self.command = reported_command(self.out, self.command, self.settings)
            return write_reports(self)
        started = time.time()
        random.seed(self.config.seed)
        (self.out / "config.json").write_text(json.dumps(
            {"multihop": self.config.model_dump(), "settings": json.loads(self.settings.model_dump_json()),
             "command": self.command}, indent=2))
        self.log(f"{len(self.cases)} of {len(self.all_cases)} cases from {self.data_path}; methods "
                 f"{', '.join(self.config.methods)}; SCR memory: {self.config.scr_kb}")
        for name in self.config.methods:
            method = self.make_method(name)
            try:
                self._run_method(method)
            finally:
                method.close()
            self._write_reports()
        self._append_session(time.time() - started)
        report = self._write_reports()
        if self.memo is not None:
            self.memo.close()
        return report

    def _write_reports(self) -> dict:
        from scr.evaluation.multihop_report import write_reports

        self._last_report = time.monotonic()
        return write_reports(self)

    def _append_session(self, seconds: float) -> None:
        append_session(self.out, seconds, self.command, loaded_model=self.memo is not None and self.memo.loaded)

    def records(self, name: str) -> Records:
        return Records(self.out / "records" / f"{method_slug(name)}.jsonl")

    def _run_method(self, method: Method) -> None:
        records = self.records(method.name)
        h = self.config_hash(method)
        done = {r["case_id"] for r in records.select(h, "case")}
        todo = [c for c in self.cases if c.case_id not in done]
        if not todo:
            self.log(f"{method.name}: done ({len(done)} cases), nothing to run")
            return
        protocol = self.protocol(method.name)
        self.log(f"{method.name}: {len(self.cases) - len(todo)} cases done, {len(todo)} to go ({protocol} updates)")
        with PeakMemory() as mem:
            if protocol == "case":
                for case in todo:
                    self._apply(method, records, h, case.edits, [case])
                    self._answer(method, records, h, [case])
            else:
                if protocol == "dataset":
                    # Every case's edits, the evaluated ones or not; shared edits are stored once.
                    edits = list({e.fact()["text"]: e for c in self.all_cases for e in c.edits}.values())
                    self._apply(method, records, h, edits, todo)
                for start in range(0, len(todo), self.config.chunk_cases):
                    self._answer(method, records, h, todo[start : start + self.config.chunk_cases])
            method.reset()
        records.add([{"type": "mem", "h": h, "peak_rss_mb": mem.peak_mb}])

    def _apply(self, method: Method, records: Records, h: str, edits: list[Case], cases) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        method.reset()
        details = method.apply(edits)
        records.add([{"type": "time", "h": h, "phase": "apply", "seconds": round(time.perf_counter() - t0, 3),
                      "cpu_s": round(time.process_time() - c0, 3), "edits": len(edits),
                      "cases": [c.case_id for c in cases], "details": details}])

    def _answer(self, method: Method, records: Records, h: str, chunk: list[MultiHopCase]) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = self.evaluate_chunk(method, chunk)
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        for r in rows:
            r["h"] = h
        questions = sum(len(c.questions) + len(c.single_hops) for c in chunk)
        rows.append({"type": "time", "h": h, "phase": "answer", "seconds": round(seconds, 3),
                     "cpu_s": round(cpu_s, 3), "cases": len(chunk), "questions": questions})
        records.add(rows)
        n_done = len({r["case_id"] for r in records.select(h, "case")} & {c.case_id for c in self.cases})
        self.log(f"  {method.name}: {n_done}/{len(self.cases)} cases ({questions} questions in {seconds:.1f} s)")
        if time.monotonic() - self._last_report > self.report_every_s:
            self._write_reports()  # long runs: partial reports as they go

    # -- one chunk ------------------------------------------------------------------------------------------------
    def evaluate_chunk(self, method: Method, chunk: list[MultiHopCase]) -> list[dict]:
        mnt = self.config.max_new_tokens
        asked = [(c, q) for c in chunk for q in c.questions]
        multi = self._multihop_answers(method, asked)
        singles = [(c, hop) for c in chunk for hop in c.single_hops]
        # The probe kind only steers the context oracle: a link that was not edited has no fact to show.
        queries = [Query(Probe("locality" if hop.edit is None else "reliability", hop.question, (hop.answers,)),
                         c.edits[hop.edit or 0]) for c, hop in singles]
        responses = method.answer(queries, mnt) if queries else []
        rows = {c.case_id: {"type": "case", "case_id": c.case_id, "index": c.index, "multihop": [], "single": []}
                for c in chunk}
        for (c, q), row in zip(asked, multi):
            row.update({"correct": mentions(row["answer"], c.new_answers),
                        "correct_word": mentions_word(row["answer"], c.new_answers),
                        "old": mentions(row["answer"], c.old_answers)})
            rows[c.case_id]["multihop"].append({"q": q, **row})
        for (c, hop), r in zip(singles, responses):
            row = {"q": hop.question, "answer": r.answer, "correct": mentions(r.answer, hop.answers),
                   "correct_word": mentions_word(r.answer, hop.answers)}
            if r.in_scope is not None:
                row["in_scope"] = bool(r.in_scope)
                row["own_fact"] = hop.edit is not None and r.fact == c.edits[hop.edit].fact()["text"]
            rows[c.case_id]["single"].append(row)
        return list(rows.values())

    def _multihop_answers(self, method: Method, asked: list[tuple[MultiHopCase, str]]) -> list[dict]:
        kind = kind_of(method.name)[0]
        mnt = self.config.max_new_tokens
        if kind == "scr":
            pipeline = method._open().pipeline  # the method's own engine: its knowledge base and scope check
            pipeline.max_new_tokens = mnt
            answers = pipeline.ask_multihop_batch([q for _, q in asked], self.config.max_hops, self.config.decompose)
            out = []
            for (c, _), a in zip(asked, answers):
                hops = [{"q": hop.question, "a": hop.answer, "entity": hop.entity, "in_scope": hop.in_scope,
                         "fact": hop.fact.text if hop.fact else None, "by": hop.written_by} for hop in a.hops]
                out.append({"answer": a.answer, "stop": a.stop, "hops": hops,
                            "used": _edit_indexes([h["fact"] for h in hops], c),
                            "retrieved": _edit_indexes([f.text for hop in a.hops for f in hop.candidates], c)})
            return out
        if kind == "oracle":
            from scr import prompts
            from scr.llm.base import as_chat

            chats = [as_chat(prompts.multihop_answer(c.facts(), q)) for c, q in asked]
            return [{"answer": t} for t in method.backend.generate(chats, mnt)]
        # The unmodified or edited model: the plain question, as the model is asked any question.
        queries = [Query(Probe("reliability", q, (c.new_answers,)), c.edits[0]) for c, q in asked]
        return [{"answer": r.answer} for r in method.answer(queries, mnt)]
