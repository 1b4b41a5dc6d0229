"""Possible contradictions: a newly added fact and another active fact that answer the same question differently.

The store retires an older fact only when the new one names it (``supersedes``) or has the same subject AND
relation. Facts written as questions ("What day was USA-64 launched? 3 March 1990.") or as plain sentences carry
no relation, so two updates of one fact can both stay active, and every question about it is then answered with
whichever of the two is closer to its wording. (KnowEdit's ZsRE test holds 307 such updates in 1301 cases:
``conflicting_updates`` in scr/evaluation/metrics.py.)

Two facts are reported when they name the same subject, have different objects, and the subject-relation scope
check (scr/scope.py) would answer the new fact's key, read as a question, with the other fact: the same test
that decides which fact answers a user's question, so a reported pair is one that questions cannot tell apart.
Nothing is retired automatically: the operator retracts the stale one (``scr kb retract``). Adding facts reports
the pairs for the new ones (``scr kb add``, ``POST /v1/facts``); ``scr kb conflicts`` and ``GET /v1/conflicts``
list them over the whole knowledge base. A pair worded further apart than the relation check's threshold is not
found; the check errs towards silence, as it does for questions. Measured on KnowEdit:
evals/results/conflict_detection.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from scr.kb.records import Fact, FactHit, fact_object


@dataclass(frozen=True)
class Conflict:
    fact_id: str  # the fact just added
    other_id: str  # the active fact that answers its question with another object


def _object(fact: Fact | FactHit) -> str | None:
    obj = fact_object(fact)
    return obj.strip().lower() if obj and obj.strip() else None


def find_conflicts(kb, facts: Sequence[Fact], scope, k: int = 5) -> list[Conflict]:
    """The active facts that ``facts`` (just added to ``kb``) may contradict, each pair once.

    ``scope`` is a ``SubjectRelationScope``; the ``k`` facts nearest each new fact's key are checked."""
    new = [f for f in facts if f.subject and _object(f)]
    if not new:
        return []
    questions: list[Fact] = []
    candidates: list[list[FactHit]] = []
    found = kb.search_vectors(kb.key_vectors([f.id for f in new]), k + 1)  # stored keys, not embedded again
    for fact, hits in zip(new, found):
        subject, obj = fact.subject.lower(), _object(fact)  # once per fact, not once per hit
        others = [h for h in hits if h.id != fact.id and h.subject and h.subject.lower() == subject
                  and _object(h) not in (None, obj)]
        if others:
            questions.append(fact)
            candidates.append(others[:k])
    conflicts: list[Conflict] = []
    seen: set[frozenset[str]] = set()
    for fact, hits, decision in zip(questions, candidates, scope.decide([f.key for f in questions], candidates)):
        passing = ([decision.fact_index] if decision.in_scope else []) + list(decision.others)
        for i in passing:
            pair = frozenset((fact.id, hits[i].id))
            if pair not in seen:  # two new facts find each other: report the pair once
                seen.add(pair)
                conflicts.append(Conflict(fact.id, hits[i].id))
    return conflicts
