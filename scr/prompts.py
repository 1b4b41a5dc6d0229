"""Prompt texts. The ``paper`` ones are the SCR paper's, kept verbatim for faithful comparison."""

from __future__ import annotations

PAPER_SCOPE = (
    "Given a set of facts and a question, return the fact (the entire sentence) that best matches the core "
    "knowledge asked in the question. If the question cannot be answered with the facts, return \"no relevant "
    "fact.\"\n\nFacts:\n{facts}\nQuestion: {question}\n\nOutput:"
)
# Out of scope when the paper's scope output contains any of these (lower-cased).
PAPER_NONE_MARKERS = ("no relevant fact", "no relevant information", "false")
PAPER_ANSWER = "Answer the question based on the Fact.\n\nFact: {fact}\nQuestion: {question}\nAnswer:"

# Constrained choice: the model writes only a fact number (or "none" when offered).
CHOOSE_FACT = (
    "Here are numbered facts and a question. Which fact answers the question? Reply with the fact's number"
    "{none_hint}.\n\nFacts:\n{facts}\n\nQuestion: {question}"
)


def numbered(facts: list[str]) -> str:
    return "\n".join(f"{i}. {text}" for i, text in enumerate(facts, start=1))


def paper_scope(facts: list[str], question: str) -> str:
    return PAPER_SCOPE.format(facts="\n".join(facts), question=question)


def paper_answer(fact: str, question: str) -> str:
    return PAPER_ANSWER.format(fact=fact, question=question)


def choose_fact(facts: list[str], question: str, allow_none: bool) -> str:
    hint = ', or "none" if no fact answers it' if allow_none else ""
    return CHOOSE_FACT.format(none_hint=hint, facts=numbered(facts), question=question)
