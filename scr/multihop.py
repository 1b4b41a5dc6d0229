"""Multi-hop questions over the knowledge base: decompose, retrieve and answer hop by hop, then answer the whole.

A multi-hop question ("What is the official language of the country of citizenship of the performer of Hey
Jude?") is rarely close to any single stored fact, so one retrieval misses most of the facts it depends on. The
reasoner walks the chain instead, MeLLo-style:

  0. with ``decompose="walk"`` (the default), the knowledge base's own links come first: the walk starts from a
     stored fact whose subject the question names ("Hey Jude was performed by Madonna.") and goes on from each
     fact's object to a stored fact about it ("The director of Madonna is ..."), choosing at each link the fact
     whose relation the question asks most (``link_score``), as long as the question uses a word of that link's
     relation or the chain with the link stays as like the question as without it (``walk_on``: what stops a
     walk at the links the question asks for). No sub-question is written, so a small model's weak
     decomposition cannot break a chain the knowledge base holds. Where the walk stops, the steps below take
     over from the entity it reached; a walk of one link is a single-hop question, which the normal scope
     check must accept;
  1. next sub-question: the LLM continues a transcript of the question and the sub-questions and answers so far
     (``decompose="llm"``), or a rule reads the nested "the R of the R of E" phrasing (``decompose="rules"``,
     also the fallback when the LLM writes nothing usable);
  2. the normal SCR pipeline on the sub-question: retrieve the top-k facts, scope check, answer with the chosen
     fact in context, or exactly as the unmodified model would when no stored fact applies. Where the pipeline
     runs the default subject-relation check, hops use its key-similarity gate alone (same threshold): a
     sub-question is written by the reasoner around an entity the chain already reached, in the reasoner's
     own wording ("What is the performer of Hey Jude?" for "Hey Jude was performed by ..."), and the
     relation-wording test, calibrated on questions people ask, rejects 19% of MQuAKE-hard's own single-hop
     questions against their facts (evals/results/scope_relation.md), each of which breaks a chain;
  3. repeat until the LLM writes "Final answer" (or the rules run out), at most ``max_hops`` times; the LLM is
     not offered the stop while the chain is still inside the knowledge base (the last hop's fact has an object
     that another stored fact is about), because a small model stops after a hop or two whatever the question;
  4. answer the whole question with every gathered fact in context. When no hop found a stored fact, the
     question is asked as the unmodified model gets it, so questions the knowledge base does not touch keep
     their old answers, as in single-hop SCR. In the object-first answer style, an answer whose chain ended on
     a walked fact starts with that fact's object (a small model reading four facts often answers with one
     from the middle of the chain).

Every step runs for all unfinished questions in one batch call (the in-process backend generates lists); greedy
decoding makes the result deterministic.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Literal, Sequence

from pydantic import BaseModel, Field

from scr import prompts
from scr.kb.records import FactHit, fact_object
from scr.llm.base import as_chat
from scr.pipeline import SCRPipeline, base_prompt, check_questions
from scr.scope import ScopeChecker, SimilarityScope, SubjectRelationScope, relation_wording, relation_words

Decompose = Literal["walk", "llm", "rules"]
DECOMPOSE_MODES = ("walk", "llm", "rules")
MAX_SUBQUESTION_CHARS = 300
# How much a link past the first that shares no word with the question may cost the chain's likeness to it and
# still be walked (``walk_on``). Chosen on MQuAKE-hard cases 0-214 (python evals/multihop_walk.py,
# evals/results/multihop_walk.md): the most exact 4-link walks while at most 1% of single-hop questions walk past
# their one link.
WALK_TOLERANCE = 0.01


class Hop(BaseModel):
    question: str = Field(description="the sub-question")
    answer: str = Field(description="the model's answer to it (with the fact in context when in scope)")
    entity: str = Field(description="what the next hop asks about: the fact's object when in scope and known, "
                                    "else the first line of the answer")
    in_scope: bool
    fact: FactHit | None = Field(None, description="the fact used for the answer")
    candidates: list[FactHit] = Field(default_factory=list, description="the facts retrieved")
    written_by: Literal["llm", "rules", "kb"] = Field(
        description="who wrote the sub-question: the LLM, the rules, or nobody (kb: a stored link, walked)")


class MultiHopAnswer(BaseModel):
    question: str
    answer: str
    hops: list[Hop] = Field(default_factory=list)
    stop: Literal["final", "max_hops", "rules_done", "no_question"] = Field(
        description="why the hop loop ended: the LLM wrote 'Final answer', the hop bound was reached, the rule "
                    "chain was used up, or no usable sub-question could be written")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage (of the batch call)")

    @property
    def facts(self) -> list[FactHit]:
        """The distinct stored facts used along the way, in hop order."""
        seen, out = set(), []
        for hop in self.hops:
            if hop.fact is not None and hop.fact.id not in seen:
                seen.add(hop.fact.id)
                out.append(hop.fact)
        return out

    @property
    def in_scope(self) -> bool:
        return any(h.in_scope for h in self.hops)


# ----- rule-based decomposition ---------------------------------------------------------------------------------
_WH = re.compile(r"^\s*(?:what|which|who|whom|where)\b(?:\s+[\w/-]+)?\s+(?:is|are|was|were)\s+", re.I)
_POSSESSIVE = re.compile(r"^(?P<owner>.+?)'s (?P<rel>[a-z][a-z /-]*)$")
# A relation or entity holding a clause ("the country where X was born") is not a plain nominal chain.
_CLAUSE = re.compile(r"\b(?:where|that|who|which|whose|is|are|was|were|has|have|does|did|in|to|by|with)\b", re.I)


def rule_chain(question: str) -> tuple[list[str], str] | None:
    """(relations innermost first, entity) of a nested "the R1 of the R2 of ... E" question, else None.

    "What is the official language of the country of citizenship of the performer of Hey Jude?" ->
    (["performer", "country of citizenship", "official language"], "Hey Jude"). Relations are split at
    " of the " so that relation names holding "of" ("country of citizenship", "head of state") stay whole; the
    entity is the first part after an " of " that starts with a capital letter, a digit or a quote, so that
    entity names holding "of" ("Bank of America") stay whole too. A trailing possessive ("X's performer")
    reads as "the performer of X".
    """
    match = _WH.match(question)
    if not match:
        return None
    phrase = question[match.end():].strip().rstrip("?").strip()
    phrase = re.sub(r"^the\s+", "", phrase, flags=re.I)
    owner = _POSSESSIVE.match(phrase.rsplit(" of ", 1)[-1])
    if owner:  # "... of X's rel" -> "... of the rel of X"
        head = phrase.rsplit(" of ", 1)[0] + " of the " if " of " in phrase else ""
        phrase = f"{head}{owner['rel']} of {owner['owner']}"
    parts = phrase.split(" of the ")
    last = parts.pop()
    cut = [m.start() for m in re.finditer(r" of ", last) if re.match(r"[\"'A-Z0-9]", last[m.end():])]
    if not cut:
        return None
    relation, entity = last[: cut[0]], last[cut[0] + 4:].strip().strip("\"'")
    relations = [r.strip() for r in parts + [relation]]
    if not entity or _CLAUSE.search(entity) or any(not r or len(r.split()) > 6 or _CLAUSE.search(r)
                                                    for r in relations):
        return None
    return relations[::-1], entity


def rule_question(relation: str, entity: str) -> str:
    return f"What is the {relation} of {entity}?"


# ----- parsing the LLM's continuation ----------------------------------------------------------------------------
def parse_step(output: str) -> tuple[Literal["final", "question", "bad"], str]:
    """What the decomposition transcript's continuation says: a final answer, a sub-question, or nothing usable."""
    line = output.strip().split("\n", 1)[0].strip()
    if line.lower().startswith(prompts.MULTIHOP_FINAL_MARK):
        return "final", line.split(":", 1)[-1].strip()
    if line.lower().startswith("subquestion:"):
        line = line.split(":", 1)[1].strip()
    elif not line.endswith("?"):
        return "bad", line
    if len(line.split()) < 2 or len(line) > MAX_SUBQUESTION_CHARS:
        return "bad", line
    return "question", line


def short_answer(answer: str) -> str:
    """The first line of an answer, without a trailing period: what the transcript carries forward."""
    line = answer.strip().split("\n", 1)[0].strip().rstrip(".").strip()
    return line[:200]


# ----- the reasoner ----------------------------------------------------------------------------------------------------
@dataclass(eq=False)  # compared and hashed by identity: states key the walk's dicts
class _State:
    question: str
    hops: list[Hop] = field(default_factory=list)
    done: bool = False
    stop: str = "max_hops"
    chain: tuple[list[str], str] | None = None
    walking: bool = True  # the walk over stored links goes on (decompose="walk"); once it stops, it stays stopped


def link_score(question: str, hit: FactHit, question_vector, relation_vector) -> tuple[float, float]:
    """How much the question asks the fact's relation: the share of the relation's content words that the
    question uses, then the cosine of its relation wording to the question. Words first: "capital" in the
    question decides between "The capital of Australia is ..." and "Australia is located in the continent of
    ...", where MiniLM's cosine prefers the continent to "country" (MQuAKE-hard, choosing links this way with
    no stop rule: 95.5% of questions walk their case's exact chain, evals/results/multihop_walk.md, tolerance
    1.0; by the cosine alone 88.3%, in a diagnostic run by hand on 2026-12-05, not committed)."""
    words = relation_words(hit.key or hit.text, hit.subject or "")
    share = len(words & relation_words(question, hit.subject or "")) / len(words) if words else 0.0
    return share, float(question_vector @ relation_vector)


def chain_text(facts: list[FactHit], extra: FactHit | None = None) -> str:
    """What a chain of links asks about, in words: its first subject, then each link's relation wording ("Hey Jude
    was performed by ; The director of is"), optionally with one more link."""
    facts = facts + ([extra] if extra is not None else [])
    return f"{facts[0].subject} " + " ; ".join(relation_wording(f.key or f.text, f.subject or "") for f in facts)


def walk_on(question_vector, before_vector, after_vector, tolerance: float = WALK_TOLERANCE) -> bool:
    """Does the next link belong to the question's chain? Only if the chain with it is about as like the question
    as the chain without it (cosine, within ``tolerance``): a link the question asks for adds words it uses, one
    it does not ask for ("Oderzo is twinned with Zagreb" after "the capital of ...") dilutes the chain. With the
    shared-word rule alone, 75% of MQuAKE-hard's single-hop questions walk on past their one link; with this
    too, 0.8% (evals/results/multihop_walk.md)."""
    return float(question_vector @ after_vector) - float(question_vector @ before_vector) > -tolerance


def hop_scope(scope: ScopeChecker) -> ScopeChecker:
    """The scope check for sub-questions: the key-similarity gate of a subject-relation check (module docstring)."""
    return SimilarityScope(scope.threshold) if isinstance(scope, SubjectRelationScope) else scope


class MultiHopReasoner:
    """Iterated retrieval and reasoning over an :class:`SCRPipeline` (its knowledge base, scope check, backend)."""

    def __init__(self, pipeline: SCRPipeline, max_hops: int = 4, decompose: Decompose = "walk",
                 step_tokens: int = 24, answer_tokens: int | None = None, walk_tolerance: float = WALK_TOLERANCE):
        if max_hops < 1:
            raise ValueError(f"max_hops must be at least 1, got {max_hops}")
        if decompose not in DECOMPOSE_MODES:
            raise ValueError(f"unknown decomposition {decompose!r} (choose from {', '.join(DECOMPOSE_MODES)})")
        self.pipeline = pipeline
        self.hops = SCRPipeline(pipeline.kb, pipeline.backend, hop_scope(pipeline.scope), pipeline.k,
                                pipeline.max_new_tokens, pipeline.max_question_chars,
                                scope_final_sentence=pipeline.scope_final_sentence,
                                answer_final_sentence=pipeline.answer_final_sentence,
                                retry_names=pipeline.retry_names, name_match=pipeline.name_match)
        self.max_hops = max_hops
        self.decompose = decompose
        self.walk_tolerance = walk_tolerance
        # A sub-question is one short line; a longer continuation is cut at its first line break anyway, and a
        # "sub-question" that does not fit in 24 tokens is nearly always the whole question restated.
        self.step_tokens = step_tokens
        self.answer_tokens = answer_tokens or pipeline.max_new_tokens

    def ask(self, question: str) -> MultiHopAnswer:
        return self.ask_batch([question])[0]

    def walk(self, questions: Sequence[str]) -> list[list[FactHit]]:
        """The stored links each question's walk takes, and nothing else: no LLM call (what the walk alone
        decides; evals/multihop_walk.py measures it)."""
        states = [_State(q) for q in check_questions(questions, self.pipeline.max_question_chars)]
        for _ in range(self.max_hops):
            walked = self._walk(states)
            if not walked:
                break
            for s, (hit, candidates) in walked.items():
                s.hops.append(self._walked_hop(hit, candidates))
        self._keep_single_link([s for s in states if s.walking])
        return [[h.fact for h in s.hops] for s in states]

    def ask_batch(self, questions: Sequence[str]) -> list[MultiHopAnswer]:
        questions = check_questions(questions, self.pipeline.max_question_chars)
        states = [_State(q, chain=rule_chain(q)) for q in questions]
        timings = {"decompose_s": 0.0, "hops_s": 0.0, "answer_s": 0.0}
        t_start = time.perf_counter()
        for step in range(self.max_hops):
            active = [s for s in states if not s.done]
            if not active:
                break
            t0 = time.perf_counter()
            if self.decompose == "walk":
                walked = self._walk(active)
                for s, (hit, candidates) in walked.items():
                    s.hops.append(self._walked_hop(hit, candidates))
                active = [s for s in active if s not in walked]
            planned = self._next_questions(active, step) if active else []
            t1 = time.perf_counter()
            asked = [(s, q, who) for s, (q, who) in zip(active, planned) if q is not None]
            if asked:
                answers = self.hops.ask_batch([q for _, q, _ in asked])
                for (s, q, who), a in zip(asked, answers):
                    fact = a.facts[0] if a.facts else None
                    entity = (fact_object(fact) if fact is not None else None) or short_answer(a.answer)
                    s.hops.append(Hop(question=q, answer=a.answer, entity=entity, in_scope=a.in_scope, fact=fact,
                                      candidates=a.candidates, written_by=who))
            timings["decompose_s"] += t1 - t0
            timings["hops_s"] += time.perf_counter() - t1
        self._keep_single_link([s for s in states if s.walking])  # the hop bound stopped a walk of one link
        t2 = time.perf_counter()
        finals = self._final_answers(states)
        timings["answer_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t_start
        return [MultiHopAnswer(question=s.question, answer=a, hops=s.hops, stop=s.stop, timings=timings)
                for s, a in zip(states, finals)]

    # -- steps ---------------------------------------------------------------------------------------------------
    def _walk(self, active: list[_State]) -> dict[_State, tuple[FactHit, list[FactHit]]]:
        """The next stored link of each question still walking, with the facts it was chosen from: a fact whose
        subject the question names (first link; the longest name wins, "Hey Jude" over "Jude"), then a fact about
        the last link's object that the question asks for (a word of its relation, or ``walk_on``). A question
        without one stops walking; a walk that stopped after one link gives it up unless the scope check accepts
        it (``_keep_single_link``)."""
        walking = [s for s in active if s.walking]
        if not walking:
            return {}
        kb = self.pipeline.kb
        vectors = kb.embedder.embed([s.question for s in walking])
        at = {id(s): n for n, s in enumerate(walking)}
        starts = [s for s in walking if not s.hops]
        going = [s for s in walking if s.hops]
        found = dict(zip(starts, kb.named_in([s.question for s in starts], vectors[[at[id(s)] for s in starts]])))
        found.update(zip(going, kb.about([s.hops[-1].entity for s in going], vectors[[at[id(s)] for s in going]])))
        relation_vectors = self._embed_once([relation_wording(h.key or h.text, h.subject or "")
                                             for hits in found.values() for h in hits])
        chosen = {}
        for s, hits in found.items():
            used = {h.fact.id for h in s.hops if h.fact is not None}
            hits = [h for h in hits if h.id not in used and fact_object(h)]
            if hits and not s.hops:  # facts about the longest subject the question names
                hits = [h for h in hits if len(h.subject) == len(hits[0].subject)]
            if hits:
                vector = vectors[at[id(s)]]
                scored = [(link_score(s.question, h, vector, relation_vectors[
                    relation_wording(h.key or h.text, h.subject or "")]), h) for h in hits]
                score, best = max(scored, key=lambda pair: pair[0])
                chosen[s] = (best, hits, score[0] > 0)
        # Past the first link, a link is walked only if the question asks for it: it uses a word of the link's
        # relation, or the chain stays as like the question with the link as without it (module docstring).
        unsure = [s for s in chosen if s.hops and not chosen[s][2]]
        paths = self._embed_once([chain_text([h.fact for h in s.hops], extra) for s in unsure
                                  for extra in (None, chosen[s][0])])
        out = {}
        for s in walking:
            if s in chosen and (not s.hops or chosen[s][2] or walk_on(
                    vectors[at[id(s)]], paths[chain_text([h.fact for h in s.hops])],
                    paths[chain_text([h.fact for h in s.hops], chosen[s][0])], self.walk_tolerance)):
                out[s] = chosen[s][:2]
            else:
                s.walking = False
        self._keep_single_link([s for s in walking if not s.walking])
        return out

    @staticmethod
    def _walked_hop(hit: FactHit, candidates: list[FactHit]) -> Hop:
        return Hop(question=f"{hit.key or hit.text}?", answer=hit.text, entity=fact_object(hit), in_scope=True,
                   fact=hit, candidates=candidates, written_by="kb")

    def _keep_single_link(self, stopped: list[_State]) -> None:
        """A walk that ended at its first link took a fact about a subject the question names, whatever the
        question asks about it ("When was Hey Jude released?" is not answered by "Hey Jude was performed by
        Madonna."). Such a question is a single-hop one, so the single-hop scope check decides: a link it
        rejects is given up, and the LLM's sub-questions start from the question itself."""
        single = [s for s in stopped if len(s.hops) == 1 and s.hops[0].written_by == "kb"]
        if not single:
            return
        decisions = self.pipeline.scope.decide([s.question for s in single], [[s.hops[0].fact] for s in single])
        for s, decision in zip(single, decisions):
            if not decision.in_scope:
                s.hops.clear()

    def _embed_once(self, texts: list[str]) -> dict[str, "np.ndarray"]:
        distinct = list(dict.fromkeys(texts))
        return dict(zip(distinct, self.pipeline.kb.embedder.embed(distinct))) if distinct else {}

    def _next_questions(self, active: list[_State], step: int) -> list[tuple[str | None, str]]:
        """The next sub-question of each active question (None where it is finished), and who wrote it."""
        if self.decompose in ("llm", "walk"):
            # After a walk the stored links are used up where it stopped, so the model may stop there.
            inside = {id(s) for s in self._inside_kb(active)} if self.decompose == "llm" else set()
            # Where the chain is still inside the knowledge base the transcript ends in "Subquestion:", so the
            # model must go on; elsewhere it may write "Final answer:" and stop.
            transcripts = [prompts.multihop_decompose(s.question, [(h.question, h.entity) for h in s.hops])
                           + (prompts.MULTIHOP_NEXT if id(s) in inside else "") for s in active]
            outputs = self.pipeline.backend.generate(transcripts, self.step_tokens)
            outputs = [prompts.MULTIHOP_NEXT + o if id(s) in inside else o for s, o in zip(active, outputs)]
        else:
            outputs = [None] * len(active)
        planned = []
        for s, output in zip(active, outputs):
            if output is not None:
                kind, text = parse_step(output)
                if kind == "final" and s.hops:
                    self._finish(s, "final")
                    planned.append((None, "llm"))
                    continue
                asked = {h.question.lower() for h in s.hops} | ({s.question.lower()} if s.hops else set())
                # One link is never longer to ask than the whole chain: a longer "sub-question" is a model
                # looping ("the child of the child of ...").
                if kind == "question" and text.lower() not in asked and len(text) <= len(s.question):
                    planned.append((text, "llm"))
                    continue
            planned.append((self._rule_question(s, step), "rules"))
        return planned

    def _inside_kb(self, active: list[_State]) -> list[_State]:
        """The questions whose chain is still inside the knowledge base: the last hop used a stored fact, and a
        stored fact has that fact's object as its subject. A small model writes "Final answer" after a hop or
        two whatever the question; that the updates go on from where the chain stands is better evidence
        that the question does too, so it is not offered the stop there (``max_hops`` still bounds the walk)."""
        landed = [(s, s.hops[-1].entity) for s in active
                  if s.hops and s.hops[-1].fact is not None and fact_object(s.hops[-1].fact)]
        if not landed:
            return []
        hits = self.pipeline.kb.search([entity for _, entity in landed], self.pipeline.k)
        return [s for (s, entity), found in zip(landed, hits)
                if any(h.subject and h.subject.strip().lower() == entity.lower() for h in found)]

    def _rule_question(self, s: _State, step: int) -> str | None:
        """The rule chain's next sub-question; without a chain, the whole question once. None marks the end."""
        if s.chain is None:
            if s.hops:
                self._finish(s, "no_question")
                return None
            return s.question
        relations, entity = s.chain
        # The rules follow their own chain: the hop count says where the next relation is, and the last hop's
        # entity is what it applies to (an LLM-written hop may have taken the chain elsewhere).
        at = len(s.hops)
        if at >= len(relations):
            self._finish(s, "rules_done")
            return None
        return rule_question(relations[at], s.hops[-1].entity if s.hops else entity)

    @staticmethod
    def _finish(s: _State, why: str) -> None:
        s.done, s.stop = True, why

    def _final_answers(self, states: list[_State]) -> list[str]:
        chats = []
        for s in states:
            if not any(h.in_scope for h in s.hops):
                chats.append(base_prompt(s.question))  # nothing stored applies: answer as before the updates
                continue
            # Hops answered from the model's own knowledge go in as question + answer lines, so the chain
            # stays connected where a link was not an update.
            lines = [h.fact.text if h.fact is not None else f"{h.question} {h.entity}." for h in s.hops]
            chat = as_chat(prompts.multihop_answer(list(dict.fromkeys(lines)), s.question))
            last = s.hops[-1]
            if self.pipeline.answer_style == "object-first" and last.written_by == "kb":
                chat = chat + [{"role": "assistant", "content": last.entity}]
            chats.append(chat)
        return self.pipeline.backend.generate(chats, self.answer_tokens) if chats else []
