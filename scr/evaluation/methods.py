"""The one interface every compared method offers the evaluator: reset, apply N updates, answer, score.

  base             the unmodified model (no update)
  context-oracle   the case's own fact always in context for in-scope probes, the plain question for locality
                   probes: perfect scope decisions, an upper bound for contextual answering
  scr, scr-<mode>  Selective Contextual Reasoning through the library's Engine (knowledge base, retrieval,
                   scope check, answer), with the settings' scope mode or the named one
  <editing method> any method of ``scr.editing.METHODS`` (memit, alphaedit, come, ...), through
                   ``make_editor`` on its own copy of the model; ``edit:<method>`` is accepted too

Answers use the same prompts as the library: the plain question in the chat template for the unmodified and
edited models (``scr.pipeline.base_prompt``); SCR's own pipeline for SCR; the paper's answer prompt with the
fact for the oracle, exactly as SCR writes it when it picks that fact.

Teacher-forced scoring uses raw completion prompts, EasyEdit-style: ``prompt + " " + target`` for the
unmodified and edited models, and the paper's answer prompt as raw text (followed by " " + target) where a fact
is in context.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from scr import prompts as prompt_texts
from scr.evaluation.data import Case, Probe
from scr.llm.base import TokenScores, as_chat
from scr.pipeline import base_prompt, context_text
from scr.scope import NAME_THRESHOLD, OTHER_NAME_THRESHOLD, SUBJECT_RELATION_MODES
from scr.scope_encoder import DEFAULT_ENCODER_PATH, read_info

SCOPE_MODES = ("default", "subject-relation", "relation-encoder", "paper", "llm", "similarity", "gated-llm", "encoder")


@dataclass
class Query:
    probe: Probe
    case: Case  # only the oracle may look at it: other methods see probe.prompt alone


@dataclass
class Response:
    answer: str
    in_scope: bool | None = None  # the method's own scope decision, where it makes one
    fact: str | None = None  # the fact put in context


class Method(ABC):
    name: str = "method"
    #: Leaves the model's weights untouched, so the shared (memoised) backend can serve it.
    shares_base_model: bool = True

    def reset(self) -> None:
        """Back to the unmodified state (no update applied)."""

    def apply(self, cases: Sequence[Case]) -> dict:
        """Apply the updates of these cases on top of the current state; returns details for the report."""
        return {}

    @abstractmethod
    def answer(self, queries: Sequence[Query], max_new_tokens: int) -> list[Response]: ...

    @abstractmethod
    def score(self, queries: Sequence[Query], continuations: Sequence[str]) -> tuple[list[TokenScores], list[Response]]:
        ...

    def info(self) -> dict:
        """What identifies this method's configuration (part of the resume key)."""
        return {"method": self.name}

    def close(self) -> None:
        pass


def raw_answer_prompt(fact: str, question: str) -> str:
    return prompt_texts.paper_answer(fact, question)


class BaseMethod(Method):
    name = "base"

    def __init__(self, backend):
        self.backend = backend

    def answer(self, queries, max_new_tokens):
        texts = self.backend.generate([base_prompt(q.probe.prompt) for q in queries], max_new_tokens)
        return [Response(t) for t in texts]

    def score(self, queries, continuations):
        return self.backend.token_logprobs([q.probe.prompt for q in queries], continuations), [Response("")] * len(queries)


class ContextOracle(Method):
    name = "context-oracle"

    def __init__(self, backend):
        self.backend = backend

    def _route(self, queries, chat: bool):
        out = []
        for q in queries:
            if q.probe.in_scope:
                fact = q.case.fact()["text"]
                text = raw_answer_prompt(fact, q.probe.prompt)
                out.append((as_chat(text) if chat else text, Response("", True, fact)))
            else:
                out.append((base_prompt(q.probe.prompt) if chat else q.probe.prompt, Response("", False)))
        return out

    def answer(self, queries, max_new_tokens):
        routed = self._route(queries, chat=True)
        texts = self.backend.generate([p for p, _ in routed], max_new_tokens)
        return [Response(t, r.in_scope, r.fact) for t, (_, r) in zip(texts, routed)]

    def score(self, queries, continuations):
        routed = self._route(queries, chat=False)
        return self.backend.token_logprobs([p for p, _ in routed], continuations), [r for _, r in routed]


class SCRMethod(Method):
    """SCR as users run it: an Engine over a fresh knowledge base that holds the applied updates' facts."""

    def __init__(self, settings, backend, embedder_factory, scope_mode: str | None = None, name: str | None = None,
                 workdir: Path | None = None, answer_style: str | None = None):
        from scr.engine import Engine  # noqa: F401  (imported here to keep module import light)

        mode = scope_mode or settings.scope_mode
        if mode not in SCOPE_MODES:
            raise ValueError(f"unknown scope mode {mode!r} ({', '.join(SCOPE_MODES)})")
        self.scope_mode = mode
        self.name = name or f"scr-{mode}"
        self.settings = settings.model_copy(update={"scope_mode": mode,
                                                    "answer_style": answer_style or settings.answer_style})
        self.backend = backend
        self._embedder_factory = embedder_factory
        self._workdir = workdir
        self._tmp: str | None = None
        self.engine = None
        self._scope = None  # built once: it holds no knowledge-base state, and the encoder is slow to load

    def reset(self) -> None:
        self._close_engine()

    def _close_engine(self) -> None:
        if self.engine is not None:
            kb = self.engine._kb
            if kb is not None:
                kb.close()
            self.engine = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _open(self):
        from scr.engine import Engine

        if self.engine is None:
            if self._workdir is not None:
                self._workdir.mkdir(parents=True, exist_ok=True)
            self._tmp = tempfile.mkdtemp(prefix=f"{self.name}-kb-", dir=self._workdir)
            settings = self.settings.model_copy(update={"kb_dir": Path(self._tmp) / "kb", "store": "faiss"})
            if self._scope is None:
                from scr.scope import build_scope_checker

                self._scope = build_scope_checker(self.settings, self.backend, self._embedder_factory)
            self.engine = Engine(settings, backend=self.backend, embedder=self._embedder_factory(), scope=self._scope)
        return self.engine

    def apply(self, cases):
        report = self._open().add_facts([c.fact() for c in cases], find_conflicts=False)
        return {"facts_added": len(report.added), "duplicates": len(report.duplicates)}

    def answer(self, queries, max_new_tokens):
        engine = self._open()
        pipeline = engine.pipeline
        pipeline.max_new_tokens = max_new_tokens
        answers = pipeline.ask_batch([q.probe.prompt for q in queries])
        return [Response(a.answer, a.in_scope, context_text(a.facts) or None) for a in answers]

    def score(self, queries, continuations):
        # The pipeline's own retrieval and scope check; the prompt it would answer with, scored by teacher forcing.
        engine = self._open()
        pipeline = engine.pipeline
        questions = [q.probe.prompt for q in queries]
        # Multiple-choice items repeat one context per option: retrieve and decide once per distinct question.
        unique = list(dict.fromkeys(questions))
        decided = dict(zip(unique, zip(*pipeline.decide(unique))))
        prompts, responses = [], []
        for q in questions:
            hits, d = decided[q]
            if d.in_scope:
                fact = context_text(pipeline.context(hits, d))
                prompts.append(raw_answer_prompt(fact, q))
                responses.append(Response("", True, fact))
            else:
                prompts.append(q)
                responses.append(Response("", False))
        return self.backend.token_logprobs(prompts, continuations), responses

    def info(self):
        s = self.settings
        # These keys are part of the hash that lets a run resume: add to them, never rename them.
        info = {"method": self.name, "scope_mode": s.scope_mode, "k": s.k, "scope_threshold": s.scope_threshold,
                "embedder": s.embedder}
        if s.scope_mode in SUBJECT_RELATION_MODES:
            info.update(scope_check="subject-relation", scope_relation_threshold=s.scope_relation_threshold,
                        scope_other_subject_threshold=s.scope_other_subject_threshold)
            if s.scope_names:  # only when set, so that runs from before the name check keep their hash
                info.update(scope_names=True)
            if s.scope_name_conflicts:  # only when set, so that runs from before the rule keep their hash
                info.update(scope_name_conflicts=True, scope_name_threshold=NAME_THRESHOLD,
                            scope_other_name_threshold=OTHER_NAME_THRESHOLD)
            if s.scope_inverse:  # likewise
                info.update(scope_inverse=True)
        if s.scope_mode == "relation-encoder":
            info.update(scope_relation_band=s.scope_relation_band)
        if s.answer_style != "paper":  # only when set, so that earlier runs keep their hash
            info.update(answer_style=s.answer_style)
        if s.context_facts != 1:  # likewise
            info.update(context_facts=s.context_facts)
        if s.final_sentence_retry:  # likewise: runs from before the retry hash as they did
            info.update(scope_final_sentence=True)
            if s.answer_final_sentence:
                info.update(answer_final_sentence=True)
        if s.scope_mode in ("encoder", "relation-encoder"):
            path = s.scope_encoder or DEFAULT_ENCODER_PATH
            encoder = read_info(path)
            info.update(scope_encoder=str(s.scope_encoder or "shipped"),
                        scope_encoder_sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16],
                        scope_min_probability=s.scope_min_probability or encoder.threshold,
                        scope_encoder_trained_on=encoder.trained_on)
        return info

    def close(self):
        self._close_engine()


class EditingMethod(Method):
    """A parameter-editing comparator: ``scr.editing.make_editor`` on its own copy of the model."""

    shares_base_model = False

    def __init__(self, method: str, settings, edit_batch_size: int | None = None, overrides: dict | None = None,
                 log: Callable[[str], None] | None = None, prompt_format: str = "chat",
                 workdir: Path | None = None, journal_dir: Path | None = None):
        self.method = method
        self.name = method
        self.settings = settings
        self.edit_batch_size = edit_batch_size
        self.overrides = dict(overrides or {})
        from scr.editing.api import CODEBOOK_METHODS

        if method in CODEBOOK_METHODS:
            # A codebook keys the prompt as the evaluation will render it (chat for generated answers, raw text
            # for teacher forcing and log-likelihood scoring); one rendering costs half of keying both.
            self.overrides.setdefault("prompt_format", prompt_format)
        self.log = log  # progress of long edit streams (one line per edit batch), when given
        self.workdir = workdir  # where the edit stream is checkpointed after each batch (None: not at all)
        self.journal_dir = journal_dir  # where its target values are journalled, to commit (None: not at all)
        self._editor = None
        self._backend = None
        self._stream: list[str] = []  # the requests applied since the last reset, in order
        self._checkpoint = None
        self._journal = None

    def _load(self):
        if self._editor is None:
            from scr.editing import make_editor
            from scr.llm.hf import TransformersBackend
            from scr.models import load_causal_lm

            s = self.settings
            model, tokenizer = load_causal_lm(s.llm, device=s.device, dtype=s.dtype)
            self._editor = make_editor(self.method, model, tokenizer, **self.overrides)
            if self.workdir is not None and hasattr(self._editor, "value_cache"):
                from scr.editing.value_cache import TargetValueCache

                # Descents on the unedited model, shared with the run's other methods (value_cache.py).
                self._editor.value_cache = TargetValueCache(Path(self.workdir) / "target-values.jsonl")
            self._backend = TransformersBackend(model, tokenizer, name=f"{s.llm}+{self.method}",
                                                batch_size=s.batch_size)
        return self._editor

    def reset(self):
        if self._editor is not None and self._editor.n_edits:
            self._editor.restore()  # the backend notices the undo itself (weights written, codebook hook removed)
        self._stream = []

    def _stream_key(self) -> str:
        """What an edit stream's saved state depends on: the model and this method's configuration."""
        s = self.settings
        return json.dumps({"llm": s.llm, "dtype": s.dtype, "method": self.info()}, sort_keys=True, default=str)

    def checkpoint(self):
        """The edit-stream checkpoint in ``workdir``."""
        if self._checkpoint is None and self.workdir is not None:
            from scr.editing.checkpoint import EditCheckpoint

            self._checkpoint = EditCheckpoint(Path(self.workdir) / f"{self.name}-edits.pt", self._stream_key())
        return self._checkpoint

    def journal(self):
        """The journal of the stream's target values in ``journal_dir``, for the editors that have them."""
        if self._journal is None and self.journal_dir is not None and hasattr(self._load(), "replay"):
            from scr.evaluation.edit_journal import ValueJournal

            self._journal = ValueJournal(Path(self.journal_dir) / f"{self.name}.jsonl", self._stream_key())
        return self._journal

    def apply(self, cases):
        from scr.editing.checkpoint import request_key

        editor = self._load()
        requests = [c.edit_request() for c in cases]
        keys = [request_key(r) for r in requests]
        checkpoint = self.checkpoint()
        # An earlier process may have applied (part of) this stream already: load its state, skip its edits.
        skipped = checkpoint.covers(self._stream, keys) if checkpoint else 0
        seconds = 0.0
        if skipped:
            before = sum(r.seconds for r in editor.reports)
            checkpoint.load_into(editor, len(self._stream) + skipped)
            seconds = loaded_seconds = sum(r.seconds for r in editor.reports) - before  # their cost when made
            self._stream += keys[:skipped]
            if self.log:
                self.log(f"  {self.name}: {skipped}/{len(requests)} edits loaded from {checkpoint.path}")
        # Beyond the checkpoint, the journal may hold the next requests' target values: only their updates are redone.
        journal = self.journal()
        replayed = journal.covers(self._stream, keys[skipped:]) if journal else 0
        replay_seconds, journalled_seconds, journalled = 0.0, 0.0, []
        if replayed:
            journalled = journal.values(len(self._stream), replayed)
            editor.replay([(r, z, info) for r, (z, info, _) in zip(requests[skipped:], journalled)])
            if self.log:
                self.log(f"  {self.name}: replaying the target values of {replayed} edits from {journal.path}")
        size = self.edit_batch_size or len(requests) or 1
        made, made_seconds = 0, 0.0  # edits optimised in this process, for the time-left estimate
        reused = [0, 0.0, 0.0]  # descents another method made on the unedited model: count, wall and CPU seconds
        for start in range(skipped, len(requests), size):
            batch = requests[start : start + size]
            taken = editor.apply(batch).seconds
            count, wall, cpu = getattr(editor, "last_reused", (0, 0.0, 0.0))
            reused = [reused[0] + count, reused[1] + wall, reused[2] + cpu]
            taken += wall  # counted at what they cost when made, so seconds per edit compare across methods
            if start + len(batch) <= skipped + replayed:  # counted at what the edits cost when journalled
                replay_seconds += taken
                taken = sum(cost for _, _, cost in journalled[start - skipped : start - skipped + len(batch)])
                journalled_seconds += taken
            else:
                made, made_seconds = made + len(batch), made_seconds + taken
            seconds += taken
            self._stream += keys[start : start + size]
            if checkpoint:
                checkpoint.save(self._stream, editor)
            if journal:
                journal.extend(self._stream, editor.last_values, taken / len(batch))
            if self.log and len(requests) > size:
                done = min(start + size, len(requests))
                left = ""
                if made and done < len(requests):
                    left = f", about {_minutes(made_seconds / made * (len(requests) - done))} left"
                self.log(f"  {self.name}: {done}/{len(requests)} edits applied ({seconds:.0f} s{left})")
        self._backend.clear_prefix_cache()  # the edited model must not reuse the earlier model's prefix keys
        details = {"edits": len(requests), "edit_seconds": seconds, "seconds_per_edit": seconds / max(len(requests), 1)}
        if skipped:  # edit_seconds counts the loaded edits at what they cost when made
            details.update(loaded_from_checkpoint=skipped, loaded_seconds=loaded_seconds)
        if reused[0]:  # and the descents reused from the value cache (reused_seconds of edit_seconds)
            details.update(reused_descents=reused[0], reused_seconds=reused[1], reused_cpu_seconds=reused[2])
        if replayed:  # likewise the replayed ones (journalled_seconds); their replay took replay_seconds
            details.update(replayed_from_journal=replayed, journalled_seconds=journalled_seconds,
                           replay_seconds=replay_seconds)
        return details

    def answer(self, queries, max_new_tokens):
        self._load()
        texts = self._backend.generate([base_prompt(q.probe.prompt) for q in queries], max_new_tokens)
        return [Response(t) for t in texts]

    def score(self, queries, continuations):
        self._load()
        return self._backend.token_logprobs([q.probe.prompt for q in queries], continuations), [Response("")] * len(queries)

    def info(self):
        return {"method": self.name, "edit_batch_size": self.edit_batch_size, "overrides": self.overrides}

    def close(self):
        self.reset()


def counted_apply_seconds(wall: float, details: dict) -> float:
    """What an apply() call costs as reports count it: its wall time, plus the edits loaded from a checkpoint at
    what they cost when made, journal-replayed edits at their journalled seconds instead of their replay, and
    descents reused from the value cache at what they cost."""
    return (wall + details.get("loaded_seconds", 0.0) + details.get("journalled_seconds", 0.0)
            - details.get("replay_seconds", 0.0) + details.get("reused_seconds", 0.0))


def reused_cost(times: Sequence[dict]) -> tuple[float, float]:
    """Wall and CPU seconds of the descents that apply-time records reused from the value cache: what they cost
    when another method made them, added to a method's cost so that costs compare as if each made its own."""
    details = [t.get("details") or {} for t in times if t.get("phase") == "apply"]
    return (sum(d.get("reused_seconds", 0.0) for d in details), sum(d.get("reused_cpu_seconds", 0.0) for d in details))


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def make_method(name: str, settings, backend, embedder_factory, workdir: Path | None = None,
                edit_batch_size: int | None = None, editing: dict | None = None,
                log: Callable[[str], None] | None = None, prompt_format: str = "chat",
                journal_dir: Path | None = None) -> Method:
    """The method called ``name``; methods that leave the weights alone share ``backend`` (the memo).
    ``prompt_format``: how the evaluation renders prompts for an edited model ("chat": generated answers; "raw":
    teacher forcing and log-likelihood scoring), which a codebook method needs to know to key them.
    ``journal_dir``: where editing methods journal their streams' target values (edit_journal.py)."""
    kind, detail = kind_of(name)
    if kind == "base":
        m: Method = BaseMethod(backend)
    elif kind == "oracle":
        m = ContextOracle(backend)
    elif kind == "scr":
        mode, style = scr_variant(name)
        m = SCRMethod(settings, backend, embedder_factory, scope_mode=mode, workdir=workdir, answer_style=style)
    else:
        m = EditingMethod(detail, settings, edit_batch_size, editing, log, prompt_format, workdir, journal_dir)
    m.name = name
    return m


def method_names_valid(names: Sequence[str]) -> None:
    for name in names:
        kind_of(name)


def kind_of(name: str) -> tuple[str, str | None]:
    """("base"|"oracle"|"scr"|"edit", detail) for a method name; raises ValueError for unknown names."""
    n = name.strip().lower()
    if n == "base":
        return "base", None
    if n in ("context-oracle", "oracle"):
        return "oracle", None
    if n == "scr" or n.startswith("scr-"):
        variant = scr_variant(n)
        if variant is not None:
            return "scr", variant[0]
    edit = n[5:] if n.startswith("edit:") else n
    from scr.editing import METHODS  # noqa: WPS433

    if edit in METHODS:
        return "edit", edit
    raise ValueError(f"unknown method {name!r}: base, context-oracle, scr, scr-<{'|'.join(SCOPE_MODES)}>, "
                     f"either with -{' or -'.join(ANSWER_SUFFIXES)}, or an editing method ({', '.join(METHODS)})")


# SCR method names may end with an answer style: "scr-default-object-first", "scr-paper-answers".
ANSWER_SUFFIXES = {"object-first": "object-first", "paper-answers": "paper"}


def split_answer_style(name: str) -> tuple[str, str | None]:
    """An SCR method name without its answer-style suffix, and that style (None: the settings' own):
    "scr-default-object-first" -> ("scr-default", "object-first")."""
    n = name.strip().lower()
    for suffix, style in ANSWER_SUFFIXES.items():
        if n.startswith("scr") and n.endswith(f"-{suffix}"):
            return n[: -len(suffix) - 1], style
    return n, None


def scr_variant(name: str) -> tuple[str | None, str | None] | None:
    """(scope mode, answer style) of an SCR method name (None: the settings' own), or None if it is not one."""
    n, style = split_answer_style(name)
    if n == "scr":
        return None, style
    if n.startswith("scr-") and n[4:] in SCOPE_MODES:
        return n[4:], style
    return None
