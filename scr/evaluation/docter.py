"""DocTER: knowledge updates that arrive as documents. Does each method pick up what the documents assert?

Every DocTER document (docter_data.py) is a press-release-style text that asserts one counterfactual edit
("her mother tongue was English"). Protocol, for the first LIMIT documents (file order):
  base                 the unmodified model
  scr / scr-sentences  SCR over ONE knowledge base holding every sentence of every selected document
  scr-atomic           the same, the knowledge base holding the facts the served LLM extracted from them
                       (scr/kb/extract.py)
  scr-upper            UPPER BOUND: the knowledge base holds the benchmark's own edits ("<query> <altered>.")
  scr...-context<N>    any of these with answers that read up to N facts that passed the scope check (a document's
                       sentences each hold part of an answer; ``Settings.context_facts``)
  <editor>-extracted   a parameter editor (memit, alphaedit, balancedit, ...) applying, in sequential batches, the
                       extracted facts that form a triple (prompt "<subject> <relation>", target "<object>")
  <editor>-upper       UPPER BOUND: the editor applying the benchmark's own query -> altered_target pairs
Then every probe of every selected document is answered (greedy, chat template, through the method's
``answer``, the same prompts as the library; SCR through its own pipeline):
  edit success   the query and its two paraphrases: the answer contains altered_target (case-insensitive);
                 per document the mean over the three (efficacy = the query alone, paraphrase = the two others)
  locality       the ~10 neighbour prompts (same relation, other subjects): ``unchanged`` = the answer equals the
                 unmodified model's answer (as the main evaluator's locality); also the share that still
                 contains original_target and the share that now contains altered_target (the edit leaking)
  reasoning      the yes/no questions of docter_reasoning_eval.json that belong to the selected documents, asked
                 with their extra fact (``docter_data.reasoning_prompt``); the answer's first "yes"/"no" word is
                 compared with the label. Generation and parsing, not log-probabilities of " Yes"/" No", so that
                 every method is asked the same way it answers users (SCR decides scope and injects a fact, an
                 edited model answers freely); an answer with neither word counts as wrong (its rate is reported).
``method_limits`` gives a method fewer documents (parameter editing costs ~20 s per edit on 2 CPU cores); the
report then adds a table of every method on that smaller subset. ``probe_every`` N asks the probes of every N-th
document only (from position ``probe_start``), while the updates still come from every selected document: the same
questions over a knowledge base N times larger (``updates = "probed"`` gives each method only the probed documents' updates, for the comparison).

Run directory (resumable): ``records/<method>.jsonl`` (one row per evaluated document, per apply step, per
answered chunk; each tagged with a hash of everything that determines the results, so a re-run skips finished
documents and a finished run does no work), ``cache/llm.jsonl`` (memoised generations of the unmodified model:
base answers, SCR's out-of-scope answers, the atomic extraction), ``facts/atomic.jsonl`` (the extracted facts,
for inspection), ``report.json``, ``report.md``, ``docter.png``. A resumed method re-applies its updates first
(knowledge bases and edited weights are not kept between sessions; the extraction comes from the memo).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scr.config import Settings
from scr.evaluation.config import EvalConfigError, split_names, validated
from scr.evaluation.data import Case, Probe
from scr.evaluation.docter_data import DocCase, digests, docter_paths, load_docter, parse_yes_no, reasoning_prompt
from scr.evaluation.methods import (ANSWER_SUFFIXES, BaseMethod, EditingMethod, Method, Query, SCRMethod,
                                    counted_apply_seconds, split_answer_style)
from scr.evaluation.jsonl_log import append_session, reported_command
from scr.evaluation.metrics import contains
from scr.evaluation.runner import PeakMemory, Records, _hash, memo_backend, method_slug, seed_base_answers
from scr.kb.extract import EXTRACT_PROMPT, AtomicExtractor, AtomicFact
from scr.kb.ingest import sentence_facts
from scr.kb.records import FactInput
from scr.pipeline import base_prompt
from scr.scope import SUBJECT_RELATION_MODES

Log = Callable[[str], None]
SOURCES = {"scr": ("sentences", "atomic", "upper"), "edit": ("extracted", "upper")}


class DocterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: str | None = Field(None, description="data directory holding docedit/ and counterfact/")
    methods: list[str] = Field(default_factory=lambda: ["base", "scr", "scr-atomic"])
    limit: int | None = Field(100, ge=1, description="the first LIMIT documents (file order); None = all 2000")
    offset: int = Field(0, ge=0, description="skip this many documents first (file order); the reasoning "
                        "file labels its questions True up to about document 538, then False")
    method_limits: dict[str, int] = Field(default_factory=dict,
                                          description="fewer documents for named methods (slow editing)")
    counterfact: bool = Field(True, description="subjects from CounterFact where its record is the same edit")
    max_new_tokens: int = Field(24, ge=1, le=512, description="answer length")
    extract_tokens: int = Field(16, ge=4, le=128, description="tokens per extracted fact line")
    batch_size: int = Field(16, ge=1, description="generation batch size")
    chunk_docs: int = Field(20, ge=1, description="documents answered per saved chunk")
    probe_every: int = Field(1, ge=1, description="answer the probes of every N-th selected document (file order); "
                             "the updates still come from every selected document, so N > 1 asks the same "
                             "questions of a knowledge base N times larger")
    probe_start: int = Field(0, ge=0, description="with probe_every N: the position (0 to N-1) of the first probed "
                             "document, so another window of the same documents can choose settings (a dev set)")
    updates: Literal["selected", "probed"] = Field(
        "selected", description="whose updates a method gets: every selected document's, or only the probed ones' "
        "(with probe_every, the same questions over a knowledge base N times smaller)")
    edit_batch_size: int | None = Field(10, ge=1, description="editing methods: edits per apply() call")
    editing: dict[str, Any] = Field(default_factory=dict, description="overrides passed to make_editor")
    seed: int = 1234
    out: str = "evals/results/docter"
    title: str | None = None

    @field_validator("methods", mode="before")
    @classmethod
    def _split(cls, value):
        names = split_names(value)
        for name in names:
            parse_method(name)
        return names

    @field_validator("method_limits")
    @classmethod
    def _positive(cls, value):
        for name, n in value.items():
            parse_method(name)
            if n < 1:
                raise ValueError(f"method_limits.{name} must be at least 1, got {n}")
        return value

    @model_validator(mode="after")
    def _start_within_every(self):
        if self.probe_start >= self.probe_every:
            raise ValueError(f"probe_start must be below probe_every ({self.probe_every}), got {self.probe_start}")
        return self


@dataclass(frozen=True)
class MethodSpec:
    kind: str  # base | scr | edit
    source: str | None = None  # scr: sentences | atomic | upper; edit: extracted | upper
    editor: str | None = None
    answer_style: str | None = None  # scr: None = the settings' own
    context_facts: int | None = None  # scr: None = the settings' own

    @property
    def upper_bound(self) -> bool:
        return self.source == "upper"


def parse_method(name: str) -> MethodSpec:
    """``base``, ``scr[-sentences|-atomic|-upper][-context<N>][-object-first|-paper-answers]`` or
    ``<editor>-(extracted|upper)``; ValueError otherwise. ``-context<N>``: answers read up to N facts that passed
    the scope check (``Settings.context_facts``)."""
    n = name.strip().lower()
    if n == "base":
        return MethodSpec("base")
    n, style = split_answer_style(n)
    context = re.search(r"-context(\d+)$", n) if n.startswith("scr") else None
    facts = int(context.group(1)) if context else None
    if context:
        n = n[: context.start()]
        if not 1 <= facts <= 20:
            raise ValueError(f"{name}: -context<N> takes N from 1 to 20")
    if n in ("scr", "scr-sentences"):
        return MethodSpec("scr", "sentences", answer_style=style, context_facts=facts)
    if n.startswith("scr-") and n[4:] in SOURCES["scr"]:
        return MethodSpec("scr", n[4:], answer_style=style, context_facts=facts)
    editor, _, source = n.rpartition("-")
    from scr.editing import METHODS

    if editor in METHODS and source in SOURCES["edit"]:
        if editor.startswith("come") and source == "extracted":
            raise ValueError(f"{name}: CoME unlearns the old answer, which extracted facts do not have")
        return MethodSpec("edit", source, editor)
    raise ValueError(f"unknown DocTER method {name!r}: base, scr, scr-sentences, scr-atomic, scr-upper (each "
                     f"optionally followed by -context<N>, then -{' or -'.join(ANSWER_SUFFIXES)}), or "
                     f"<editor>-extracted / <editor>-upper with an editor of {', '.join(METHODS)}")


def make_docter_config(**fields) -> DocterConfig:
    return validated(DocterConfig, "DocTER", fields)


# ----- scoring ---------------------------------------------------------------------------------------------------
def score_doc(case: DocCase, edit_answers: Sequence[str], neighbour_answers: Sequence[str],
              references: Sequence[str], reasoning_answers: Sequence[str]) -> dict:
    """One document's scores from the answers to its probes (in the order of ``probes``)."""
    hits = [contains(a, [case.altered]) for a in edit_answers]
    scores = {"efficacy": float(hits[0]), "paraphrase": statistics.fmean(hits[1:]) if len(hits) > 1 else None,
              "edit_success": statistics.fmean(hits)}
    if neighbour_answers:
        scores["locality_unchanged"] = statistics.fmean(a.strip() == r.strip()
                                                        for a, r in zip(neighbour_answers, references))
        scores["locality_original"] = statistics.fmean(contains(a, [case.original]) for a in neighbour_answers)
        scores["locality_altered"] = statistics.fmean(contains(a, [case.altered]) for a in neighbour_answers)
    parsed = [parse_yes_no(a) for a in reasoning_answers]
    scores["reasoning_correct"] = sum(p is not None and p == item.label for p, item in zip(parsed, case.reasoning))
    scores["reasoning_parsed"] = sum(p is not None for p in parsed)
    scores["reasoning_n"] = len(reasoning_answers)
    return scores


def probes(case: DocCase) -> list[Probe]:
    """The document's prompts: query, paraphrases (edit success), neighbours (locality), reasoning questions."""
    new, old = ((case.altered,),), ((case.original,),)
    out = [Probe("reliability", case.query, new)]
    out += [Probe("generalization", p, new) for p in case.paraphrases]
    out += [Probe("locality", p, old) for p in case.neighbours]
    out += [Probe("portability", reasoning_prompt(r), ((("yes" if r.label else "no"),),), sub="reasoning")
            for r in case.reasoning]
    return out


def updated_elsewhere(case: DocCase, updates: Sequence[DocCase]) -> set[int]:
    """The positions of ``case``'s neighbour prompts that another of the ``updates`` documents edits: it names the
    prompt's subject and has the same original target, so the same relation (a CounterFact neighbour shares the
    edit's relation and true object). With every document in one knowledge base such a prompt's answer SHOULD
    change ("Hank Aaron plays" when another document moves Hank Aaron from baseball to basketball); DocTER's
    locality, written for one document at a time, counts that change as damage."""
    original = case.original.strip().lower()
    others = [d for d in updates if d.id != case.id and d.subject and d.original.strip().lower() == original]
    return {i for i, prompt in enumerate(case.neighbours)
            if any(re.search(rf"(?<!\w){re.escape(d.subject)}(?!\w)", prompt) for d in others)}


def aggregate(rows: Sequence[dict], elsewhere: dict[int, set[int]] | None = None) -> dict:
    """Means over documents (edit success, locality) and over questions (reasoning) of the ``doc`` rows.
    ``elsewhere``: per document id, the neighbour prompts another updated document edits (``updated_elsewhere``),
    left out of ``locality_unchanged_kept``."""
    if not rows:
        return {"docs": 0}
    out: dict[str, Any] = {"docs": len(rows)}
    for key in ("edit_success", "efficacy", "paraphrase", "locality_unchanged", "locality_original",
                "locality_altered"):
        values = [r["scores"][key] for r in rows if r["scores"].get(key) is not None]
        out[key] = statistics.fmean(values) if values else None
    if elsewhere is not None:
        kept = [[p["answer"].strip() == p["reference"].strip()
                 for i, p in enumerate(r["locality"]) if i not in elsewhere.get(r["id"], ())] for r in rows]
        kept = [statistics.fmean(k) for k in kept if k]
        out["locality_unchanged_kept"] = statistics.fmean(kept) if kept else None
        out["neighbours_updated_elsewhere"] = sum(len(elsewhere.get(r["id"], ())) for r in rows)
    n = sum(r["scores"]["reasoning_n"] for r in rows)
    out["reasoning_n"] = n
    out["reasoning_accuracy"] = sum(r["scores"]["reasoning_correct"] for r in rows) / n if n else None
    out["reasoning_parsed"] = sum(r["scores"]["reasoning_parsed"] for r in rows) / n if n else None
    # The file lists its "True" questions first (ids below ~538), so the first documents' labels are all True:
    # the share of True labels is the accuracy of always answering yes.
    labels = [item["label"] for r in rows for item in r.get("reasoning", [])]
    out["reasoning_true_share"] = statistics.fmean(labels) if labels else None
    # SCR's own decisions: how often a fact was put in context, and whether it carried the edit.
    edit = [p for r in rows for p in r["edit"] if "in_scope" in p]
    neighbours = [p for r in rows for p in r["locality"] if "in_scope" in p]
    if edit:
        out["in_scope_edit"] = statistics.fmean(p["in_scope"] for p in edit)
        used = [p for p in edit if p["in_scope"]]
        out["fact_has_target"] = statistics.fmean(p["fact_has_target"] for p in used) if used else None
    if neighbours:
        out["in_scope_neighbour"] = statistics.fmean(p["in_scope"] for p in neighbours)
    return out


# ----- methods -------------------------------------------------------------------------------------------------
class DocumentSCR(SCRMethod):
    """SCR over a knowledge base built from the documents by one strategy (or from the benchmark's edits)."""

    def __init__(self, settings, backend, embedder_factory, source: str, name: str, workdir: Path,
                 answer_style: str | None = None):
        super().__init__(settings, backend, embedder_factory, name=name, workdir=workdir, answer_style=answer_style)
        self.source = source

    def add(self, facts: list[FactInput]) -> dict:
        report = self._open().add_facts(facts, find_conflicts=False)
        return {"facts_added": len(report.added), "duplicates": len(report.duplicates),
                "superseded": len(report.superseded)}

    def info(self):
        return {**super().info(), "documents": self.source}


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


# ----- the runner ------------------------------------------------------------------------------------------------
class DocterRunner:
    def __init__(self, config: DocterConfig, settings: Settings | None = None, command: str | None = None,
                 log: Log | None = None, backend=None, embedder=None):
        from scr.models import set_offline_env

        set_offline_env()
        self.config = config
        self.settings = (settings or Settings()).model_copy(update={"batch_size": config.batch_size,
                                                                  "max_new_tokens": config.max_new_tokens})
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._backend = backend
        self._embedder = embedder
        self.out = Path(config.out)
        self._atomic: dict[int, list[AtomicFact]] = {}

    # -- set-up -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        c, s = self.config, self.settings
        self.paths = docter_paths(c.data_dir, c.counterfact)
        self.cases = load_docter(c.data_dir, c.limit, c.counterfact, c.offset)
        self._position = {d.id: i for i, d in enumerate(self.cases)}
        self.digests = digests(self.paths)

        self.memo = memo_backend(s, self.out, self.log, self._backend)
        self._seed_memo()

    def _seed_memo(self) -> None:
        """The unmodified model's answers in this run's ``base`` records (same hash) go into the memo: a fresh
        checkout then does not regenerate the neighbours' reference answers (runner.Evaluator._seed_memo)."""
        records = self.records("base")
        rows = records.select(self.method_hash("base", BaseMethod(self.memo)), "doc") if records.rows else []
        seed_base_answers(self.memo, [p for r in rows for group in ("edit", "locality") for p in r.get(group, [])],
                          self.config.max_new_tokens, records.path, self.log)

    def embedder(self):
        if self._embedder is None:
            from scr.kb.embed import Embedder

            self._embedder = Embedder(self.settings.embedder, device=self.settings.device)
        return self._embedder

    def selected(self, name: str) -> list[DocCase]:
        """The documents a method is run on: all selected ones, or the first ``method_limits[name]``."""
        limit = self.config.method_limits.get(name)
        return self.cases[:limit] if limit else self.cases

    def probed(self, docs: Sequence[DocCase]) -> list[DocCase]:
        """Every ``probe_every``-th of these documents, counted in the run's file order."""
        every, start = self.config.probe_every, self.config.probe_start
        return [d for d in docs if self._position[d.id] % every == start]

    def docs_for(self, name: str) -> list[DocCase]:
        """The documents whose probes the method answers."""
        return self.probed(self.selected(name))

    def update_docs(self, name: str) -> list[DocCase]:
        """The documents whose updates the method gets (its knowledge base, or its edits)."""
        return self.docs_for(name) if self.config.updates == "probed" else self.selected(name)

    def make_method(self, name: str) -> Method:
        spec = parse_method(name)
        if spec.kind == "base":
            method: Method = BaseMethod(self.memo)
        elif spec.kind == "scr":
            settings = self.settings.model_copy(update={"context_facts": spec.context_facts or
                                                        self.settings.context_facts})
            method = DocumentSCR(settings, self.memo, self.embedder, spec.source, name, self.out / "tmp",
                                 spec.answer_style)
        else:
            method = EditingMethod(spec.editor, self.settings, self.config.edit_batch_size, self.config.editing,
                                   self.log, workdir=self.out / "tmp")
        method.name = name
        return method

    def method_hash(self, name: str, method: Method) -> str:
        c, s = self.config, self.settings
        spec = parse_method(name)
        extraction = None
        if spec.source in ("atomic", "extracted"):
            extraction = {"tokens": c.extract_tokens,
                          "prompt": hashlib.sha256(EXTRACT_PROMPT.encode()).hexdigest()[:12]}
        key = {"data": self.digests, "docs": [d.id for d in self.docs_for(name)], "method": method.info(),
               "max_new_tokens": c.max_new_tokens, "llm": s.llm, "backend": s.backend, "dtype": s.dtype,
               "extraction": extraction, "version": 1}
        if (spec.kind == "scr" and spec.source == "sentences" and s.scope_names
                and s.scope_mode in SUBJECT_RELATION_MODES and s.scope_name_match != "last-word"):
            # Sentences are the facts without a subject, which the name match judges; "last-word" runs keep the
            # hash they had before the setting (and facts with a subject never meet it).
            key["name_match"] = s.scope_name_match
        updates = [d.id for d in self.update_docs(name)]
        if spec.kind != "base" and updates != key["docs"]:  # only when some updated documents go unprobed
            key["updates"] = updates
        return _hash(key)

    def records(self, name: str) -> Records:
        return Records(self.out / "records" / f"{method_slug(name)}.jsonl")

    # -- run ----------------------------------------------------------------------------------------------------
    def run(self, report_only: bool = False) -> dict:
        from scr.evaluation.docter_report import write_report

        self.setup()
        if not report_only:
            started = time.time()
            (self.out / "records").mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(
                {"docter": self.config.model_dump(), "settings": json.loads(self.settings.model_dump_json()),
                 "command": self.command}, indent=2))
            self.log(f"{len(self.cases)} DocTER documents; methods {', '.join(self.config.methods)}")
            for name in self.config.methods:
                method = self.make_method(name)
                try:
                    self._run_method(name, method)
                finally:
                    method.close()
                write_report(self)
            append_session(self.out, time.time() - started, self.command, loaded_model=self.memo.loaded)
        else:
            self.command = reported_command(self.out, self.command, self.settings)
        report = write_report(self)
        self.memo.close()
        return report

    def _run_method(self, name: str, method: Method) -> None:
        records = self.records(name)
        h = self.method_hash(name, method)
        docs, updated = self.docs_for(name), self.update_docs(name)
        done = {r["id"] for r in records.select(h, "doc")}
        todo = [d for d in docs if d.id not in done]
        if not todo:
            self.log(f"{name}: done ({len(docs)} documents), nothing to run")
            return
        self.log(f"{name}: {len(done)} documents done, {len(todo)} to go")
        random.seed(self.config.seed)
        try:
            import torch

            torch.manual_seed(self.config.seed)
        except ImportError:
            pass
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            method.reset()
            details = self._apply(name, method, updated)
            seconds = time.perf_counter() - t0
            if isinstance(details, dict):  # checkpointed, journalled and reused edits count at their cost
                seconds = counted_apply_seconds(seconds, details)
            records.add([{"type": "apply", "h": h, "seconds": round(seconds, 3), "details": details}])
            self.log(f"{name}: updates of {len(updated)} documents applied in {seconds:.1f} s")
            for start in range(0, len(todo), self.config.chunk_docs):
                chunk = todo[start : start + self.config.chunk_docs]
                hits, misses = self.memo.hits, self.memo.misses
                t1 = time.perf_counter()
                rows = self.answer_chunk(method, chunk)
                seconds = time.perf_counter() - t1
                for row in rows:
                    row["h"] = h
                records.add(rows + [{"type": "time", "h": h, "phase": "answer", "seconds": round(seconds, 3),
                                     "docs": len(chunk), "probes": sum(len(probes(d)) for d in chunk),
                                     "memo_hits": self.memo.hits - hits, "memo_misses": self.memo.misses - misses}])
                self.log(f"  {name}: {start + len(chunk)}/{len(todo)} documents ({seconds:.0f} s)")
        records.add([{"type": "mem", "h": h, "peak_rss_mb": mem.peak_mb}])

    # -- updates ------------------------------------------------------------------------------------------------
    def atomic_facts(self, docs: Sequence[DocCase]) -> dict[int, list[AtomicFact]]:
        """The extracted facts of these documents (generation memoised: extracting again costs nothing)."""
        missing = [d for d in docs if d.id not in self._atomic]
        if missing:
            extractor = AtomicExtractor(
                self.memo, max_new_tokens=self.config.extract_tokens,
                progress=lambda done, total: self.log(f"  extracting: {done}/{total} sentences"))
            found = extractor.extract([(d.name, [f.text for f in sentence_facts(d.document, d.name)]) for d in missing])
            self._atomic.update({d.id: facts for d, facts in zip(missing, found)})
            self._write_atomic()
        return {d.id: self._atomic[d.id] for d in docs}

    def _write_atomic(self) -> None:
        path = self.out / "facts" / "atomic.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        order = {d.id: d.index for d in self.cases}
        with open(path, "w", encoding="utf-8") as fh:
            for doc_id in sorted(self._atomic, key=lambda i: order.get(i, i)):
                for a in self._atomic[doc_id]:
                    fh.write(json.dumps({"doc": doc_id, "text": a.text, "subject": a.subject, "relation": a.relation,
                                         "object": a.object, "source": a.source, "sentence": a.sentence},
                                        ensure_ascii=False) + "\n")

    def _apply(self, name: str, method: Method, docs: Sequence[DocCase]) -> dict:
        spec = parse_method(name)
        if spec.kind == "base":
            return {}
        if spec.kind == "scr":
            facts = self.scr_facts(spec.source, docs)
            details = method.add([f for fs in facts.values() for f in fs])
            details.update(facts_per_doc=_mean(len(fs) for fs in facts.values()),
                           docs_with_target_fact=sum(any(d.altered.lower() in f.text.lower() for f in facts[d.id])
                                                     for d in docs))
            return details
        cases, details = self.edit_cases(spec.source, docs)
        if not cases:
            raise EvalConfigError(f"{name}: no edit request could be built from {len(docs)} document(s)")
        details.update(method.apply(cases))
        return details

    def scr_facts(self, source: str, docs: Sequence[DocCase]) -> dict[int, list[FactInput]]:
        if source == "sentences":
            return {d.id: sentence_facts(d.document, d.name) for d in docs}
        if source == "atomic":
            return {i: [a.as_input() for a in facts] for i, facts in self.atomic_facts(docs).items()}
        from scr.evaluation.data import fact_text

        return {d.id: [FactInput(text=fact_text(d.query, d.altered), subject=d.subject, object=d.altered,
                                 source=f"{d.name}#upper")] for d in docs}

    def edit_cases(self, source: str, docs: Sequence[DocCase]) -> tuple[list[Case], dict]:
        """The edit requests of these documents, and what the report says about them."""
        if source == "upper":
            usable = [d for d in docs if d.subject]
            sources: dict[str, int] = {}
            for d in usable:
                sources[d.subject_source] = sources.get(d.subject_source, 0) + 1
            details = {"subjects": sources, "docs_without_subject": len(docs) - len(usable)}
            return [d.upper_case() for d in usable], details
        extracted = self.atomic_facts(docs)
        cases = []
        for d in docs:
            for a in extracted[d.id]:
                if a.editable:
                    cases.append(Case(case_id=a.source, index=d.index, prompt=a.edit_prompt, target_new=a.object,
                                      subject=a.subject))
        with_target = sum(any(a.editable and d.altered.lower() in a.object.lower() for a in extracted[d.id])
                          for d in docs)
        return cases, {"edits_per_doc": _mean(sum(a.editable for a in extracted[d.id]) for d in docs),
                       "docs_with_target_edit": with_target}

    # -- answers ------------------------------------------------------------------------------------------------
    def answer_chunk(self, method: Method, chunk: Sequence[DocCase]) -> list[dict]:
        mnt = self.config.max_new_tokens
        per_doc = [probes(d) for d in chunk]
        flat = [p for ps in per_doc for p in ps]
        neighbours = [p.prompt for p in flat if p.kind == "locality"]
        # The unmodified model's answers first: base and SCR's out-of-scope answers are then memo hits.
        references = iter(self.memo.generate([base_prompt(p) for p in neighbours], mnt))
        responses = iter(method.answer([Query(p, None) for p in flat], mnt))
        rows = []
        for case, ps in zip(chunk, per_doc):
            groups: dict[str, list[dict]] = {"edit": [], "locality": [], "reasoning": []}
            for p in ps:
                r = next(responses)
                row = {"prompt": p.prompt, "answer": r.answer}
                if r.in_scope is not None:
                    row["in_scope"] = bool(r.in_scope)
                    if r.fact is not None:
                        row["fact"] = r.fact
                if p.kind == "locality":
                    row["reference"] = next(references)
                    groups["locality"].append(row)
                elif p.kind == "portability":
                    groups["reasoning"].append(row)
                else:
                    row["hit"] = contains(r.answer, [case.altered])
                    if r.in_scope is not None:
                        row["fact_has_target"] = bool(r.fact and case.altered.lower() in r.fact.lower())
                    groups["edit"].append(row)
            for row, item in zip(groups["reasoning"], case.reasoning):
                row["label"] = item.label
                row["says_yes"] = parse_yes_no(row["answer"])  # None: neither yes nor no
            scores = score_doc(case, [r["answer"] for r in groups["edit"]], [r["answer"] for r in groups["locality"]],
                               [r["reference"] for r in groups["locality"]], [r["answer"] for r in groups["reasoning"]])
            rows.append({"type": "doc", "id": case.id, "index": case.index, **groups, "scores": scores})
        return rows
