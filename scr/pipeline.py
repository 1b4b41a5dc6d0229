"""SCR: retrieve the top-k facts, decide scope, answer with the chosen fact in context (or as before)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

from pydantic import BaseModel, Field

from scr import prompts
from scr.inverse import InverseScope
from scr.kb.records import FactHit, fact_object
from scr.kb.store import KnowledgeBase
from scr.llm.base import LLMBackend, as_chat
from scr.scope import ScopeChecker, ScopeDecision, final_sentence, shares_a_name

ANSWER_STYLES = ("paper", "object-first")


class QuestionError(ValueError):
    pass


class Answer(BaseModel):
    question: str
    answer: str
    in_scope: bool
    facts: list[FactHit] = Field(default_factory=list, description="the fact(s) used for the answer")
    candidates: list[FactHit] = Field(default_factory=list, description="the facts retrieved")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage (of the batch call)")
    scope_output: str | None = None
    scoped_on: str | None = Field(None, description="the question's last sentence, when the scope check found the fact "
                                                    "through it alone (the whole question found none)")


def check_questions(questions: Sequence[str], max_chars: int) -> list[str]:
    """Reject empty, oversized or non-text questions with a message naming the problem."""
    if isinstance(questions, str):
        raise QuestionError("expected a list of questions, got a single string")
    checked = []
    for n, q in enumerate(questions):
        where = f"question {n + 1}" if len(questions) > 1 else "question"
        if not isinstance(q, str):
            raise QuestionError(f"{where} must be text, got {type(q).__name__}")
        if not q.strip():
            raise QuestionError(f"{where} is empty")
        if len(q) > max_chars:
            raise QuestionError(f"{where} is {len(q)} characters long; the limit is {max_chars}")
        checked.append(q.strip())
    return checked


def context_text(facts: Sequence[FactHit]) -> str:
    """The facts an answer reads, as the one passage its prompt holds (and the evaluator records)."""
    return " ".join(f.text for f in facts)


def base_prompt(question: str):
    """How the unmodified model is asked: the question alone, in its chat template."""
    return as_chat(question)


class SCRPipeline:
    def __init__(self, kb: KnowledgeBase, backend: LLMBackend, scope: ScopeChecker, k: int = 5,
                 max_new_tokens: int = 48, max_question_chars: int = 4000, answer_style: str = "object-first",
                 context_facts: int = 1, scope_final_sentence: bool = True, answer_final_sentence: bool = True,
                 retry_names: bool = False, name_match: str = "whole-name", inverse: bool = False):
        if answer_style not in ANSWER_STYLES:
            raise ValueError(f"unknown answer style {answer_style!r} ({', '.join(ANSWER_STYLES)})")
        if context_facts < 1:
            raise ValueError(f"context_facts must be at least 1, got {context_facts}")
        self.kb = kb
        self.backend = backend
        self.scope = scope
        self.k = k
        self.max_new_tokens = max_new_tokens
        self.max_question_chars = max_question_chars
        self.answer_style = answer_style
        self.context_facts = context_facts
        self.scope_final_sentence = scope_final_sentence
        self.answer_final_sentence = answer_final_sentence
        self.retry_names = retry_names
        self.name_match = name_match
        # Questions no fact answers are tried as inverse questions of the facts whose object they name
        # (scr/inverse.py); only with a scope check that compares subjects and relations.
        self.inverse = InverseScope() if inverse else None

    def ask(self, question: str) -> Answer:
        return self.ask_batch([question])[0]

    def ask_multihop(self, question: str, max_hops: int = 4, decompose: str = "walk"):
        """A multi-hop question, hop by hop over the knowledge base (scr/multihop.py): a ``MultiHopAnswer``."""
        return self.ask_multihop_batch([question], max_hops, decompose)[0]

    def ask_multihop_batch(self, questions: Sequence[str], max_hops: int = 4, decompose: str = "walk"):
        from scr.multihop import MultiHopReasoner  # imported here: scr.multihop builds on this module

        return MultiHopReasoner(self, max_hops=max_hops, decompose=decompose).ask_batch(questions)

    def context(self, hits: list[FactHit], decision: ScopeDecision) -> list[FactHit]:
        """The facts the answer reads: the chosen one, then up to ``context_facts - 1`` others that passed the scope
        check, best first. A question asking exactly one fact's relation reads that fact alone."""
        if decision.asks_object or decision.answers_subject:
            return [hits[decision.fact_index]]
        return [hits[i] for i in (decision.fact_index, *decision.others)][: self.context_facts]

    def answer_prompt(self, question: str, facts: list[FactHit], decision: ScopeDecision):
        """The paper's prompt with the fact(s) in context. In the object-first style, when the question asks exactly
        the fact's relation about its subject, the answer starts with the fact's object and the model goes on
        from there (a small model reading a fact often restates the question instead of answering it); when it
        asks the fact backwards (``answers_subject``), with the fact's subject."""
        chat = as_chat(prompts.paper_answer(context_text(facts), question))
        start = None
        if self.answer_style == "object-first":
            start = (fact_object(facts[0]) if decision.asks_object
                     else facts[0].subject if decision.answers_subject else None)
        return chat + [{"role": "assistant", "content": start}] if start else chat

    def asked(self, question: str, decision: ScopeDecision) -> str:
        """What an in-scope answer is asked: the whole question, or, where the scope check found the fact through
        its last sentence alone, that sentence (``answer_final_sentence``): the text before it, which the fact does
        not concern, pulls a small model's answer away from the fact (evals/results/docter_dev)."""
        return decision.question if self.answer_final_sentence and decision.question else question

    def decide(self, questions: Sequence[str], candidates: list[list[FactHit]] | None = None
               ) -> tuple[list[list[FactHit]], list[ScopeDecision]]:
        """Each question's candidate facts (retrieved unless given) and its scope decision. A question that no fact
        answers and whose last sentence follows other text is tried again on that sentence alone
        (``final_sentence``): the text before it dilutes its similarity to every fact. Such a decision carries
        that sentence (``ScopeDecision.question``). With ``retry_names``, a fact stored without a subject takes
        part in the retry only if it names what the whole question names (``shares_a_name``): "Where is Vision
        Australia? It is located in" must not take "it may be located in another state" through its last sentence,
        which names nothing (evals/results/docter_scale). With ``inverse``, a question still out of scope is tried
        as an inverse question of the facts whose object it names (scr/inverse.py)."""
        candidates = list(candidates) if candidates is not None else self.kb.search(questions, self.k)
        decisions = self.scope.decide(questions, candidates)
        if self.scope_final_sentence:
            retry = [(n, last) for n, (q, d) in enumerate(zip(questions, decisions))
                     if not d.in_scope and (last := final_sentence(q))]
            if retry:
                lasts = [last for _, last in retry]
                found = self.kb.search(lasts, self.k)
                if self.retry_names:
                    found = [[h for h in hits if h.subject or shares_a_name(questions[n], h.text, self.name_match)]
                             for (n, _), hits in zip(retry, found)]
                for (n, last), hits, decision in zip(retry, found, self.scope.decide(lasts, found)):
                    if decision.in_scope:
                        candidates[n], decisions[n] = hits, replace(decision, question=last)
        if self.inverse is not None:
            todo = [n for n, d in enumerate(decisions) if not d.in_scope]
            if todo:
                found = self.kb.objects_named_in([questions[n] for n in todo])
                for n, hits, decision in zip(todo, found, self.inverse.decide([questions[n] for n in todo], found)):
                    if decision.in_scope:
                        candidates[n], decisions[n] = hits, decision
        return candidates, decisions

    def ask_batch(self, questions: Sequence[str]) -> list[Answer]:
        questions = check_questions(questions, self.max_question_chars)
        if not questions:
            return []
        t0 = time.perf_counter()
        candidates = self.kb.search(questions, self.k)
        t1 = time.perf_counter()
        candidates, decisions = self.decide(questions, candidates)  # retries on a last sentence count as scope time
        t2 = time.perf_counter()
        in_scope = [n for n, d in enumerate(decisions) if d.in_scope]
        out_scope = [n for n, d in enumerate(decisions) if not d.in_scope]
        answers = [""] * len(questions)
        # Out-of-scope questions go to the model exactly as the unmodified model gets them; they are
        # generated in their own call so that their batch holds nothing but plain questions.
        if out_scope:
            texts = self.backend.generate([base_prompt(questions[n]) for n in out_scope], self.max_new_tokens)
            for n, text in zip(out_scope, texts):
                answers[n] = text
        used = {n: self.context(candidates[n], decisions[n]) for n in in_scope}
        if in_scope:
            chats = [self.answer_prompt(self.asked(questions[n], decisions[n]), used[n], decisions[n])
                     for n in in_scope]
            for n, text in zip(in_scope, self.backend.generate(chats, self.max_new_tokens)):
                answers[n] = text
        t3 = time.perf_counter()
        timings = {"retrieve_s": t1 - t0, "scope_s": t2 - t1, "answer_s": t3 - t2, "total_s": t3 - t0}
        return [
            Answer(question=q, answer=answers[n], in_scope=decisions[n].in_scope,
                   facts=used.get(n, []),
                   candidates=candidates[n], timings=timings, scope_output=decisions[n].raw,
                   scoped_on=decisions[n].question)
            for n, q in enumerate(questions)
        ]
