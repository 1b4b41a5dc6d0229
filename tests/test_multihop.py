"""Multi-hop questions (MQuAKE-hard): the loader, the scoring, SCR's multi-hop mode on real cases with the embedded
SmolLM2 and the real embedder, and `scr eval-multihop` end to end (reports written, resumed without new work).

Assertions are about structure and retrieval, not about the 135M model answering right."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import DATA_DIR

MQUAKE = DATA_DIR / "multihop" / "MQuAKE-hard.json"
pytestmark = pytest.mark.data  # nearly every test here reads the real file


@pytest.fixture(scope="module")
def cases():
    from scr.evaluation.mquake import load_mquake

    return load_mquake(MQUAKE)


# ----- loader ----------------------------------------------------------------------------------------------------
def test_loader_reads_every_record(cases):
    assert len(cases) == 429
    assert all(len(c.edits) == 4 and len(c.questions) == 3 and len(c.single_hops) == 4 for c in cases)
    first = cases[0]
    assert first.case_id == "7417"
    # The paper's memory sentence: prompt.format(subject) + " " + target_new + "."
    assert first.facts() == ["Hey Jude was performed by Madonna.", "The director of Madonna is Narendra Modi.",
                             "Narendra Modi is a citizen of Australia.", "The official language of Australia is Arabic."]
    request = first.edits[0].edit_request()
    assert (request.prompt, request.subject, request.target_new, request.target_true) == \
        ("Hey Jude was performed by", "Hey Jude", "Madonna", "The Beatles")
    assert first.new_answers[0] == "Arabic" and "Arabic language" in first.new_answers
    assert first.old_answers[0] == "English"
    # Every link of MQuAKE-hard's chains is edited, and each single-hop question is its edit's question.
    assert all(hop.edit == n for c in cases for n, hop in enumerate(c.single_hops))
    assert first.single_hops[1].question == "Who is the director of Madonna?"
    assert "Modi" in first.single_hops[1].answers


def _write(path, records):
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("breakage, message", [
    (lambda r: r.pop("new_answer"), r"record 1 \(case_id 7428\): 'new_answer' must be non-empty text"),
    (lambda r: r["requested_rewrite"][2].update(prompt="no subject slot"),
     r"record 1 \(case_id 7428\), requested_rewrite\[2\]: 'prompt' must hold exactly one '\{\}'"),
    (lambda r: r.update(questions=[]), r"record 1 \(case_id 7428\): 'questions' must be a non-empty list"),
    (lambda r: r["new_single_hops"][0].update(answer_alias="Madonna"),
     r"record 1 \(case_id 7428\), new_single_hops\[0\]: 'answer_alias' must be a list of texts"),
])
def test_loader_names_the_malformed_record(tmp_path, breakage, message):
    from scr.evaluation.data import DatasetError
    from scr.evaluation.mquake import load_mquake

    records = json.loads(MQUAKE.read_text())[:3]
    breakage(records[1])
    with pytest.raises(DatasetError, match=message):
        load_mquake(_write(tmp_path / "bad.json", records))


def test_loader_rejects_other_shapes(tmp_path):
    from scr.evaluation.data import DatasetError
    from scr.evaluation.mquake import load_mquake

    with pytest.raises(DatasetError, match="non-empty JSON list"):
        load_mquake(_write(tmp_path / "obj.json", {"data": 1}))
    with pytest.raises(DatasetError, match="record 0: expected a JSON object"):
        load_mquake(_write(tmp_path / "list.json", ["text"]))
    records = json.loads(MQUAKE.read_text())[:2]
    records[1]["case_id"] = records[0]["case_id"]
    with pytest.raises(DatasetError, match="case_id 7417 occurs more than once"):
        load_mquake(_write(tmp_path / "dup.json", records))
    with pytest.raises(FileNotFoundError):
        load_mquake(tmp_path / "missing.json")


# ----- scoring ---------------------------------------------------------------------------------------------------
def test_mentions_by_hand():
    from scr.evaluation.multihop import mentions, mentions_word

    aliases = ["Arabic", "ar", "Arabian language", "Arabic language"]
    assert mentions("The official language of Australia is ARABIC.", aliases)
    assert not mentions("The official language of Australia is English.", ["Arabic", "Arabian language"])
    # MQuAKE's substring test finds the code "ar" inside "are"; the whole-word test does not.
    assert mentions("There are many languages.", aliases)
    assert not mentions_word("There are many languages.", aliases)
    assert mentions_word("It is Arabic.", aliases) and mentions_word("code: ar", aliases)
    assert not mentions("anything", ["", "  "])  # empty aliases never match


class _Canned:
    """A stand-in for the unmodified model with fixed answers, to check the case-level rule by hand."""

    name = "base"

    def __init__(self, answers):
        self.answers = answers

    def answer(self, queries, max_new_tokens):
        from scr.evaluation.methods import Response

        return [Response(self.answers.get(q.probe.prompt, "no idea")) for q in queries]


def test_case_is_right_when_any_paraphrase_is(cases, tmp_path):
    from scr.evaluation.multihop import MultiHopEvaluator, make_multihop_config

    case = cases[0]
    ev = MultiHopEvaluator(make_multihop_config(data=str(MQUAKE), limit=1, out=str(tmp_path)))
    wrong = {q: "English, of course." for q in case.questions}
    one_right = dict(wrong, **{case.questions[2]: "They speak Arabic there."})
    single = {case.single_hops[0].question: "Madonna performed it.",
              case.single_hops[3].question: "English is spoken in Australia."}
    [row] = ev.evaluate_chunk(_Canned({**wrong, **single}), [case])
    assert [q["correct"] for q in row["multihop"]] == [False, False, False]
    assert all(q["old"] for q in row["multihop"])  # "English" is the answer before the edits
    assert [s["correct"] for s in row["single"]] == [True, False, False, False]
    [row] = ev.evaluate_chunk(_Canned(one_right), [case])
    assert [q["correct"] for q in row["multihop"]] == [False, False, True]


# ----- the library's multi-hop mode ----------------------------------------------------------------------------------
def test_rule_chain():
    from scr.multihop import parse_step, rule_chain

    assert rule_chain('What is the official language of the country of citizenship of the director/manager of '
                      '"Hey Jude"\'s performer?') == (["performer", "director/manager", "country of citizenship",
                                                       "official language"], "Hey Jude")
    assert rule_chain("Who is the founder of Bank of America?") == (["founder"], "Bank of America")
    assert rule_chain("Which city is the capital of the country where the director of X was born?") is None
    assert parse_step("Subquestion: Who performed Hey Jude?\nAnswer: x") == ("question", "Who performed Hey Jude?")
    assert parse_step("Final answer: Arabic") == ("final", "Arabic")
    assert parse_step("I am not sure")[0] == "bad"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, smol_backend, embedder, cases):
    """An engine over a knowledge base holding the edits of the first ten cases (so retrieval has distractors)."""
    from scr.config import Settings
    from scr.engine import Engine

    settings = Settings(kb_dir=tmp_path_factory.mktemp("mh") / "kb", max_new_tokens=16)
    eng = Engine(settings, backend=smol_backend, embedder=embedder)
    eng.add_facts([e.fact() for c in cases[:10] for e in c.edits])
    yield eng
    eng.close()


def test_rules_walk_the_chain_through_stored_facts(engine, cases):
    from scr.multihop import MultiHopAnswer, MultiHopReasoner
    from scr.scope import SimilarityScope, SubjectRelationScope

    # Hops use the default check's key gate: the relation-wording test rejects this chain's first hop
    # ("What is the performer of Hey Jude?" against "Hey Jude was performed by Madonna.": cosine 0.70 < 0.75).
    assert isinstance(engine.pipeline.scope, SubjectRelationScope)
    assert isinstance(MultiHopReasoner(engine.pipeline).hops.scope, SimilarityScope)

    result = engine.ask_multihop(cases[0].questions[0], max_hops=2, decompose="rules")
    assert isinstance(result, MultiHopAnswer) and result.stop == "max_hops"
    first, second = result.hops
    assert first.question == "What is the performer of Hey Jude?" and first.written_by == "rules"
    assert first.in_scope and first.fact.text == "Hey Jude was performed by Madonna."
    # The next hop asks about the first fact's object, and finds the next link of the chain.
    assert first.entity == "Madonna"
    assert second.question == "What is the director/manager of Madonna?"
    assert second.fact is not None and second.fact.text == "The director of Madonna is Narendra Modi."
    assert [f.text for f in result.facts] == cases[0].facts()[:2]
    assert result.answer.strip()


def test_llm_decomposition_records_hops_and_retrieves_the_cases_facts(engine, cases):
    questions = [cases[0].questions[0], cases[1].questions[0]]
    results = engine.ask_multihop_batch(questions, max_hops=2, decompose="llm")
    own = {f for c in cases[:10] for f in c.facts()}
    for case, result in zip(cases[:2], results):
        assert result.question == case.questions[0] and result.answer.strip()
        assert 1 <= len(result.hops) <= 2 and result.stop in ("final", "max_hops", "no_question", "rules_done")
        for hop in result.hops:
            assert hop.question.strip() and hop.written_by in ("llm", "rules")
            assert len(hop.candidates) == 5 and all(c.text in own for c in hop.candidates)
            assert hop.in_scope == (hop.fact is not None)
        # The first sub-question retrieves a link of the case's own chain.
        assert set(case.facts()) & {c.text for c in result.hops[0].candidates}
        assert result.in_scope and set(f.text for f in result.facts) <= own
    assert results[0].hops[0].fact.text == "Hey Jude was performed by Madonna."
    assert set(results[0].timings) == {"decompose_s", "hops_s", "answer_s", "total_s"}


def test_walk_follows_the_stored_links_from_the_subject_the_question_names(engine, cases):
    """The default decomposition: no sub-question is written while stored links go on. Every paraphrase of the
    first case walks a prefix of its four edits in chain order (the stop rule may end a paraphrase's walk early:
    "manager/director" is worded apart from "The director of", and the LLM takes over from there); a full walk's
    answer leads with the last link's object."""
    results = engine.ask_multihop_batch(cases[0].questions)
    chain = cases[0].facts()
    full = 0
    for question, result in zip(cases[0].questions, results):
        walked = [h.fact.text for h in result.hops if h.written_by == "kb"]
        assert walked == chain[:len(walked)], question
        assert [h.written_by for h in result.hops[:len(walked)]] == ["kb"] * len(walked)  # walked links come first
        assert [h.entity for h in result.hops[:len(walked)]] == ["Madonna", "Narendra Modi", "Australia",
                                                                 "Arabic"][:len(walked)]
        # Each link was chosen among the facts stored about the entity reached, all of them with that subject.
        assert all(c.subject.lower() == h.fact.subject.lower() for h in result.hops[:len(walked)]
                   for c in h.candidates)
        if len(walked) == 4:
            full += 1
            assert result.stop == "max_hops" and result.answer.startswith("Arabic")  # object-first
    assert full >= 1
    assert set(results[0].timings) == {"decompose_s", "hops_s", "answer_s", "total_s"}
    # In the paper's answer style the model answers from the facts alone: no prescribed start.
    paper = engine.pipeline  # a pipeline of its own: the engine's settings are untouched
    paper.answer_style = "paper"
    seen = []
    paper.backend = _Recorder(paper.backend, seen)
    paper.ask_multihop(cases[0].questions[0])
    final = seen[-1]
    assert final[-1]["role"] == "user" and "\n".join(cases[0].facts()) in final[-1]["content"]


class _Recorder:
    """A backend that records the prompts it is given and passes them on."""

    def __init__(self, backend, seen):
        self.backend, self.seen = backend, seen

    def generate(self, prompts, max_new_tokens=None):
        self.seen.extend(prompts)
        return self.backend.generate(prompts, max_new_tokens)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_walk_chooses_the_link_the_question_asks_and_stops_at_unrelated_ones(tmp_path, smol_backend, embedder):
    from scr.config import Settings
    from scr.engine import Engine
    from scr.multihop import MultiHopReasoner

    eng = Engine(Settings(kb_dir=tmp_path / "kb", max_new_tokens=12), backend=smol_backend, embedder=embedder)
    eng.add_facts([
        {"text": "Hey Jude was performed by Madonna.", "subject": "Hey Jude", "object": "Madonna"},
        {"text": "Madonna is a citizen of Australia.", "subject": "Madonna", "object": "Australia"},
        {"text": "The capital of Australia is Oderzo.", "subject": "Australia", "object": "Oderzo"},
        {"text": "Australia is located in the continent of South America.", "subject": "Australia",
         "object": "South America"},
        {"text": "Oderzo is twinned with Zagreb.", "subject": "Oderzo", "object": "Zagreb"},
    ])
    try:
        capital, continent = eng.ask_multihop_batch([
            "What is the capital of the country of citizenship of the performer of Hey Jude?",
            "On which continent is the country of citizenship of the performer of Hey Jude?"], max_hops=4)
        walked = lambda r: [h.fact.text for h in r.hops if h.written_by == "kb"]  # noqa: E731
        # "capital" in the question picks the capital over the continent (MiniLM's cosine alone prefers the
        # continent for "country"), and "continent" the other way round.
        assert walked(capital)[:3] == ["Hey Jude was performed by Madonna.", "Madonna is a citizen of Australia.",
                                       "The capital of Australia is Oderzo."]
        assert walked(continent) == ["Hey Jude was performed by Madonna.", "Madonna is a citizen of Australia.",
                                     "Australia is located in the continent of South America."]
        # Oderzo's twin town shares no word with the question and its wording is far from it: the walk stops
        # there, and the LLM may go on from Oderzo, but no stored link is walked to Zagreb.
        assert "Oderzo is twinned with Zagreb." not in walked(capital)
        # One link is a single-hop question: kept where the scope check accepts it, given up where the question
        # asks something else about the subject it names.
        single, other = eng.ask_multihop_batch(["Who performed Hey Jude?", "When was Hey Jude released?"])
        assert walked(single) == ["Hey Jude was performed by Madonna."] and single.answer.startswith("Madonna")
        assert walked(other) == []  # (the LLM's sub-questions may still reach the fact: that is llm mode's call)
        # The same with the hop bound at one: the walk had no chance to stop by itself.
        bounded = MultiHopReasoner(eng.pipeline, max_hops=1).ask_batch(["Who performed Hey Jude?",
                                                                       "When was Hey Jude released?"])
        assert [walked(r) for r in bounded] == [["Hey Jude was performed by Madonna."], []]
    finally:
        eng.close()


def test_question_the_updates_do_not_touch_keeps_its_answer(engine):
    question = "What is the capital of the country where the Eiffel Tower stands?"
    result = engine.ask_multihop(question, max_hops=1)
    assert result.hops and not result.in_scope and result.facts == []
    assert result.answer == engine.base_answers([question])[0]


def test_bad_arguments(engine):
    from scr.multihop import MultiHopReasoner
    from scr.pipeline import QuestionError

    with pytest.raises(ValueError, match="max_hops"):
        MultiHopReasoner(engine.pipeline, max_hops=0)
    with pytest.raises(ValueError, match="unknown decomposition"):
        MultiHopReasoner(engine.pipeline, decompose="magic")
    with pytest.raises(QuestionError, match="empty"):
        engine.ask_multihop("  ")


# ----- the evaluator end to end -------------------------------------------------------------------------------------
def _rows(path):
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def test_eval_multihop_end_to_end_and_resume(tmp_path, smollm2_dir, cases):
    from scr.cli import app

    out = tmp_path / "run"
    args = ["eval-multihop", "--data", str(MQUAKE), "--methods", "base,scr", "--limit", "2", "--max-hops", "2",
            "--max-new-tokens", "12", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"base", "scr"}
    run = report["run"]
    assert run["command"].startswith("scr eval-multihop --data ") and "--limit 2" in run["command"]
    assert run["cases"] == 2 and run["cases_in_file"] == 429 and run["scr_kb"] == "dataset"
    assert report["methods"]["scr"]["protocol"] == "dataset" and report["methods"]["base"]["protocol"] == "none"
    for name, m in report["methods"].items():
        assert m["n_cases"] == 2 and m["complete"]
        for key in ("multihop", "multihop_word", "single_hop", "single_hop_word"):
            assert 0.0 <= m["metrics"][key] <= 1.0, (name, key)
        assert m["cost"]["wall_s"] > 0 and m["cost"]["peak_rss_mb"] > 0 and m["cost"]["questions"] == 14
        # The headline numbers, recomputed by hand from the records.
        rows = [r for r in _rows(out / m["records"]) if r["type"] == "case"]
        by_case = {c.case_id: c for c in cases[:2]}
        right = [any(q["answer"].lower().find(a.lower()) >= 0 for q in r["multihop"]
                     for a in by_case[r["case_id"]].new_answers) for r in rows]
        assert m["metrics"]["multihop"] == pytest.approx(sum(right) / 2)
        singles = [s for r in rows for s in r["single"]]
        assert len(singles) == 8
        assert m["metrics"]["single_hop"] == pytest.approx(sum(s["correct"] for s in singles) / 8)
    scr_rows = [r for r in _rows(out / "records/scr.jsonl") if r["type"] == "case"]
    assert all(len(q["hops"]) <= 2 for r in scr_rows for q in r["multihop"])
    assert any(h["by"] == "kb" for r in scr_rows for q in r["multihop"] for h in q["hops"])  # the default: a walk
    assert any(q["used"] for r in scr_rows for q in r["multihop"])  # hops answered with the case's own edits
    apply = [r for r in _rows(out / "records/scr.jsonl") if r["type"] == "time" and r["phase"] == "apply"]
    assert apply[0]["details"]["facts_added"] == report["run"]["kb_facts"] == 769  # every case's edits, once
    md = (out / "report.md").read_text()
    assert "| method | updates | cases | multi-hop acc" in md and "--limit 2" in md
    assert (out / "multihop.png").stat().st_size > 1000

    # Resume: a second run finds every case done, loads no model and writes no new records.
    before = {p.name: p.read_text() for p in (out / "records").glob("*.jsonl") if p.name != "_sessions.jsonl"}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    after = {p.name: p.read_text() for p in (out / "records").glob("*.jsonl") if p.name != "_sessions.jsonl"}
    assert after == before
    sessions = _rows(out / "records/_sessions.jsonl")
    assert len(sessions) == 2 and sessions[-1]["loaded_model"] is False
    assert json.loads((out / "report.json").read_text())["methods"]["scr"]["metrics"] == \
        report["methods"]["scr"]["metrics"]


def test_eval_multihop_rejects_unknown_method(tmp_path):
    from scr.cli import app

    result = CliRunner().invoke(app, ["eval-multihop", "--data", str(MQUAKE), "--methods", "base,magic",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown method 'magic'" in result.output


def test_methods_are_also_compared_on_the_cases_they_all_answered():
    """A long editing run in progress has fewer cases than SCR: the report adds every method's scores on the
    cases all of them have, beside each method's own rows."""
    from scr.evaluation.multihop_report import common_cases

    def summary(results, complete):
        return {"complete": complete, "cases": [{"case_id": cid, "multihop": right, "multihop_word": word,
                                                 "single_hop": single} for cid, right, word, single in results]}

    methods = {"scr": summary([("1", True, True, 1.0), ("2", True, False, 0.5), ("3", False, False, 0.0)], True),
               "memit": summary([("2", False, False, 0.25), ("1", True, True, 0.75)], False)}
    common = common_cases(methods)
    assert common["n_cases"] == 2
    assert common["methods"]["scr"] == {"multihop": 1.0, "multihop_word": 0.5, "single_hop": 0.75}
    assert common["methods"]["memit"] == {"multihop": 0.5, "multihop_word": 0.5, "single_hop": 0.5}
    methods["memit"]["complete"] = True
    assert common_cases(methods) is None  # every method complete: the main table says it all
    assert common_cases({"scr": methods["scr"]}) is None
