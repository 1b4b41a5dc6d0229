"""Inverse questions (scr/inverse.py): a fact read backwards from its object, with the real embedded models."""

from __future__ import annotations

import pytest

from scr.inverse import InverseScope, asks_inverse, fact_relation, relations_said
from scr.kb import FactInput
from scr.kb.records import FactHit, fact_key
from scr.pipeline import SCRPipeline
from scr.scope import make_scope_checker


def fact(text, subject, obj, score=0.5):
    return FactHit(id=subject[:8], text=text, score=score, key_score=0.0, subject=subject, object=obj,
                   key=fact_key(text, subject, None, obj))


FATHER = fact("What was the name of the father of Hnoss? Joktan.", "Hnoss", "Joktan")
SPOUSE = fact("What is Ada Brant's spouse's name? Corin Vale.", "Ada Brant", "Corin Vale")
SISTER = fact("Who is Maria Jacson's sister? Elena Jacson.", "Maria Jacson", "Elena Jacson")
FOLLOWS = fact("Kiss Me Once Tour follows Delicious Party.", "Kiss Me Once Tour", "Delicious Party")
FOLLOWED = fact("Kiss Me Once Tour is followed by Delicious Party.", "Kiss Me Once Tour", "Delicious Party")
CEO = fact("The CEO of Northwind Labs is Priya Natarajan.", "Northwind Labs", "Priya Natarajan")


def test_the_relation_a_fact_says():
    assert [fact_relation(h) for h in (FATHER, SPOUSE, SISTER, FOLLOWS, FOLLOWED, CEO)] == [
        "parent", "spouse", "sibling", "after", "before", None]
    # "followed" is told apart by voice: passive "followed by" is the other direction
    assert relations_said("X followed Y") == ["after"] and relations_said("X is followed by") == ["before"]
    # two relations of the table (a question through two facts): no single inverse
    two = fact("The father of the spouse of Lee Ash is Tom Ash.", "Lee Ash", "Tom Ash")
    assert fact_relation(two) is None
    # A natural sentence whose key does not say the relation: the stored relation does.
    born = FactHit(id="b", text="Hnoss was born to Joktan in 1990.", score=0.0, key_score=0.0, subject="Hnoss",
                   object="Joktan", relation="father", key="Hnoss was born to in 1990")
    assert fact_relation(born) == "parent" and asks_inverse("Who is the son of Joktan?", born)


@pytest.mark.parametrize("question, hit, expected", [
    ("Who is the daughter of Joktan?", FATHER, True),
    ("Who is the son/daughter of Joktan?", FATHER, True),
    ("Who is listed as the child of Joktan?", FATHER, True),  # a neutral word besides the inverse
    ("Who is Corin Vale married to?", SPOUSE, True),
    ("Who is the spouse of Corin Vale?", SPOUSE, True),
    ("Who is Elena Jacson's brother?", SISTER, True),  # siblings are each other's
    ("Delicious Party is followed by", FOLLOWS, True),  # S follows O: O is followed by S
    ("Delicious Party is followed by", FOLLOWED, False),  # S is followed by O: that asks what comes after O
    ("Delicious Party follows", FOLLOWED, True),
    ("Who is the father of Joktan?", FATHER, False),  # the same relation asked about O: not the inverse
    ("The number of children Joktan has is", FATHER, False),  # a count, not who
    ("Who is the daughter of Joktan's brother?", FATHER, False),  # two hops
    ("Who is the daughter of Jokt?", FATHER, False),  # the object must be named whole
    ("Who works for Priya Natarajan?", CEO, False),  # a relation without an inverse in the table
])
def test_asks_inverse(question, hit, expected):
    assert asks_inverse(question, hit) is expected


def test_inverse_scope_decisions():
    scope = InverseScope()
    second = fact("Who fathered Ebbe? Joktan.", "Ebbe", "Joktan", score=0.7)
    decisions = scope.decide(["Who is the child of Joktan?", "Who is the child of Joktan other than Ebbe?",
                              "Who is Hnoss, the daughter of Joktan?", "Who is the father of Joktan?"],
                             [[FATHER, second]] * 4)
    best = decisions[0]
    assert best.fact_index == 1 and best.answers_subject and best.others == (0,)  # closest text first
    assert decisions[1].fact_index == 0  # excludes Ebbe by name
    assert not decisions[2].in_scope  # names the subject: the subject-relation check's question
    assert not decisions[3].in_scope


def test_the_knowledge_base_finds_facts_by_the_object_a_text_names(make_kb):
    kb = make_kb()
    kb.add([FactInput(text="The father of Hnoss is Joktan.", subject="Hnoss", object="Joktan"),
            FactInput(text="The father of Rome Ash is Tom Ash.", subject="Rome Ash", object="Tom Ash"),
            FactInput(text="Chess was invented in India.")])
    found = kb.objects_named_in(["Who is the daughter of joktan?", "Who is the son of Tom Ashby?", "Nothing here"])
    assert [[h.subject for h in hits] for hits in found] == [["Hnoss"], [], []]  # whole words only, any case
    assert found[0][0].object == "Joktan" and -1 <= found[0][0].score <= 1
    retracted = kb.add([FactInput(text="The father of Ebbe is Joktan.", subject="Ebbe", object="Joktan")]).added[0]
    assert len(kb.objects_named_in(["The child of Joktan"])[0]) == 2
    kb.retract(retracted.id)
    assert [h.subject for h in kb.objects_named_in(["The child of Joktan"])[0]] == ["Hnoss"]


@pytest.fixture
def family(make_kb, smol_backend, embedder):
    kb = make_kb()
    kb.add([FactInput(text="The father of Hnoss Mallory is Joktan Verel.", subject="Hnoss Mallory",
                      object="Joktan Verel"),
            FactInput(text="The CEO of Northwind Labs is Priya Natarajan.", subject="Northwind Labs",
                      object="Priya Natarajan")])
    scope = make_scope_checker("default", smol_backend, 0.59, embed=embedder.embed)
    return kb, scope


def test_the_pipeline_answers_an_inverse_question_with_the_fact_subject_first(family, smol_backend):
    kb, scope = family
    on = SCRPipeline(kb, smol_backend, scope, max_new_tokens=16, inverse=True)
    off = SCRPipeline(kb, smol_backend, scope, max_new_tokens=16)
    asked = ["Who is the daughter of Joktan Verel?", "Who is the father of Joktan Verel?",
             "Who is the CEO of Northwind Labs?"]
    with_inverse, without = on.ask_batch(asked), off.ask_batch(asked)
    child = with_inverse[0]
    assert child.in_scope and child.facts[0].subject == "Hnoss Mallory"
    assert child.answer.startswith("Hnoss Mallory")
    assert not without[0].in_scope  # the subject-relation check alone does not see it
    # The same relation asked about the object stays out of scope and is answered as before.
    assert not with_inverse[1].in_scope and with_inverse[1].answer == without[1].answer
    assert with_inverse[2].answer == without[2].answer and with_inverse[2].in_scope  # forward questions unchanged


def test_engine_settings_switch_inverse_questions(tmp_path):
    from scr.config import Settings
    from scr.engine import Engine

    assert Settings().scope_inverse is True
    engine = Engine(Settings(kb_dir=tmp_path / "kb", scope_inverse=False))
    assert engine.pipeline.inverse is None
    assert Engine(Settings(kb_dir=tmp_path / "kb2")).pipeline.inverse is not None
    assert Engine(Settings(kb_dir=tmp_path / "kb3", scope_mode="similarity")).pipeline.inverse is None
