"""The library API: one object that the CLI, the HTTP API and the evaluator all use.

Models load lazily, so knowledge-base commands that neither embed nor generate stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from scr.config import Settings
from scr.conflicts import find_conflicts as conflicts_with
from scr.kb import Fact, FactInput, IngestReport, KnowledgeBase, parse_file
from scr.kb.embed import Embedder
from scr.kb.ingest import IngestError
from scr.llm import LLMBackend, make_backend
from scr.models import set_offline_env
from scr.pipeline import Answer, SCRPipeline
from scr.scope import (SUBJECT_RELATION_MODES, ScopeChecker, SubjectRelationScope, build_scope_checker,
                       make_scope_checker)


class Engine:
    def __init__(self, settings: Settings | None = None, backend: LLMBackend | None = None,
                 embedder: Embedder | None = None, scope: ScopeChecker | None = None):
        set_offline_env()
        self.settings = settings or Settings()
        self._backend = backend
        self._embedder = embedder
        self._scope = scope
        self._kb: KnowledgeBase | None = None

    # Lazily built parts ----------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.settings.embedder, device=self.settings.device)
        return self._embedder

    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            self._backend = make_backend(self.settings)
        return self._backend

    def kb(self, create: bool = False) -> KnowledgeBase:
        if self._kb is None:
            s = self.settings
            self._kb = KnowledgeBase(s.kb_dir, embedder=lambda: self.embedder, embedder_name=s.embedder,
                                     store=s.store, chroma_url=s.chroma_url, create=create)
        return self._kb

    @property
    def scope(self) -> ScopeChecker:
        """The scope check of the settings' mode, built once (the encoder mode loads the scope encoder)."""
        if self._scope is None:
            self._scope = build_scope_checker(self.settings, lambda: self.backend, lambda: self.embedder)
        return self._scope

    @property
    def pipeline(self) -> SCRPipeline:
        s = self.settings
        return SCRPipeline(self.kb(create=True), self.backend, self.scope, k=s.k, max_new_tokens=s.max_new_tokens,
                           max_question_chars=s.max_question_chars, answer_style=s.answer_style,
                           context_facts=s.context_facts, scope_final_sentence=s.final_sentence_retry,
                           answer_final_sentence=s.answer_final_sentence,
                           retry_names=s.scope_names and s.scope_mode in SUBJECT_RELATION_MODES,
                           name_match=s.scope_name_match,
                           inverse=s.scope_inverse and s.scope_mode in SUBJECT_RELATION_MODES)

    # Knowledge base ----------------------------------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path], skip_invalid: bool = False, progress=None,
               documents: str = "sentences", find_conflicts: bool = True) -> IngestReport:
        """Parse every file first (all or nothing unless skip_invalid), then store them in one write.

        ``documents``: how .txt/.md documents become facts, "sentences" or "atomic" (LLM-extracted facts,
        scr/kb/extract.py); extraction also happens before the one write. ``find_conflicts``: see ``add_facts``.
        """
        from scr.kb.extract import extract_documents

        facts: list[FactInput] = []
        errors: list[str] = []
        parsed_files = [parse_file(path, skip_invalid=skip_invalid) for path in paths]
        for parsed in extract_documents(parsed_files, documents, lambda: self.backend, progress):
            facts.extend(parsed.facts)
            errors.extend(parsed.errors)
        if not facts:
            if errors:
                raise IngestError("no valid facts: " + "; ".join(errors[:5]))
            raise IngestError("no facts found in " + ", ".join(map(str, paths)))
        report = self.add_facts(facts, progress=progress, find_conflicts=find_conflicts)
        report.errors = errors
        return report

    def add_facts(self, facts: Iterable[FactInput | dict], progress=None, find_conflicts: bool = True) -> IngestReport:
        """Store facts (all or nothing). With ``find_conflicts``, the report lists the active facts that the new
        ones may contradict (same subject, another object, and questions cannot tell them apart:
        scr/conflicts.py); nothing is retired for it."""
        records = [f if isinstance(f, FactInput) else FactInput(**f) for f in facts]
        kb = self.kb(create=True)
        report = kb.add(records, progress=progress)
        if find_conflicts and report.added:
            report.conflicts = self.conflicts(report.added)
        return report

    def conflicts(self, facts: Sequence[Fact] | None = None) -> list[tuple[str, str]]:
        """(fact id, active id) pairs that may contradict each other (scr/conflicts.py): for ``facts``, or for
        every active fact (each pair once)."""
        kb = self.kb()
        pairs = conflicts_with(kb, kb.list() if facts is None else facts, self.relation_check)
        return [(c.fact_id, c.other_id) for c in pairs]

    @property
    def relation_check(self) -> SubjectRelationScope:
        """The subject-relation scope check with the settings' thresholds, whatever the answering scope mode: it
        needs no LLM, and it is the test ``find_conflicts`` applies."""
        s = self.settings
        return make_scope_checker("subject-relation", None, s.scope_threshold, embed=self.embedder.embed,
                                  relation_threshold=s.scope_relation_threshold,
                                  other_subject_threshold=s.scope_other_subject_threshold, names=s.scope_names,
                                  name_conflicts=s.scope_name_conflicts, name_match=s.scope_name_match)

    def retract(self, fact_id: str, reason: str | None = None):
        return self.kb().retract(fact_id, reason)

    def restore(self, fact_id: str, reason: str | None = None):
        return self.kb().restore(fact_id, reason)

    def supersede(self, fact_id: str, new: FactInput | dict) -> IngestReport:
        return self.kb().supersede(fact_id, new if isinstance(new, FactInput) else FactInput(**new))

    def search(self, query: str, k: int | None = None):
        return self.kb().search([query], self.settings.k if k is None else k)[0]

    # Questions ------------------------------------------------------------------------------------------
    def ask(self, question: str) -> Answer:
        return self.pipeline.ask(question)

    def ask_batch(self, questions: Sequence[str]) -> list[Answer]:
        return self.pipeline.ask_batch(questions)

    def ask_multihop(self, question: str, max_hops: int = 4, decompose: str = "walk"):
        """Answer a question that chains several facts, retrieving and answering hop by hop (scr/multihop.py)."""
        return self.pipeline.ask_multihop(question, max_hops, decompose)

    def ask_multihop_batch(self, questions: Sequence[str], max_hops: int = 4, decompose: str = "walk"):
        return self.pipeline.ask_multihop_batch(questions, max_hops, decompose)

    def base_answers(self, questions: Sequence[str]) -> list[str]:
        """The unmodified model's answers, for comparison."""
        from scr.pipeline import base_prompt, check_questions

        checked = check_questions(questions, self.settings.max_question_chars)
        return self.backend.generate([base_prompt(q) for q in checked], self.settings.max_new_tokens)

    def close(self) -> None:
        if self._kb is not None:
            self._kb.close()
        if self._backend is not None:
            self._backend.close()
