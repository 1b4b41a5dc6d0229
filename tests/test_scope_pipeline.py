"""Scope checking and the SCR pipeline with the real embedded models."""

from __future__ import annotations

import pytest

from scr.kb import FactInput
from scr.kb.records import FactHit
from scr.pipeline import QuestionError, SCRPipeline
from scr.scope import (GatedChoiceScope, LLMChoiceScope, PaperScope, SimilarityScope, make_scope_checker,
                       parse_paper_output)

FACTS = ["The CEO of Northwind Labs is Priya Natarajan.", "The headquarters of Northwind Labs is in Lisbon."]


def hit(text, key_score, score=0.5):
    return FactHit(id=text[:8], text=text, score=score, key_score=key_score)


@pytest.mark.parametrize("output, expected", [
    ("no relevant fact.", None),
    ("No relevant information is available", None),
    ("False", None),
    ("The CEO of Northwind Labs is Priya Natarajan.", 0),
    ("Fact: the headquarters of northwind labs is in lisbon", 1),
    ("Lisbon headquarters", 1),  # word overlap when the sentence is not copied whole
    ("Bananas are yellow", None),
])
def test_paper_output_parsing(output, expected):
    assert parse_paper_output(output, FACTS) == expected


def test_similarity_gate_uses_the_key_score():
    gate = SimilarityScope(threshold=0.6)
    decisions = gate.decide(["q1", "q2", "q3"], [[hit("a", 0.5), hit("b", 0.7)], [hit("a", 0.59)], []])
    assert [d.fact_index for d in decisions] == [1, None, None]


def test_gated_choice_asks_the_llm_only_between_eligible_facts(smol_backend):
    scope = GatedChoiceScope(smol_backend, threshold=0.6)
    question = "Who is the CEO of Northwind Labs?"
    candidates = [hit("The Helios-3 battery stores 12 kWh.", 0.2), hit(FACTS[1], 0.65), hit(FACTS[0], 0.9)]
    decision = scope.decide([question], [candidates])[0]
    assert decision.fact_index in (1, 2)  # two facts pass the gate; the model must pick one of them
    none = scope.decide([question], [[hit(FACTS[0], 0.3)]])[0]
    assert not none.in_scope


def test_llm_and_paper_modes_return_decisions(smol_backend):
    question = "Who is the CEO of Northwind Labs?"
    candidates = [hit(FACTS[1], 0.5), hit(FACTS[0], 0.9)]
    assert LLMChoiceScope(smol_backend).decide([question], [candidates])[0].fact_index in (0, 1, None)
    paper = PaperScope(smol_backend, max_new_tokens=30).decide([question, "x"], [candidates, []])
    assert paper[0].raw and paper[1].fact_index is None
    assert isinstance(make_scope_checker("default", smol_backend, 0.5), SimilarityScope)
    assert isinstance(make_scope_checker("similarity", smol_backend, 0.5), SimilarityScope)
    assert isinstance(make_scope_checker("gated-llm", lambda: smol_backend, 0.5), GatedChoiceScope)
    with pytest.raises(ValueError, match="unknown scope mode"):
        make_scope_checker("magic", smol_backend, 0.5)


@pytest.fixture
def pipeline(make_kb, smol_backend):
    kb = make_kb()
    kb.add([FactInput(text=FACTS[0], subject="Northwind Labs", relation="ceo", object="Priya Natarajan"),
            FactInput(text="The price of the Helios-3 battery is 4,500 euros.", object="4,500 euros")])
    return SCRPipeline(kb, smol_backend, make_scope_checker("default", smol_backend, 0.59), k=5,
                       max_new_tokens=24, max_question_chars=200)


def test_pipeline_answers_in_scope_with_the_fact_and_out_of_scope_as_before(pipeline, smol_backend):
    answers = pipeline.ask_batch(["Who is the CEO of Northwind Labs?", "What is the capital of France?"])
    updated, unrelated = answers
    assert updated.in_scope and updated.facts[0].text == FACTS[0]
    assert "Priya Natarajan" in updated.answer
    assert not unrelated.in_scope and unrelated.facts == []
    base = smol_backend.generate([[{"role": "user", "content": "What is the capital of France?"}]], 24)[0]
    assert unrelated.answer == base
    assert set(updated.timings) == {"retrieve_s", "scope_s", "answer_s", "total_s"}
    single = pipeline.ask("How much does the Helios-3 battery cost?")
    assert single.in_scope and "4,500" in single.answer


@pytest.mark.parametrize("bad, message", [("", "empty"), ("   ", "empty"), ("x" * 201, "limit is 200"),
                                          (42, "must be text")])
def test_pipeline_rejects_bad_questions(pipeline, bad, message):
    with pytest.raises(QuestionError, match=message):
        pipeline.ask_batch([bad])
