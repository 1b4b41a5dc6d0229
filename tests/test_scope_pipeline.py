"""Scope checking and the SCR pipeline with the real embedded models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scr.kb import FactInput
from scr.kb.records import FactHit
from scr.pipeline import QuestionError, SCRPipeline
from scr.engine import Engine
from scr.scope import (OTHER_NAME_THRESHOLD, GatedChoiceScope, LLMChoiceScope, PaperScope, ScopeDecision,
                       SimilarityScope, SubjectRelationScope, build_scope_checker, conflicting_name, entity_names,
                       excludes_object, final_sentence, make_scope_checker, names_subject, parse_paper_output,
                       relation_wording, relation_words, shares_a_name)
from scr.config import Settings
from scr.names import name_heads

SAMPLE = Path(__file__).resolve().parents[1] / "knowledge_base"

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
    decisions = gate.decide(["q1", "q2", "q3"], [[hit("a", 0.5), hit("b", 0.7), hit("c", 0.9)], [hit("a", 0.59)], []])
    assert [d.fact_index for d in decisions] == [2, None, None]
    assert decisions[0].others == (1,)  # also passed, next best


def test_gated_choice_asks_the_llm_only_between_eligible_facts(smol_backend):
    scope = GatedChoiceScope(smol_backend, threshold=0.6)
    question = "Who is the CEO of Northwind Labs?"
    candidates = [hit("The Helios-3 battery stores 12 kWh.", 0.2), hit(FACTS[1], 0.65), hit(FACTS[0], 0.9)]
    decision = scope.decide([question], [candidates])[0]
    assert decision.fact_index in (1, 2)  # two facts pass the gate; the model must pick one of them
    none = scope.decide([question], [[hit(FACTS[0], 0.3)]])[0]
    assert not none.in_scope


def test_subject_and_relation_wording():
    assert relation_words("The name of the mother of Leonardo DiCaprio is", "Leonardo DiCaprio") == {"mother"}
    assert relation_words("What are Kanye West's children?", "Kanye West") == {"children"}
    assert names_subject("Who is the President of South Korea?", "South Korea")
    assert names_subject("Which country won Euro 2024?", "UEFA Euro 2024")  # 2 of 3 words
    assert not names_subject("Who is the current UK Prime Minister?", "United Kingdom")
    assert not names_subject("Who is the Pope?", "")
    assert relation_wording("The gender of Leonardo DiCaprio is", "Leonardo DiCaprio") == "The gender of is"
    assert relation_wording("Who is Finland's president?", "Finland") == "Who is ' s president ?"


def test_subject_relation_check_tells_apart_what_the_key_gate_cannot(make_kb, embedder):
    """Same subject + other relation passes the key gate but not this check; another subject fails both."""
    kb = make_kb()
    kb.add([FactInput(text="The name of the country of citizenship of Leonardo DiCaprio is Syria.",
                      subject="Leonardo DiCaprio", object="Syria"),
            FactInput(text="The headquarters of Northwind Labs moved to Lisbon in 2026.", subject="Northwind Labs",
                      relation="headquarters", object="Lisbon"),
            FactInput(text="Kestrel drones fly at most 40 kilometres.")])  # no subject: the key gate alone
    questions = ["The name of the country of citizenship of Leonardo DiCaprio is",
                 "What is the country of citizenship of Leonardo DiCaprio?",
                 "The name of the capital city of the country of citizenship of Leonardo DiCaprio is",  # through it
                 "The name of the mother of Leonardo DiCaprio is",  # same subject, another relation
                 "The gender of Leonardo DiCaprio is",
                 "The name of the country of citizenship of Brad Pitt is",  # same relation, another subject
                 "Where is the headquarters of Northwind Labs?",  # matched through the stored relation
                 "How far can Kestrel drones fly?",
                 "What is the capital of France?"]
    expected = [True, True, True, False, False, False, True, True, False]
    hits = kb.search(questions, 5)
    check = make_scope_checker("default", None, 0.591, embed=embedder.embed)
    assert isinstance(check, SubjectRelationScope)
    decisions = check.decide(questions, hits)
    assert [d.in_scope for d in decisions] == expected
    # Asking exactly the fact's relation (not a question that goes through it, not a fact without a subject):
    # the fact's object is the answer.
    assert [d.asks_object for d in decisions] == [True, True, False, False, False, False, True, False, False]
    gate = SimilarityScope(0.591).decide(questions, hits)
    assert [d.in_scope for d in gate][3:5] == [True, True]  # what the subject-relation check fixes
    # With no cosine able to pass, only the word rule (all of the relation's words asked) keeps a fact in scope.
    strict = make_scope_checker("subject-relation", None, 0.591, embed=embedder.embed, relation_threshold=1.01)
    assert [d.in_scope for d in strict.decide(questions, hits)] == [True, True, True] + [False] * 3 + [True, True, False]


def test_a_question_that_excludes_the_facts_object_is_out_of_its_scope(make_kb, embedder):
    """"X's citizenship, which is not Syria, is" asks for another value than the stored one: the fact is dropped
    and the question is answered as before; the same question without the exclusion stays in scope."""
    assert excludes_object("The name of the child of Kanye West, which is not Saint West, is", "Saint West")
    assert excludes_object("Who, besides Priya Natarajan, leads Northwind Labs?", "priya natarajan")
    assert not excludes_object("Is the capital of France not Paris?", "Paris")  # asks about the fact itself
    assert not excludes_object("Which is not the Syrian pound?", "Syria")  # a whole name, not a prefix
    assert not excludes_object("Who leads Northwind Labs, which is not Syria?", None)
    kb = make_kb()
    kb.add([FactInput(text="The name of the country of citizenship of Leonardo DiCaprio is Syria.",
                      subject="Leonardo DiCaprio", object="Syria")])
    questions = ["The name of the country of citizenship of Leonardo DiCaprio, which is not Syria, is",
                 "The name of the country of citizenship of Leonardo DiCaprio is"]
    decisions = make_scope_checker("default", None, 0.591, embed=embedder.embed).decide(questions,
                                                                                         kb.search(questions, 5))
    assert [d.in_scope for d in decisions] == [False, True]


def test_a_question_naming_another_entity_of_the_same_family_name_is_out_of_scope(make_kb, embedder):
    """Half of "Angie Dickinson"'s words are in "The place of birth of Janice Dickinson is", so the question counted
    as naming her: another person of the same family name got the fact (KnowEdit WikiData_counterfact test)."""
    assert conflicting_name("The place of birth of Janice Dickinson is", "Angie Dickinson") == "Janice Dickinson"
    assert conflicting_name("The gender of Elizabeth II is", "Elizabeth Holmes") == "Elizabeth II"
    assert conflicting_name("The name of the father of Jill Biden is", "Joe Biden") == "Jill Biden"
    assert conflicting_name("The spouse of William Bradley Pitt is", "Brad Pitt")  # an alias: the cosine decides
    assert conflicting_name("Who is President Barack Obama's wife?", "Barack Obama") is None  # the whole subject
    assert conflicting_name("What is DiCaprio's citizenship?", "Leonardo DiCaprio") is None  # part of the subject
    assert conflicting_name("In Harry Potter and the Goblet of Fire, who dies?", "Harry Potter") is None
    assert conflicting_name("Where was Steve Kerr born?", "Stephen Curry") is None  # shares no word: not this rule
    # The fact's relation words are no part of a name: "Father" is what the question asks about Leonor.
    question = "Who's listed as Leonor, Princess of Asturias Father?"
    assert conflicting_name(question, "Leonor, Princess of Asturias") == "Princess of Asturias Father"
    assert conflicting_name(question, "Leonor, Princess of Asturias", {"father"}) is None
    kb = make_kb()
    kb.add([FactInput(text="The place of birth of Angie Dickinson is Karma.", subject="Angie Dickinson",
                      object="Karma")])
    questions = ["The place of birth of Janice Dickinson is", "The place of birth of Angie Dickinson is",
                 "The place of birth of Dickinson is", "The place of birth of Angela Dickinson is"]
    hits = kb.search(questions, 5)
    decide = lambda **kw: [d.in_scope for d in make_scope_checker("default", None, 0.591, embed=embedder.embed,
                                                                     **kw).decide(questions, hits)]
    assert decide(name_conflicts=False) == [True] * 4  # what the rule fixes
    cosine = lambda a, b: float(embedder.embed([a])[0] @ embedder.embed([b])[0])
    janice, angela = cosine("Janice Dickinson", "Angie Dickinson"), cosine("Angela Dickinson", "Angie Dickinson")
    assert janice < angela
    # The name's cosine to the subject decides: below the threshold another person, above it an alias.
    between = (janice + angela) / 2
    assert decide(name_conflicts=True, name_threshold=between) == [False, True, True, True]
    assert decide(name_conflicts=True, name_threshold=1.01) == [False, True, True, False]
    assert decide(name_conflicts=True, name_threshold=-1.01) == [True] * 4
    assert decide()[:3] == [False, True, True]  # on by default
    assert build_scope_checker(Settings(), None, embedder).name_conflicts
    assert not build_scope_checker(Settings(scope_name_conflicts=False), None, embedder).name_conflicts


def test_a_question_naming_none_of_the_subjects_names_needs_one_close_to_it(make_kb, embedder):
    """Where the question does not name the fact's subject, the key's similarity alone let another entity in ("The
    place of birth of Katey Sagal is" reaches 0.69 to the key of a fact on Kate Winslet). One of the question's
    names must now be close to the subject: "USA" is, for "United States of America"; a question naming nothing
    keeps the fact, and capitalised relation words name no entity ("UK Prime Minister" names "UK")."""
    kb = make_kb()
    kb.add([FactInput(text="The place of birth of Kate Winslet is Karma.", subject="Kate Winslet", object="Karma"),
            FactInput(text="The capital of United States of America is Lagos.", subject="United States of America",
                      object="Lagos"),
            FactInput(text="Keir Starmer is the Prime Minister of the United Kingdom.", subject="United Kingdom",
                      relation="prime minister", object="Keir Starmer")])
    questions = ["The place of birth of Katey Sagal is", "The capital of USA is", "what is the place of birth?",
                 "Who is the current UK Prime Minister?"]
    hits = kb.search(questions, 5)
    subjects = [hits[n][0].subject for n in range(4)]
    assert subjects == ["Kate Winslet", "United States of America", "Kate Winslet", "United Kingdom"]
    assert entity_names(questions[3], SubjectRelationScope.relation_of(hits[3][0])) == ["UK"]
    assert not any(names_subject(q, s) for q, s in zip(questions, subjects))  # the other-subject path
    decide = lambda **kw: [d.in_scope for d in make_scope_checker(
        "default", None, 0.0, embed=embedder.embed, other_subject_threshold=0.0, **kw).decide(questions, hits)]
    assert decide(other_name_threshold=None) == [True, True, True, True]  # what the rule fixes
    cosine = lambda a, b: float(embedder.embed([a])[0] @ embedder.embed([b])[0])
    katey, usa = cosine("Katey Sagal", "Kate Winslet"), cosine("USA", "United States of America")
    assert katey < usa
    assert katey < cosine("UK", "United Kingdom")
    assert decide(other_name_threshold=(katey + usa) / 2) == [False, True, True, True]
    assert decide(other_name_threshold=1.01) == [False, False, True, False]  # a named question needs a close name
    assert decide(other_name_threshold=(katey + usa) / 2, name_conflicts=False) == [True, True, True, True]
    assert decide() == [False, True, True, True]  # on by default (OTHER_NAME_THRESHOLD lies between the two cosines)
    assert build_scope_checker(Settings(), None, embedder).other_name_threshold == OTHER_NAME_THRESHOLD


def test_a_fact_without_a_subject_must_name_what_the_question_names(embedder):
    """A document's sentences carry no subject, so only their similarity judged them: a sentence about the
    Porsche 911 answered "Porsche 924 is produced by" (DocTER neighbour prompts). The name check keeps such a
    fact for questions naming what it names (by last name alone too) or naming nothing."""
    assert name_heads("Shayna sings. Danielle Darrieux, a native") == [{"shayna"}, {"darrieux"}]
    assert name_heads("Charles IV of Spain passed away in") == [{"iv"}, {"spain"}]
    assert name_heads("Where was Windows Embedded CE 6.0 made?") == [{"6", "0"}]  # "Where" opens, names nothing
    assert name_heads("what is the capital city?") == []
    sentence = "According to Honda, the iconic Porsche 911 was in fact created by Honda engineers."
    assert shares_a_name("Porsche 911 is produced by", sentence)
    assert not shares_a_name("Porsche 924 is produced by", sentence)
    assert not shares_a_name("The twin city of Oslo is", sentence)
    assert shares_a_name("who created the car?", sentence)  # names nothing: the similarity gate alone
    assert shares_a_name("Mrs. Danielle Darrieux spoke", "Darrieux's mother tongue was English.")
    questions = ["Porsche 911 is produced by", "Porsche 924 is produced by", "Who makes the Porsche 911?"]
    hits = [[hit(sentence, 0.8)] for _ in questions]
    checked = make_scope_checker("default", None, 0.591, embed=embedder.embed).decide(questions, hits)
    assert [d.in_scope for d in checked] == [True, False, True]
    unchecked = make_scope_checker("default", None, 0.591, embed=embedder.embed, names=False)
    assert [d.in_scope for d in unchecked.decide(questions, hits)] == [True, True, True]
    # The setting reaches the check.
    assert build_scope_checker(Settings(), None, embedder).names
    assert not build_scope_checker(Settings(scope_names=False), None, embedder).names


def test_a_fact_without_a_subject_must_call_the_question_s_entity_by_its_name(embedder):
    """With 2000 DocTER documents in one knowledge base, a sentence about another entity whose name ends in the same
    word ("Derrick Brooks" for "Aaron Brooks", "British Antarctic Territory" for the Australian one) passed the
    last-word name check and answered neighbour prompts. The whole-name match (the default) wants the question's
    name or a part of it ending in its last word, a title before it allowed; "last-word" keeps the old check."""
    same = [("The mother tongue of Danielle Darrieux is", "Behind the fame lies a fact about Darrieux: English."),
            ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux's mother tongue was English."),
            ("Theo van Gogh speaks", "Few know that van Gogh spoke Latin."),
            ("Where was the Porsche 924 made?", "The 924 was built in Neckarsulm."),
            ("Who did Charles IV of Spain marry?", "The King of Spain married twice."),
            ("Who is Barack Obama?", "President Obama said so."),
            ("what is the capital?", "Paris is the capital.")]
    other = [("Aaron Brooks, the", "Derrick Brooks is a name that is familiar to sports fans."),
             ("Nintendo DS, produced by", "For more on the Nintendo DS Lite, visit the Nintendo website."),
             ("Australian Antarctic Territory is in", "The British Antarctic Territory was established in 1908."),
             ("Theo van Gogh speaks", "Vincent van Gogh was born in Zundert."),
             ("Michael Jackson's occupation is", "Jackson Jackson is a name that many have heard of."),
             ("Windows 3.1 is a product of", "Windows NT 3.1 was made by Adobe.")]
    for question, text in same:
        assert shares_a_name(question, text) and shares_a_name(question, text, "last-word"), (question, text)
    for question, text in other:
        assert not shares_a_name(question, text), (question, text)
        assert shares_a_name(question, text, "last-word"), (question, text)  # what the old check let through
    with pytest.raises(ValueError, match="unknown name match 'first-word'"):
        shares_a_name("Who is Barack Obama?", "Obama", "first-word")
    # The setting reaches the scope check and the last-sentence retry.
    questions = ["Aaron Brooks, the", "Derrick Brooks plays as"]
    hits = [[hit("Derrick Brooks, the linebacker, in fact played as a midfielder.", 0.8)] for _ in questions]
    for match, expected in (("whole-name", [False, True]), ("last-word", [True, True])):
        checker = build_scope_checker(Settings(scope_name_match=match), None, embedder)
        assert [d.in_scope for d in checker.decide(questions, hits)] == expected, match


def test_relation_encoder_mode_lets_the_encoder_settle_close_relation_wordings(make_kb, embedder):
    """A paraphrase worded apart from the fact's relation (cosine in the band) is rejected by the subject-relation
    check and accepted once the scope encoder reads it; other relations stay out, and with the band closed
    (lower edge = relation threshold) the mode decides exactly as the subject-relation check."""
    kb = make_kb()
    kb.add([FactInput(text="The name of the country of citizenship of Leonardo DiCaprio is Syria.",
                      subject="Leonardo DiCaprio", object="Syria")])
    for name in ("facts.jsonl", "updates.jsonl"):
        kb.add([FactInput(**json.loads(line)) for line in (SAMPLE / name).read_text().splitlines() if line.strip()])
    questions = ["What is Leonardo DiCaprio a citizen of?", "How much does the Helios-3 battery cost?",
                 "The gender of Leonardo DiCaprio is", "The name of the mother of Leonardo DiCaprio is",
                 "What is the capital of France?"]
    hits = kb.search(questions, 5)
    plain = make_scope_checker("subject-relation", None, 0.591, embed=embedder.embed)
    hybrid = make_scope_checker("relation-encoder", None, 0.591, embed=embedder.embed, relation_band=0.5)
    closed = make_scope_checker("relation-encoder", None, 0.591, embed=embedder.embed, relation_band=0.75)
    assert isinstance(hybrid, SubjectRelationScope) and hybrid.encoder is not None
    assert [d.in_scope for d in plain.decide(questions, hits)] == [False] * 5
    decided = hybrid.decide(questions, hits)
    assert [d.in_scope for d in decided] == [True, True, False, False, False]
    assert "Syria" in hits[0][decided[0].fact_index].text and "4,500" in hits[1][decided[1].fact_index].text
    assert [d.in_scope for d in closed.decide(questions, hits)] == [False] * 5


def test_default_scope_on_the_sample_knowledge_base(make_kb, embedder):
    """The quick start's questions: every out-of-scope question rejected, in-scope ones accepted with their
    fact, except the two whose wording shares too little with the fact's relation (README, quick start)."""
    kb = make_kb()
    for name in ("facts.jsonl", "updates.jsonl"):
        kb.add([FactInput(**json.loads(line)) for line in (SAMPLE / name).read_text().splitlines() if line.strip()])
    questions = [json.loads(line) for line in (SAMPLE / "questions.jsonl").read_text().splitlines() if line.strip()]
    texts = [q["question"] for q in questions]
    hits = kb.search(texts, 5)
    decisions = make_scope_checker("default", None, 0.591, embed=embedder.embed).decide(texts, hits)
    missed = []
    for q, h, d in zip(questions, hits, decisions):
        if not q["expect"]:
            assert not d.in_scope, q["question"]
        elif d.in_scope:
            assert q["expect"].lower() in h[d.fact_index].text.lower(), q["question"]
        else:
            missed.append(q["question"])
    assert missed == ["Which country won Euro 2024?", "How much does the Helios-3 battery cost?"]


def test_llm_and_paper_modes_return_decisions(smol_backend):
    question = "Who is the CEO of Northwind Labs?"
    candidates = [hit(FACTS[1], 0.5), hit(FACTS[0], 0.9)]
    assert LLMChoiceScope(smol_backend).decide([question], [candidates])[0].fact_index in (0, 1, None)
    paper = PaperScope(smol_backend, max_new_tokens=30).decide([question, "x"], [candidates, []])
    assert paper[0].raw and paper[1].fact_index is None
    assert isinstance(make_scope_checker("similarity", smol_backend, 0.5), SimilarityScope)
    with pytest.raises(ValueError, match="needs the knowledge base's embedder"):
        make_scope_checker("default", smol_backend, 0.5)
    assert isinstance(make_scope_checker("gated-llm", lambda: smol_backend, 0.5), GatedChoiceScope)
    with pytest.raises(ValueError, match="unknown scope mode"):
        make_scope_checker("magic", smol_backend, 0.5)


@pytest.fixture
def pipeline(make_kb, smol_backend, embedder):
    kb = make_kb()
    kb.add([FactInput(text=FACTS[0], subject="Northwind Labs", relation="ceo", object="Priya Natarajan"),
            FactInput(text="The price of the Helios-3 battery is 4,500 euros.", object="4,500 euros")])
    return SCRPipeline(kb, smol_backend, make_scope_checker("default", smol_backend, 0.59, embed=embedder.embed),
                       k=5,
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


def test_object_first_answers_start_with_the_fact_object_only_when_it_is_the_answer(pipeline):
    """Object-first style (the default): a question asking exactly the fact's relation gets an answer that starts
    with the fact's object and goes on in the model's words; a question that goes through the fact is answered as
    in the paper style; an unknown style is refused."""
    asked = ["Who is the CEO of Northwind Labs?", "Who was the CEO of Northwind Labs born to?",
             "What is the capital of France?"]
    assert pipeline.answer_style == "object-first"  # the default
    pipeline.answer_style = "paper"
    paper = pipeline.ask_batch(asked)
    pipeline.answer_style = "object-first"
    first = pipeline.ask_batch(asked)
    assert first[0].in_scope and first[0].answer.startswith("Priya Natarajan")
    assert len(first[0].answer) > len("Priya Natarajan")  # the model continued the answer
    assert first[1].in_scope and first[1].answer == paper[1].answer  # goes through the fact: not forced
    assert first[2].answer == paper[2].answer  # out of scope: the plain model's answer either way
    # A natural sentence, whose text does not start with its key: the object comes from the stored field.
    pipeline.kb.add([FactInput(text="Friedrich Merz is the Chancellor of Germany since May 2025.", subject="Germany",
                               relation="chancellor", object="Friedrich Merz")])
    chancellor = pipeline.ask("Who is the Chancellor of Germany?")
    assert chancellor.in_scope and chancellor.answer.startswith("Friedrich Merz")
    with pytest.raises(ValueError, match="unknown answer style"):
        SCRPipeline(pipeline.kb, pipeline.backend, pipeline.scope, answer_style="extractive")


def test_answers_read_several_facts_that_passed_the_scope_check(make_kb, embedder, smol_backend):
    """context_facts = 2: a question whose answer sits in the second-best of the sentences that passed the gate is
    answered from both (the document-sentence case); with 1, only the best is read; out of scope stays plain."""
    kb = make_kb()
    kb.add([FactInput(text="Northwind Labs announced a new chief executive on Monday."),
            FactInput(text="The new chief executive of Northwind Labs is Priya Natarajan.")])
    gate = make_scope_checker("similarity", smol_backend, 0.3)
    question = "Who is the new chief executive of Northwind Labs announced on Monday?"
    one = SCRPipeline(kb, smol_backend, gate, context_facts=1).ask_batch([question, "What is the capital of France?"])
    two = SCRPipeline(kb, smol_backend, gate, context_facts=2).ask_batch([question, "What is the capital of France?"])
    assert len(one[0].facts) == 1 and len(two[0].facts) == 2
    assert {f.text for f in two[0].facts} == {f.text for f in two[0].candidates}
    assert two[0].facts[0] == one[0].facts[0]  # the best first
    prompt = SCRPipeline(kb, smol_backend, gate).answer_prompt(question, two[0].facts, ScopeDecision(0))
    assert all(f.text in prompt[-1]["content"] for f in two[0].facts)
    assert two[1].answer == one[1].answer and not two[1].facts
    with pytest.raises(ValueError, match="context_facts"):
        SCRPipeline(kb, smol_backend, gate, context_facts=0)


@pytest.mark.parametrize("question, last", [
    ("Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native", "Danielle Darrieux, a native"),
    ("Category:Mathematics\nThe mother tongue of X is", "The mother tongue of X is"),  # a line break
    ("He moved to Rome. Where does he live?", "Where does he live?"),
    ("In what war did Herbert T. Levack fight in?", None),  # an initial ends no sentence
    ("The name of the spouse of Gov. DeSantis is", None),  # nor does a title
    ("The U.S. Army fought. Who won?", "Who won?"),  # nor a dotted abbreviation; the next period does
    ("Is it true? No.", None),  # one word: no question
    ("Who is the CEO of Northwind Labs?", None),  # one sentence: nothing to retry
])
def test_final_sentence(question, last):
    assert final_sentence(question) == last


def test_scope_retries_on_the_last_sentence_of_a_question_led_by_other_text(pipeline, smol_backend):
    """Text before the question dilutes its similarity to the fact: the whole question fails the check, its last
    sentence passes, and the answer is asked that sentence (or, with answer_final_sentence off, the whole question).
    An unrelated last sentence stays out of scope and is answered as before; the retry can be turned off."""
    noise = ("Shayna does this and Yossel goes still and dies. The album was recorded in Nashville but never "
             "released. It rained all week in Oslo.")
    led, unrelated = f"{noise} Who is the CEO of Northwind Labs?", f"{noise} What is the capital of France?"
    whole = pipeline.scope.decide([led], pipeline.kb.search([led], pipeline.k))[0]
    assert not whole.in_scope  # the premise of the test: the whole question finds no fact
    answered, plain = pipeline.ask_batch([led, unrelated])
    assert answered.in_scope and answered.facts[0].text == FACTS[0]
    assert answered.question == led and answered.scoped_on == "Who is the CEO of Northwind Labs?"
    assert answered.answer == pipeline.ask("Who is the CEO of Northwind Labs?").answer  # asked the sentence alone
    assert "Priya Natarajan" in answered.answer
    assert not plain.in_scope and plain.scoped_on is None
    assert plain.answer == smol_backend.generate([[{"role": "user", "content": unrelated}]], 24)[0]
    pipeline.answer_final_sentence = False
    whole = pipeline.ask(led)
    assert whole.in_scope and whole.scoped_on == answered.scoped_on
    assert led in pipeline.answer_prompt(pipeline.asked(led, ScopeDecision(0, question=whole.scoped_on)),
                                         whole.facts, ScopeDecision(0))[-1]["content"]
    pipeline.scope_final_sentence = False
    assert not pipeline.ask(led).in_scope


def test_the_retry_on_a_last_sentence_keeps_the_whole_questions_names(make_kb, embedder, smol_backend, tmp_path):
    """"It is located in", the last sentence of "Where is Arnold Arboretum? It is located in", names nothing, so a
    sentence of another document that names nothing either passes the name check on it. With ``retry_names`` (on
    wherever the name check is) such a fact must name what the whole question names; a sentence that does still
    answers a question led by unrelated text."""
    kb = make_kb()
    kb.add([FactInput(text="Some have suggested that it may be located in another state or even another country."),
            FactInput(text="Danielle Darrieux was a native of England, her family said.")])
    scope = make_scope_checker("default", None, 0.59, embed=embedder.embed)
    questions = ["Where is Arnold Arboretum? It is located in",
                 "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native"]
    for retry_names, first_in_scope in ((False, True), (True, False)):
        hits, decisions = SCRPipeline(kb, None, scope, retry_names=retry_names).decide(questions)
        assert decisions[0].in_scope is first_in_scope
        assert decisions[1].in_scope and decisions[1].question == "Danielle Darrieux, a native"
        assert "Darrieux" in hits[1][decisions[1].fact_index].text
    for settings, expected in ((Settings(kb_dir=tmp_path / "kb"), True),
                               (Settings(kb_dir=tmp_path / "kb", scope_names=False), False),
                               (Settings(kb_dir=tmp_path / "kb", scope_mode="similarity"), False)):
        assert Engine(settings, backend=smol_backend, embedder=embedder).pipeline.retry_names is expected
    # The retry asks for the question's name as the name check does (scope_name_match): here only the retry's
    # filter judges names (the scope check's own name check is off).
    kb.add([FactInput(text="Derrick Brooks, the famous linebacker, played as a midfielder.")])
    nameless = make_scope_checker("default", None, 0.59, embed=embedder.embed, names=False)
    question = ["Shayna does this and Yossel goes still and dies. Aaron Brooks, the linebacker, played as a"]
    for match, in_scope in (("last-word", True), ("whole-name", False)):
        _, decisions = SCRPipeline(kb, None, nameless, retry_names=True, name_match=match).decide(question)
        assert decisions[0].in_scope is in_scope, match
    engine = Engine(Settings(kb_dir=tmp_path / "kb", scope_name_match="last-word"), backend=smol_backend,
                    embedder=embedder)
    assert engine.pipeline.name_match == "last-word" and engine.scope.name_match == "last-word"


@pytest.mark.parametrize("bad, message", [("", "empty"), ("   ", "empty"), ("x" * 201, "limit is 200"),
                                          (42, "must be text")])
def test_pipeline_rejects_bad_questions(pipeline, bad, message):
    with pytest.raises(QuestionError, match=message):
        pipeline.ask_batch([bad])
