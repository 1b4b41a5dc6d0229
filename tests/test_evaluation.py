"""The evaluator without models: datasets, metric functions, aggregation, judge parsing, and a whole run with a
scripted backend whose answers are known, so every metric is checked against a value computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scr.config import Settings
from scr.evaluation import EvalConfig, make_config
from scr.evaluation.config import EvalConfigError
from scr.evaluation.data import DatasetError, answer_groups, fact_text, load_cases
from scr.evaluation.data import Case, Probe
from scr.evaluation.metrics import (aggregate, case_scores, conflicting_updates, contains, edited_fact_probes, exact_match, parse_verdict,
                                    scope_metrics, token_accuracy, token_agreement)
from scr.llm.base import TokenScores

from conftest import DATA_DIR

SHIPPED = [("knowedit/wiki_counterfact_test.json", 839), ("knowedit/zsre_test.json", 1301),
           ("knowedit/wiki_counterfact_train.json", 1427), ("counterfact/counterfact_train.json", 10000)]


# ----- datasets ------------------------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.parametrize("name,count", SHIPPED)
def test_every_record_of_the_shipped_files_loads(name, count):
    path = DATA_DIR / name
    cases = load_cases(path)
    assert len(cases) == count
    assert len({c.case_id for c in cases}) == count
    for c in cases:
        assert c.prompt and c.target_new
        assert c.probes[0].kind == "reliability" and c.probes[0].prompt == c.prompt
        assert all(p.prompt for p in c.probes)


@pytest.mark.data
def test_knowedit_shapes_become_probes():
    wiki = load_cases(DATA_DIR / "knowedit/wiki_counterfact_test.json", limit=1)[0]
    assert wiki.subject == "Leonardo DiCaprio" and wiki.target_new == "Syria"
    assert wiki.target_true == "United States of America"
    assert wiki.fact() == {"text": "The name of the country of citizenship of Leonardo DiCaprio is Syria.",
                           "subject": "Leonardo DiCaprio", "object": "Syria", "source": "eval:0"}
    labels = [p.label for p in wiki.probes]
    assert labels[:2] == ["reliability", "generalization"]
    assert "portability.Reasoning" in labels and "locality.Relation_Specificity" in labels
    currency = next(p for p in wiki.probes if "currency" in p.prompt)
    assert currency.aliases == ["Syrian pound", "SYP", "LS", "Syrian lira"] and currency.target == "Syrian pound"
    assert not next(p for p in wiki.probes if p.kind == "locality").in_scope

    zsre = load_cases(DATA_DIR / "knowedit/zsre_test.json", limit=1)[0]
    assert zsre.fact()["text"] == "Which family does Epaspidoceras belong to? Noctuidae."
    assert [p.kind for p in zsre.probes] == ["reliability", "generalization", "portability", "locality", "locality"]


def test_answer_shapes():
    assert answer_groups("Paris", "r", "f") == (("Paris",),)
    assert answer_groups(["Paris", "Paname"], "r", "f") == (("Paris", "Paname"),)
    assert answer_groups([["A", "a1"], ["B"]], "r", "f") == (("A", "a1"), ("B",))
    assert answer_groups({"str": "Paris", "id": "Q90"}, "r", "f") == (("Paris",),)
    assert answer_groups([], "r", "f") == () and answer_groups(None, "r", "f") == ()
    assert fact_text("Who is it?", "Bob") == "Who is it? Bob."
    assert fact_text("The capital is", "St. Louis.") == "The capital is St. Louis."


def test_bad_records_name_the_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "target_new": "t"}) + "\n" + json.dumps({"target_new": "t"}) + "\n")
    with pytest.raises(DatasetError, match="bad.jsonl line 2: missing or empty 'prompt'"):
        load_cases(path)
    path.write_text('{"prompt": "p", "target_new": "t"}\n{not json\n')
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        load_cases(path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "p", "target_new": "t"},
                               {"prompt": "p", "target_new": "t", "locality": {"RS": [{"ground_truth": "x"}, 3]}}]))
    with pytest.raises(DatasetError, match=r"bad.json record 1, locality.RS\[1\]"):
        load_cases(bad, "knowedit")
    with pytest.raises(DatasetError, match="record 0: missing or empty 'target_new'"):
        bad.write_text(json.dumps([{"prompt": "p", "target_new": []}]))
        load_cases(bad)


# ----- metric functions ----------------------------------------------------------------------------------------
def test_contains_and_exact_match_with_aliases():
    aliases = ["United States of America", "USA", "the States"]
    assert contains("He is a citizen of the united states of america.", aliases)
    assert contains("From the USA", aliases)
    assert not contains("He is a citizen of Italy.", aliases)  # none of the aliases
    assert not contains("anything", ["", "  "])  # empty aliases never match
    assert exact_match("  usa. ", aliases) and exact_match('"The States"', aliases)
    assert not exact_match("The USA", aliases)  # contained, but not exact
    assert not exact_match("", [""])


def test_token_metrics_from_token_scores():
    s = TokenScores(tokens=["a", "b", "c", "d"], logprobs=[-1, -1, -1, -1], greedy=[True, False, True, True],
                    argmax=[1, 7, 3, 4])
    assert token_accuracy(s) == 0.75
    ref = TokenScores(tokens=["a", "b", "c", "d"], logprobs=[0] * 4, greedy=[True, False, False, True],
                      argmax=[1, 8, 9, 4])
    assert token_agreement(s, ref) == 0.5  # positions 0 and 3 share the argmax
    # Without argmax ids: compare whether each position's argmax is the continuation token.
    s.argmax, ref.argmax = [], []
    assert token_agreement(s, ref) == 0.75
    assert token_accuracy(TokenScores([], [], [])) == 0.0


@pytest.mark.parametrize("text,verdict", [("A", True), ("B", False), (" A.\n", True), ("B.", False),
                                          ("CORRECT", None), ("INCORRECT", None), ("A or B", None), ("a", None),
                                          ("", None), (None, None), ("Answer: A", None), ("AB", None)])
def test_judge_verdicts_are_parsed_exactly(text, verdict):
    assert parse_verdict(text) is verdict


def test_judge_over_an_openai_compatible_client():
    from scr.evaluation.judge import Judge

    class Client:
        def __init__(self):
            self.models = self
            self.chat = self
            self.completions = self
            self.prompts = []

        def list(self):
            return type("L", (), {"data": [type("M", (), {"id": "judge-model"})()]})()

        def create(self, model, messages, **kw):
            self.prompts.append(messages[0]["content"])
            text = {"Paris": "A", "Lyon": "B"}.get(messages[0]["content"].split("Answer to grade: ")[1].split("\n")[0],
                                                   "INCORRECT")
            return type("R", (), {"choices": [type("C", (), {"message": type("M", (), {"content": text})()})()]})()

    client = Client()
    judge = Judge("http://x/v1", None, client=client, workers=2)
    out = judge.judge([("Capital of France?", ["Paris"], "Paris"), ("q", ["Paris"], "Lyon"), ("q", ["Paris"], "?")])
    assert out == [(True, "A"), (False, "B"), (None, "INCORRECT")]
    assert judge.model == "judge-model" and "Reference answer(s): Paris" in client.prompts[0]


def test_aggregation_by_hand():
    probes = [{"kind": "reliability", "sub": None, "score": 1.0},
              {"kind": "portability", "sub": "Reasoning", "score": 1.0},
              {"kind": "portability", "sub": "Reasoning", "score": 0.0},
              {"kind": "portability", "sub": "Subject_Aliasing", "score": 1.0},
              {"kind": "locality", "sub": "RS", "score": 0.0}]
    one = case_scores(probes)
    # Reasoning = 0.5, Subject_Aliasing = 1.0, portability = their mean.
    assert one == {"reliability": 1.0, "portability.Reasoning": 0.5, "portability.Subject_Aliasing": 1.0,
                   "locality.RS": 0.0, "portability": 0.75, "locality": 0.0}
    two = case_scores([{"kind": "reliability", "sub": None, "score": 0.0},
                       {"kind": "generalization", "sub": None, "score": 1.0}])
    agg = aggregate([one, two])
    assert agg["reliability"] == 0.5 and agg["generalization"] == 1.0  # only the case that has it
    assert agg["portability"] == 0.75 and agg["locality"] == 0.0
    assert agg["average"] == pytest.approx((0.5 + 1.0 + 0.0 + 0.75) / 4)


def test_scope_metrics_by_hand():
    probes = [{"kind": "reliability", "in_scope": True, "own_fact": True},
              {"kind": "generalization", "in_scope": False},
              {"kind": "portability", "in_scope": True, "own_fact": False},
              {"kind": "locality", "in_scope": False}, {"kind": "locality", "in_scope": True},
              {"kind": "locality", "in_scope": False}, {"kind": "reliability"}]  # no decision: not counted
    m = scope_metrics(probes)
    assert m["scope.accept_rate"] == pytest.approx(2 / 3) and m["scope.reject_rate"] == pytest.approx(2 / 3)
    assert m["scope_accuracy"] == pytest.approx(2 / 3) and m["scope.right_fact"] == pytest.approx(1 / 3)
    assert m["scope.accuracy_pooled"] == pytest.approx(4 / 6)


def _case(case_id, index, subject, true, new, locality):
    return Case(case_id, index, f"The father of {subject} is", new, subject, true,
                probes=[Probe("locality", prompt, ((answer,),)) for prompt, answer in locality])


def test_locality_probes_that_ask_an_edited_fact():
    """A locality probe that names an update's subject and expects its original answer asks the edited fact;
    one that excludes the update's new object asks for another value; groups of N do not see each other."""
    cases = [_case("a", 0, "Cheyenne Brando", "Marlon Brando", "Marcel Brando",
                   [("The father of Cheyenne Brando is", "marlon brando."),  # the update's own relation
                    ("The mother of Cheyenne Brando is", "Tarita"),
                    ("The father of Cheyenne Brando, which is not Marcel Brando, is", "Marlon Brando")]),
             _case("b", 1, "Leto", "Coeus", "Zeus", [("Cheyenne Brando father", "Marlon Brando")])]
    assert edited_fact_probes(cases, 2) == {("a", "The father of Cheyenne Brando is"), ("b", "Cheyenne Brando father")}
    assert edited_fact_probes(cases, 1) == {("a", "The father of Cheyenne Brando is")}
    # Report side: locality and scope accuracy without them (hand-computed).
    from scr.evaluation.report import _unedited_metrics

    records = [{"case_id": "a", "probes": [{"kind": "reliability", "sub": None, "score": 1.0, "in_scope": True},
                                           {"kind": "locality", "sub": None, "prompt": "The father of Cheyenne Brando is",
                                            "score": 0.0, "in_scope": True},
                                           {"kind": "locality", "sub": None, "prompt": "The mother of Cheyenne Brando is",
                                            "score": 1.0, "in_scope": False}]}]
    m = _unedited_metrics(records, edited_fact_probes(cases, 2))
    assert m == {"locality_edited_share": 0.5, "locality_unedited": 1.0, "scope_accuracy_unedited": 1.0}
    assert _unedited_metrics(records, set()) == {}


def test_updates_that_contradict_each_other():
    """Two updates of one fact (same subject and original answer) to different objects contradict each other
    within a group; the same object twice, another original answer, or another group does not."""
    cases = [_case("a", 0, "USA-64", "1992", "3 December 1992", []),
             _case("b", 1, "USA-64", "1992.", "2 March 1992", []),
             _case("c", 2, "USA-64", "Vandenberg", "Cape Canaveral", []),  # another fact of the same subject
             _case("d", 3, "CSPro", "GPL", "BSD license", []),
             _case("e", 4, "cspro", "gpl", "bsd license", []),  # the same update twice
             _case("f", 5, "USA-64", "1992", "3 March 1990", [])]
    assert conflicting_updates(cases, 6) == {"a", "b", "f"}
    assert conflicting_updates(cases, 2) == {"a", "b"}  # f's group is {e, f}
    assert conflicting_updates(cases, 1) == set()
    from scr.evaluation.report import _unconflicted_metrics

    per_case = [({"case_id": "a"}, {"reliability": 1.0, "generalization": 0.0}),
                ({"case_id": "b"}, {"reliability": 0.0, "generalization": 0.0}),
                ({"case_id": "d"}, {"reliability": 1.0, "generalization": 0.5})]
    assert _unconflicted_metrics(per_case, {"a", "b"}) == pytest.approx(
        {"conflicted_share": 2 / 3, "reliability_unconflicted": 1.0, "generalization_unconflicted": 0.5})
    assert _unconflicted_metrics(per_case, set()) == {}


@pytest.mark.data
def test_knowedit_zsre_updates_that_contradict_each_other():
    """ZsRE test updates USA-64's launch date three times; WikiData_counterfact rarely repeats a fact."""
    zsre = load_cases(DATA_DIR / "knowedit/zsre_test.json")
    conflicted = conflicting_updates(zsre, len(zsre))
    assert {c.case_id for c in zsre if c.subject == "USA-64"} <= conflicted
    assert 0.2 < len(conflicted) / len(zsre) < 0.3
    assert conflicting_updates(zsre, 1) == set()
    wiki = load_cases(DATA_DIR / "knowedit/wiki_counterfact_test.json")
    assert len(conflicting_updates(wiki, len(wiki))) / len(wiki) < 0.05


@pytest.mark.data
def test_knowedit_locality_probes_that_ask_the_edited_fact():
    """ZsRE test: Cheyenne Brando's update changes his father, and its own locality probe asks for his father."""
    zsre = load_cases(DATA_DIR / "knowedit/zsre_test.json")
    flagged = edited_fact_probes(zsre, 1)
    brando = next(c for c in zsre if c.subject == "Cheyenne Brando")
    assert (brando.case_id, "The father of Cheyenne Brando is") in flagged
    assert 0.1 < len(flagged) / sum(p.kind == "locality" for c in zsre for p in c.probes) < 0.2
    wiki = load_cases(DATA_DIR / "knowedit/wiki_counterfact_test.json", limit=1)
    assert not edited_fact_probes(wiki, 1)  # "..., which is not Syria, is" asks for another value


def test_config_parsing(tmp_path):
    c = make_config(data="d.json", out="o", methods="base, scr-paper,memit", n="1,10,all")
    assert c.methods == ["base", "scr-paper", "memit"] and c.n == [1, 10, "all"]
    assert c.sizes(25) == [1, 10, 25] and c.sizes(5) == [1, 5]
    assert make_config(data="d", out="o", protocol="single", n="all").sizes(9) == [1]
    with pytest.raises(EvalConfigError, match="N must be"):
        make_config(data="d", out="o", n="0")
    with pytest.raises(EvalConfigError, match="mode"):
        make_config(data="d", out="o", mode="teacher_forcing")  # misspelt: an error, never a silent fallback
    from scr.evaluation.methods import method_names_valid

    method_names_valid(["base", "context-oracle", "scr", "scr-llm", "scr-similarity"])
    with pytest.raises(ValueError, match="unknown method 'scr-fancy'"):
        method_names_valid(["scr-fancy"])
    # SCR names may end with an answer style; each variant is its own configuration (its own records hash).
    from scr.config import Settings
    from scr.evaluation.methods import make_method

    styles = {name: make_method(name, Settings(), None, None).settings for name in
              ("scr", "scr-default-object-first", "scr-object-first", "scr-paper-answers", "scr-paper")}
    assert {n: (s.scope_mode, s.answer_style) for n, s in styles.items()} == {
        "scr": ("default", "object-first"), "scr-default-object-first": ("default", "object-first"),
        "scr-object-first": ("default", "object-first"), "scr-paper-answers": ("default", "paper"),
        "scr-paper": ("paper", "object-first")}
    assert make_method("scr", Settings(), None, None).info()["answer_style"] == "object-first"
    # The paper style adds nothing to a method's identity, so runs made before the style existed still resume.
    assert "answer_style" not in make_method("scr-paper-answers", Settings(), None, None).info()
    # Likewise the last-sentence retry: on by default, absent from the identity when off and in the paper's mode.
    assert make_method("scr", Settings(), None, None).info()["scope_final_sentence"] is True
    assert make_method("scr", Settings(), None, None).info()["answer_final_sentence"] is True
    assert "answer_final_sentence" not in make_method("scr", Settings(answer_final_sentence=False), None, None).info()
    assert "scope_final_sentence" not in make_method("scr", Settings(scope_final_sentence=False), None, None).info()
    assert "scope_final_sentence" not in make_method("scr-paper", Settings(), None, None).info()
    # And the name check for facts without a subject (subject-relation modes only).
    assert make_method("scr", Settings(), None, None).info()["scope_names"] is True
    assert "scope_names" not in make_method("scr", Settings(scope_names=False), None, None).info()
    assert "scope_names" not in make_method("scr-similarity", Settings(), None, None).info()
    with pytest.raises(ValueError, match="unknown method 'scr-fancy-object-first'"):
        method_names_valid(["scr-fancy-object-first"])


# ----- a whole run with a scripted backend --------------------------------------------------------------------
class ScriptedBackend:
    """Answers from a table (prompt text -> answer); counts calls. Implements the LLMBackend protocol."""

    name = "scripted"

    def __init__(self, table):
        self.table = table
        self.calls = 0

    @staticmethod
    def _text(prompt):
        return prompt if isinstance(prompt, str) else prompt[-1]["content"]

    def generate(self, prompts, max_new_tokens=48):
        self.calls += 1
        out = []
        for p in prompts:
            text = self._text(p)
            fact = text.split("Fact: ")[1].split("\n")[0] if text.startswith("Answer the question based") else None
            question = text.split("Question: ")[1].split("\n")[0] if fact else text
            out.append(self.table.get((fact, question), self.table.get(question, "I don't know.")))
        return out

    def token_logprobs(self, prompts, continuations):
        self.calls += 1
        out = []
        for p, c in zip(prompts, continuations):
            in_context = self._text(p).startswith("Answer the question based")
            n = 2
            out.append(TokenScores(["x"] * n, [-1.0] * n, [in_context, in_context or "Lyon" in c], argmax=[1, 2]))
        return out

    def choose(self, prompts, options):
        return [0 for _ in prompts]

    def close(self):
        pass


TINY = [
    {"case_id": "c1", "subject": "Freedonia", "prompt": "The capital of Freedonia is", "target_new": "Sylvania",
     "ground_truth": "Fredville", "rephrase": "Freedonia's capital city is",
     "portability": {"Reasoning": [{"prompt": "The country whose capital is Sylvania is",
                                    "ground_truth": [["Freedonia", "Republic of Freedonia"]]}]},
     "locality": {"Relation_Specificity": [{"prompt": "The anthem of Freedonia is", "ground_truth": ["Hail"]}]}},
    {"case_id": "c2", "subject": "Bob", "prompt": "Which city does Bob live in?", "target_new": ["Lyon", "Lugdunum"],
     "ground_truth": ["Paris"], "rephrase_prompt": "Where does Bob live?",
     "locality_prompt": "Where does Alice live?", "locality_ground_truth": "Rome"},
]
FACT1 = "The capital of Freedonia is Sylvania."
FACT2 = "Which city does Bob live in? Lyon."
ANSWERS = {
    # unmodified model
    "The capital of Freedonia is": "The capital of Freedonia is Fredville.",
    "Freedonia's capital city is": "Fredville.",
    "The country whose capital is Sylvania is": "Sylvania is a country.",
    "The anthem of Freedonia is": "Hail Freedonia.",
    "Which city does Bob live in?": "Paris.",
    "Where does Bob live?": "Bob lives in Lugdunum.",  # contains an alias of the new target by chance
    "Where does Alice live?": "Rome.",
    # with the fact in context
    (FACT1, "The capital of Freedonia is"): "Sylvania.",
    (FACT1, "Freedonia's capital city is"): "Fredville, as before.",  # contains must be false
    (FACT1, "The country whose capital is Sylvania is"): "The Republic of Freedonia.",
    (FACT1, "The anthem of Freedonia is"): "Sylvania!",
    (FACT2, "Which city does Bob live in?"): "lyon",
    (FACT2, "Where does Bob live?"): "In LYON.",
    (FACT2, "Where does Alice live?"): "Lyon.",
}


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TINY))
    return path


def test_scripted_run_matches_hand_computed_metrics(tiny_data, tmp_path):
    from scr.evaluation.runner import Evaluator

    backend = ScriptedBackend(ANSWERS)
    config = EvalConfig(data=str(tiny_data), methods=["base", "context-oracle"], out=str(tmp_path / "run"),
                        max_new_tokens=8)
    report = Evaluator(config, backend=backend, command="test", log=lambda m: None, progress=False).run()
    base = report["methods"]["base"]["metrics"]
    # c1: reliability 0 ("Fredville"), generalization 0, portability 1 ("Sylvania is a country" lacks
    #     "Freedonia"? no: it lacks both aliases -> 0). c2: reliability 0 ("Paris."), generalization 1 ("Lugdunum").
    assert base["reliability"] == 0.0
    assert base["generalization"] == 0.5
    assert base["portability"] == 0.0
    assert base["locality"] == 1.0  # the unmodified model compared with itself
    assert base["exact.generalization"] == 0.0  # "Bob lives in Lugdunum." is not an exact match
    assert base["average"] == pytest.approx((0 + 0.5 + 1 + 0) / 4)
    assert "scope_accuracy" not in base
    oracle = report["methods"]["context-oracle"]["metrics"]
    # reliability: "Sylvania." and "lyon" both contain the target -> 1; exact: both exact after normalisation.
    assert oracle["reliability"] == 1.0 and oracle["exact.reliability"] == 1.0
    # generalization: "Fredville, as before." lacks "Sylvania" (contains false) -> 0; "In LYON." -> 1.
    assert oracle["generalization"] == 0.5
    assert oracle["portability"] == 1.0  # "The Republic of Freedonia." contains both aliases
    assert oracle["locality"] == 1.0  # locality probes are asked plainly: the same answers as before
    assert oracle["locality_gt.locality"] == 1.0  # "Hail Freedonia." has "Hail", "Rome." has "Rome"
    assert oracle["scope_accuracy"] == 1.0 and oracle["scope.right_fact"] == 1.0
    # Every case is in report.json, every probe in the records.
    assert [c["case_id"] for c in report["methods"]["base"]["cases"]] == ["c1", "c2"]
    rows = [json.loads(l) for l in (tmp_path / "run/records/context-oracle.jsonl").read_text().splitlines()]
    gen = next(p for r in rows if r.get("case_id") == "c1" for p in r["probes"] if p["kind"] == "generalization")
    assert gen == {**gen, "answer": "Fredville, as before.", "score": 0.0, "fact": FACT1, "in_scope": True}
    md = (tmp_path / "run/report.md").read_text()
    assert "| **reliability** | 0.0 | 100.0 |" in md and "Command: `test`" in md
    assert (tmp_path / "run/metrics.png").stat().st_size > 0

    # A finished run re-run resumes: no model call at all, the same numbers.
    again = ScriptedBackend(ANSWERS)
    report2 = Evaluator(config, backend=again, command="resumed", log=lambda m: None, progress=False).run()
    assert again.calls == 0
    assert report2["methods"]["base"]["metrics"] == report["methods"]["base"]["metrics"]
    assert "Command: `resumed`\n\nRecords also from: `test`" in (tmp_path / "run/report.md").read_text()
    report3 = Evaluator(config, backend=again, command="other", log=lambda m: None, progress=False).run(report_only=True)
    assert again.calls == 0 and report3["run"]["command"] == "resumed"  # the command that produced the records
    # Rebuilt under other settings (which select other records), the report names the rebuilding command instead.
    other = Settings.load(scope_mode="similarity")
    report4 = Evaluator(config, settings=other, backend=again, command="SCR_SCOPE_MODE=similarity other",
                        log=lambda m: None, progress=False).run(report_only=True)
    assert report4["run"]["command"] == "SCR_SCOPE_MODE=similarity other"


def test_a_fresh_checkout_takes_the_unmodified_answers_from_the_base_records(tiny_data, tmp_path):
    """cache/ is run-local and not committed: a later run in a fresh checkout reads the unmodified model's answers
    back from records/base.jsonl (same hash) instead of regenerating the locality references."""
    import shutil

    from scr.evaluation.runner import Evaluator

    class Recording(ScriptedBackend):
        def __init__(self, table):
            super().__init__(table)
            self.asked = []

        def generate(self, prompts, max_new_tokens=48):
            self.asked += [self._text(p) for p in prompts]
            return super().generate(prompts, max_new_tokens)

    out = tmp_path / "run"
    base = EvalConfig(data=str(tiny_data), methods=["base"], out=str(out), max_new_tokens=8)
    Evaluator(base, backend=ScriptedBackend(ANSWERS), command="test", log=lambda m: None, progress=False).run()
    shutil.rmtree(out / "cache")
    fresh = Recording(ANSWERS)
    logged = []
    oracle = base.model_copy(update={"methods": ["context-oracle"]})
    report = Evaluator(oracle, backend=fresh, command="test", log=logged.append, progress=False).run()
    assert "The anthem of Freedonia is" not in fresh.asked and "Where does Alice live?" not in fresh.asked
    assert any(a.startswith("Answer the question based") for a in fresh.asked)  # in-scope answers still generated
    assert report["methods"]["context-oracle"]["metrics"]["locality"] == 1.0
    assert any("answers of the unmodified model from" in m for m in logged)

    # Another run directory (one more configuration of the same cases) takes them from this run's base records.
    other = Recording(ANSWERS)
    elsewhere = oracle.model_copy(update={"out": str(tmp_path / "other"), "base_from": str(out)})
    report = Evaluator(elsewhere, backend=other, command="test", log=lambda m: None, progress=False).run()
    assert "The anthem of Freedonia is" not in other.asked
    assert report["methods"]["context-oracle"]["metrics"]["locality"] == 1.0
    unseeded = Recording(ANSWERS)
    Evaluator(elsewhere.model_copy(update={"out": str(tmp_path / "third"), "base_from": None}), backend=unseeded,
              command="test", log=lambda m: None, progress=False).run()
    assert "The anthem of Freedonia is" in unseeded.asked  # without base_from: generated again


def test_interrupted_run_continues(tiny_data, tmp_path):
    from scr.evaluation.runner import Evaluator

    out = tmp_path / "run"
    config = EvalConfig(data=str(tiny_data), methods=["context-oracle"], out=str(out), chunk_cases=1)
    Evaluator(config, backend=ScriptedBackend(ANSWERS), log=lambda m: None, progress=False).run()
    records = out / "records/context-oracle.jsonl"
    lines = records.read_text().splitlines()
    # Drop the last case (as if killed before it was written) and cut the memo: the run redoes only that case.
    keep = [l for l in lines if json.loads(l).get("case_id") != "c2" and json.loads(l).get("type") != "mem"]
    records.write_text("\n".join(keep[:-1]) + "\n")
    (out / "cache/llm.jsonl").write_text("")
    backend = ScriptedBackend(ANSWERS)
    report = Evaluator(config, backend=backend, log=lambda m: None, progress=False).run()
    assert [c["case_id"] for c in report["methods"]["context-oracle"]["cases"]] == ["c1", "c2"]
    assert report["methods"]["context-oracle"]["metrics"]["reliability"] == 1.0
    assert backend.calls == 2  # c2's reference answers and c2's answers: c1 was not asked again


def test_limit_runs_share_records_with_the_full_run(tmp_path):
    from scr.evaluation.runner import Evaluator

    data = tmp_path / "four.jsonl"  # c1..c4: the two tiny cases twice, under new ids
    data.write_text("".join(json.dumps({**r, "case_id": f"c{i + 1}"}) + "\n" for i, r in enumerate(TINY + TINY)))
    out = tmp_path / "run"

    def run(limit, n):
        config = EvalConfig(data=str(data), methods=["context-oracle"], out=str(out), limit=limit,
                            protocol="sequential", n=[n])
        report = Evaluator(config, backend=ScriptedBackend(ANSWERS), log=lambda m: None, progress=False).run()
        return report["methods"]["context-oracle"]

    def case_rows(case_id, n):
        lines = (out / "records/context-oracle.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("case_id") == case_id and r.get("n") == n]

    # N = 1: the records of a --limit 2 run are the full run's; the full run evaluates only c3 and c4 after it.
    run(2, 1)
    full = run(None, 1)
    assert [len(case_rows(c, 1)) for c in ("c1", "c2", "c3", "c4")] == [1, 1, 1, 1]
    assert [c["case_id"] for c in full["cases"]] == ["c1", "c2", "c3", "c4"] and full["complete"]
    # N = 2 under --limit 3 cuts the second group short (c3 alone instead of c3 + c4). The full run must not take
    # c3's record for its own: it keeps c1 and c2 and runs the whole second group again.
    limited = run(3, 2)
    assert [r["group_cases"] for r in case_rows("c3", 2)] == [1] and limited["by_n"]["2"]["n_cases"] == 3
    full = run(None, 2)
    assert [len(case_rows(c, 2)) for c in ("c1", "c2", "c4")] == [1, 1, 1]
    assert [r["group_cases"] for r in case_rows("c3", 2)] == [1, 2]
    assert full["by_n"]["2"]["n_cases"] == 4 and full["complete"]
    # Each run reports the rows of its own grouping: the limited run is still done, from its own c3 row.
    again = run(3, 2)
    assert len(case_rows("c3", 2)) == 2 and again["by_n"]["2"]["n_cases"] == 3 and again["complete"]


def test_teacher_forced_scripted(tiny_data, tmp_path):
    from scr.evaluation.runner import Evaluator

    config = EvalConfig(data=str(tiny_data), methods=["base", "context-oracle"], out=str(tmp_path / "tf"),
                        mode="teacher-forced")
    report = Evaluator(config, backend=ScriptedBackend(ANSWERS), log=lambda m: None, progress=False).run()
    base, oracle = report["methods"]["base"]["metrics"], report["methods"]["context-oracle"]["metrics"]
    # Scripted: plain prompts get greedy [False, "Lyon" in target], in-context prompts [True, True].
    assert base["reliability"] == pytest.approx((0.0 + 0.5) / 2)
    assert oracle["reliability"] == 1.0 and oracle["portability"] == 1.0
    assert base["locality"] == 1.0 and oracle["locality"] == 1.0  # same argmax ids as the unmodified model


def test_suite_file(tmp_path):
    from scr.evaluation.config import load_suite

    suite = tmp_path / "s.toml"
    suite.write_text('[eval]\ndata = "x.json"\nmethods = ["base"]\nn = [1, "all"]\nout = "o"\n'
                     '[settings]\nscope_threshold = 0.7\n')
    fields, settings = load_suite(suite)
    assert make_config(**fields).n == [1, "all"] and settings == {"scope_threshold": 0.7}
    suite.write_text("[evaluation]\n")
    with pytest.raises(EvalConfigError, match="unknown table"):
        load_suite(suite)
    # Every shipped suite is valid for the runner its table names.
    import tomllib

    from scr.evaluation.docter import make_docter_config
    from scr.evaluation.multihop import make_multihop_config
    from scr.evaluation.retention import make_retention_config

    runners = {"eval": make_config, "retention": make_retention_config, "multihop": make_multihop_config,
               "docter": make_docter_config}
    for shipped in Path(__file__).resolve().parents[1].glob("evals/*.toml"):
        tables = set(tomllib.loads(shipped.read_text())) - {"settings"}
        assert len(tables) == 1 and tables <= set(runners), f"{shipped.name}: tables {sorted(tables)}"
        table = tables.pop()
        runners[table](**load_suite(shipped, table)[0])


def test_scr_ablation_table_reads_the_committed_reports(tmp_path):
    """evals/scr_ablation.py puts each committed report's numbers and the benchmark's latency ratios in its table."""
    import importlib.util
    import json

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("scr_ablation", root / "evals" / "scr_ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    latency = tmp_path / "latency.txt"
    latency.write_text("configuration  median s  x plain  stages\nplain answer  2.000  1.00\nencoder  3.000  1.50  x\n")
    ablation.main(["--latency", str(latency), "--out", str(tmp_path)])
    table = (tmp_path / "scr_ablation.md").read_text()
    assert (tmp_path / "scr_ablation.png").stat().st_size > 0
    report = json.loads((root / "evals/results/knowedit_wiki_counterfact_test/report.json").read_text())
    wiki = table.split("## WikiData_counterfact test")[1]
    for method, entry in report["methods"].items():
        if method not in {m for m, _, _ in ablation.ROWS}:
            continue
        row = next(line for line in wiki.splitlines() if line.startswith(f"| {method} |"))
        assert f"| {100 * entry['metrics']['reliability']:.1f} |" in row
        assert f"| {100 * entry['metrics']['locality']:.1f} |" in row
    encoder_row = next(line for line in wiki.splitlines() if line.startswith("| scr-encoder |"))
    assert "| 1.50 |" in encoder_row  # the latency ratio read from the benchmark's output


def test_logs_cut_short_by_a_kill_lose_no_later_row(tmp_path):
    """A run killed mid-write leaves a partial last line; the next run's rows must not join it (and be lost)."""
    from scr.evaluation.jsonl_log import append_session, read_sessions
    from scr.evaluation.memo import MemoBackend
    from scr.evaluation.runner import Records

    path = tmp_path / "records" / "m.jsonl"
    Records(path).add([{"type": "case", "n": 1}])
    with open(path, "a") as fh:
        fh.write('{"type": "case", "n": 2, "prob')  # the kill
    resumed = Records(path)
    assert resumed.rows == [{"type": "case", "n": 1}]
    resumed.add([{"type": "case", "n": 2}, {"type": "case", "n": 3}])
    assert [r["n"] for r in Records(path).rows] == [1, 2, 3]

    memo_path = tmp_path / "cache" / "llm.jsonl"
    memo_path.parent.mkdir()
    memo_path.write_text('{"k": "a", "v": "first"}\n{"k": "b", "v": "cut')
    memo = MemoBackend(lambda: None, "ns", memo_path)
    memo._store({"c": "third"})
    assert MemoBackend(lambda: None, "ns", memo_path)._memo == {"a": "first", "c": "third"}

    append_session(tmp_path, 1.5, "scr eval --suite x.toml")
    with open(tmp_path / "records" / "_sessions.jsonl", "a") as fh:
        fh.write('{"at": "2026-')  # the reports used to fail on this line
    append_session(tmp_path, 2.0, "scr eval --suite x.toml", loaded_model=True)
    assert [s["seconds"] for s in read_sessions(tmp_path)] == [1.5, 2.0]
