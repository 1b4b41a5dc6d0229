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

# ----- multi-hop (scr/multihop.py) ------------------------------------------------------------------------------
# Decomposition, MeLLo-style: a raw completion prompt (not the chat template) because small models follow a
# transcript pattern more reliably than an instruction, and the demonstrations are a prefix shared by every
# question, which the in-process backend computes once per batch. The demonstrations are made up (no benchmark
# data) and deliberately use answers the model would not expect, so it learns to ask about the answer it was
# given rather than the one it knows.
MULTIHOP_DECOMPOSE = (
    "Split the question into simple questions answered one at a time. Each question asks about the answer "
    "before it. After the last answer, write \"Final answer:\".\n\n"
    "Question: What is the capital of the country where the founder of Acme Books was born?\n"
    "Subquestion: Who founded Acme Books?\n"
    "Answer: Maria Lopez\n"
    "Subquestion: In which country was Maria Lopez born?\n"
    "Answer: Portugal\n"
    "Subquestion: What is the capital of Portugal?\n"
    "Answer: Oslo\n"
    "Final answer: Oslo\n\n"
    "Question: On which continent is the country of citizenship of the spouse of the author of Blue River?\n"
    "Subquestion: Who is the author of Blue River?\n"
    "Answer: John Carter\n"
    "Subquestion: Who is John Carter married to?\n"
    "Answer: Emma Stone\n"
    "Subquestion: What is the country of citizenship of Emma Stone?\n"
    "Answer: Kenya\n"
    "Subquestion: On which continent is Kenya located?\n"
    "Answer: Asia\n"
    "Final answer: Asia\n\n"
    "Question: {question}\n"
)
MULTIHOP_STEP = "Subquestion: {question}\nAnswer: {answer}\n"
MULTIHOP_NEXT = "Subquestion:"  # appended where the walk must go on: the model can only write a sub-question
MULTIHOP_FINAL_MARK = "final answer"
# The whole question with every gathered fact: the paper's answer prompt, with several facts.
MULTIHOP_ANSWER = "Answer the question based on the Facts.\n\nFacts:\n{facts}\nQuestion: {question}\nAnswer:"


def multihop_decompose(question: str, steps: list[tuple[str, str]]) -> str:
    """The transcript so far; the model continues it with the next "Subquestion:" or "Final answer:"."""
    return MULTIHOP_DECOMPOSE.format(question=question) + "".join(
        MULTIHOP_STEP.format(question=q, answer=a) for q, a in steps)


def multihop_answer(facts: list[str], question: str) -> str:
    return MULTIHOP_ANSWER.format(facts="\n".join(facts), question=question)
