"""Inverse questions: a fact read backwards, from its object.

"The father of Hnoss is Joktan" also answers "Who is the daughter of Joktan?": the question names the fact's
OBJECT and asks the relation's inverse, so the answer is the fact's SUBJECT. The subject-relation scope check
never sees such a question as in scope (it names neither the subject nor the relation), and a small model that
reads the fact does not reverse it by itself.

Inverses come from a short table of relations whose inverse people ask for (kinship, marriage, sequence), each
with the words that say it. A question is the inverse of a fact when
- the fact's relation (its key without the subject) says exactly one relation of the table,
- the question names the fact's object (the whole object, as whole words),
- and what the question says besides the object is that relation's inverse and nothing else: no other content
  word than the inverse's own and a few that carry no relation ("person", "listed").
So "Who is the father of Joktan?" (the same relation, not its inverse), "The number of children Joktan has is"
(a count) and "Who is the daughter of Joktan's brother?" (two hops) are not inverse questions of that fact.
Measured on train splits before use (evals/results/inverse_questions.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from scr.kb.records import FactHit, fact_object
from scr.names import names_whole
from scr.scope import EXCLUDING, ScopeDecision, excludes_object, relation_words, relation_wording


@dataclass(frozen=True)
class Relation:
    name: str
    words: str  # regular expression of the words that say the relation (matched as whole words, any case)
    inverse: str  # the relation as read from the object's side


# "S <relation> O". Sequence relations differ by voice: "S follows O" (S comes after O) is read from O's side as
# "O is followed by S", so "followed by" and "followed" (active) are told apart.
RELATIONS = {r.name: r for r in (
    Relation("parent", r"father(?:ed)?|mother(?:ed)?|parents?|dad|mum|mom", "child"),
    Relation("child", r"child(?:ren)?|sons?|daughters?|offspring", "parent"),
    Relation("sibling", r"siblings?|sisters?|brothers?", "sibling"),
    Relation("spouse", r"spouses?|wife|wives|husbands?|married|marry|wed", "spouse"),
    Relation("after", r"follows|followed(?!\s+by)|preceded\s+by|predecessor|comes\s+after", "before"),
    Relation("before", r"followed\s+by|succeeded\s+by|successor|precedes|comes\s+before", "after"),
)}
_PATTERNS = {name: re.compile(rf"\b(?:{r.words})\b", re.IGNORECASE) for name, r in RELATIONS.items()}
# Words a question may hold besides the relation without asking anything else ("Who is listed as the child of O?").
NEUTRAL = frozenset("person people one listed called known named".split())


def relations_said(text: str) -> list[str]:
    """The table's relations that ``text`` says, in table order."""
    return [name for name, pattern in _PATTERNS.items() if pattern.search(text)]


def fact_relation(hit: FactHit) -> str | None:
    """The one relation of the table that the fact's stored relation, or else its key, says about its subject
    (a natural sentence's key may not say it: "Hnoss was born to in 1990", relation "father"), else None."""
    if not hit.subject:
        return None
    for form in ([hit.relation] if hit.relation else []) + [relation_wording(hit.key or hit.text, hit.subject)]:
        if len(said := relations_said(form)) == 1:
            return said[0]
    return None


def asks_inverse(question: str, hit: FactHit) -> bool:
    """Does the question ask the fact's relation backwards, from its object (module docstring)?"""
    relation, obj = fact_relation(hit), fact_object(hit)
    if relation is None or not obj or not names_whole(question, obj):
        return False
    # What an exclusion ("... other than X") names asks for no other relation: the caller checks whom it excludes.
    wording = re.sub(rf"\b{EXCLUDING}\b.*$", " ", relation_wording(question, obj), flags=re.IGNORECASE)
    inverse = RELATIONS[relation].inverse
    if relations_said(wording) != [inverse]:
        return False
    rest = _PATTERNS[inverse].sub(" ", wording)
    return not (relation_words(rest, "") - NEUTRAL)


class InverseScope:
    """The scope decision for inverse questions, over the facts whose object a question names
    (``KnowledgeBase.objects_named_in``). A question that names the fact's subject is left to the subject-relation
    check, as is a fact whose subject is its object; a question that excludes the subject by name ("a child of Y
    other than X") is not answered by it. Of several facts, the one whose text is closest to the question."""

    def decide(self, questions: Sequence[str], candidates: Sequence[list[FactHit]]) -> list[ScopeDecision]:
        decisions = []
        for question, hits in zip(questions, candidates):
            ok = sorted((i for i, hit in enumerate(hits)
                         if hit.subject and not names_whole(question, hit.subject)
                         and not excludes_object(question, hit.subject) and asks_inverse(question, hit)),
                        key=lambda i: -hits[i].score)
            decisions.append(ScopeDecision(ok[0], answers_subject=True, others=tuple(ok[1:])) if ok
                             else ScopeDecision(None))
        return decisions
