"""DocTER: the loaders on the real files, the two document strategies on a real DocTER document, the metrics by
hand, and the evaluator end to end (then resumed without work), on the embedded SmolLM2-135M-Instruct."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from scr.config import Settings
from scr.engine import Engine
from scr.evaluation.data import DatasetError
from scr.evaluation.docter import (DocterConfig, DocterRunner, aggregate, parse_method, probes, score_doc,
                                  updated_elsewhere)
from scr.evaluation.docter_data import (FILES, DocCase, ReasoningItem, counterfact_subjects, derive_subject,
                                        docter_paths, load_docter, parse_yes_no, read_documents, read_edits,
                                        read_locality, read_reasoning)
from scr.kb import IngestError
from scr.kb.ingest import sentence_facts
from scr.llm.base import BackendError


@pytest.fixture(scope="module")
def cases():
    return load_docter(limit=None)


# ----- loaders ---------------------------------------------------------------------------------------------------
@pytest.mark.data
def test_every_record_of_every_file_loads(cases):
    paths = docter_paths()
    assert len(read_documents(paths["documents"])) == 2000
    assert len(read_edits(paths["edits"])) == 2000
    assert len(read_locality(paths["locality"])) == 2000
    assert sum(len(v) for v in read_reasoning(paths["reasoning"]).values()) == 583
    assert len(cases) == 2000
    assert sum(len(c.reasoning) for c in cases) == 574  # 9 questions name ids that have no document
    assert all(c.paraphrases and c.neighbours and c.subject for c in cases)


@pytest.mark.data
def test_offset_selects_a_later_window(cases):
    window = load_docter(limit=100, offset=453)
    assert [c.id for c in window] == [c.id for c in cases[453:553]]
    assert [c.index for c in window] == list(range(453, 553))
    labels = [item.label for c in window for item in c.reasoning]
    assert labels.count(True) >= 25 and labels.count(False) >= 25  # the balanced window of evals/docter_balanced
    with pytest.raises(DatasetError, match="offset 2000: docter_en_doc.json has 2000 documents"):
        load_docter(limit=1, offset=2000)


@pytest.mark.data
def test_ids_are_counterfact_case_ids_and_derived_subjects_agree():
    paths = docter_paths()
    edits = read_edits(paths["edits"])
    subjects = counterfact_subjects(paths["counterfact"], edits)
    # Every shared id is the same edit in CounterFact (same targets, its subject in the DocTER query).
    shared = {r["case_id"] for r in json.loads(paths["counterfact"].read_text()) if r["case_id"] in edits}
    assert len(shared) == 893 and set(subjects) == shared
    agree = sum(derive_subject(edits[i]["query"], edits[i]["paraphrases"]) == s for i, s in subjects.items())
    assert agree >= 870
    paraphrases = ["Danielle Darrieux, a native", "Danielle Darrieux spoke the language"]
    assert derive_subject("The mother tongue of Danielle Darrieux is", paraphrases) == "Danielle Darrieux"


def _copy_head(tmp_path, n=3):
    """A data directory holding the first n records of each DocTER file."""
    src = docter_paths()
    for name, rel in FILES.items():
        data = json.loads(src[name].read_text())
        if isinstance(data, dict):
            data = {"data": data["data"][:n]}
        else:
            data = data[:n]
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(data))
    return tmp_path


@pytest.mark.data
@pytest.mark.parametrize("name, index, change, message", [
    ("edits", 1, lambda r: r.pop("query"),
     r"docter_edit_success_eval.json: record 1 \(id 1\): missing or empty 'query'"),
    ("edits", 2, lambda r: r.update(paraphrase_query="x"), r"record 2 \(id 2\): 'paraphrase_query' must be a list"),
    ("locality", 0, lambda r: r.update(query=[]), r"docter_locality_eval.json: record 0 \(id 0\): 'query' must be"),
    ("reasoning", 1, lambda r: r.update(label="yes"), r"docter_reasoning_eval.json: record 1 \(id 1\): 'label'"),
    ("documents", 2, lambda r: r.update(id="2"), r"docter_en_doc.json: record 2 \(id 2\): 'id' must be a whole"),
])
def test_a_malformed_record_is_named(tmp_path, name, index, change, message):
    root = _copy_head(tmp_path)
    path = root / FILES[name]
    data = json.loads(path.read_text())
    change((data["data"] if isinstance(data, dict) else data)[index])
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message):
        load_docter(root, counterfact=False)


@pytest.mark.data
def test_missing_files_and_containers_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="docter_en_doc.json: file not found"):
        load_docter(tmp_path)
    root = _copy_head(tmp_path)
    (root / FILES["edits"]).write_text("[]")
    with pytest.raises(DatasetError, match="expected an object with a 'data' list"):
        load_docter(root)


# ----- document strategies -----------------------------------------------------------------------------------------
@pytest.mark.data
def test_sentence_strategy_on_a_docter_document(cases, make_kb):
    doc = cases[0]
    facts = sentence_facts(doc.document, doc.name)
    assert [f.source for f in facts] == [f"docter-0#s{n}" for n in range(1, len(facts) + 1)]
    # Paragraphs joined without a space in the file ("situation.This fact") are split again.
    assert any(f.text.startswith("This fact was later confirmed") for f in facts)
    assert any("mother tongue was English" in f.text for f in facts)
    kb = make_kb()
    assert len(kb.add(facts).added) == len(facts) == kb.count()


class _Scripted:
    """The real backend, except that sentences holding ``marker`` get ``reply`` (or an error) instead."""

    def __init__(self, backend, marker: str, reply: str | None):
        self.backend, self.marker, self.reply = backend, marker, reply

    def generate(self, prompts, max_new_tokens=48):
        if any(self.marker in p.rsplit("Sentence:", 1)[-1] for p in prompts):
            if self.reply is None:
                raise BackendError("injected failure")
        real = [p for p in prompts if self.marker not in p.rsplit("Sentence:", 1)[-1]]
        answers = iter(self.backend.generate(real, max_new_tokens) if real else [])
        return [self.reply if self.marker in p.rsplit("Sentence:", 1)[-1] else next(answers) for p in prompts]

    def close(self):
        pass


@pytest.mark.data
def test_atomic_strategy_keeps_provenance_and_is_all_or_nothing(tmp_path, cases, smol_backend, embedder):
    doc = cases[0]
    sentences = [f.text for f in sentence_facts(doc.document, doc.name)][:5]
    good = tmp_path / "darrieux.txt"
    good.write_text(" ".join(sentences))
    engine = Engine(Settings(kb_dir=tmp_path / "kb"), backend=smol_backend, embedder=embedder)
    report = engine.ingest([good], documents="atomic")
    assert report.added
    for fact in report.added:  # structure and provenance, not the small model's quality
        n = int(re.fullmatch(r"darrieux\.txt#a(\d+)", fact.source).group(1))
        assert 1 <= n <= len(sentences)
        assert fact.subject and fact.text.endswith(".") and fact.relation is None
        if fact.object:
            assert fact.text.rstrip(".").endswith(fact.object) and fact.key != fact.text
    stored = engine.kb().count()

    # A document with no usable fact, or an LLM failure, stores nothing: not even the other document's facts.
    other = tmp_path / "edwin.txt"
    other.write_text("Zzyzx is quiet. Zzyzx sleeps well.")
    second = tmp_path / "more.txt"
    second.write_text(" ".join(f.text for f in sentence_facts(cases[1].document, cases[1].name)[:2]))
    for reply, error, message in (("none", IngestError, "edwin.txt: the atomic extraction found no fact"),
                                  (None, BackendError, "injected failure")):
        engine._backend = _Scripted(smol_backend, "Zzyzx", reply)
        with pytest.raises(error, match=message):
            engine.ingest([second, other], documents="atomic")
        assert engine.kb().count() == stored
    with pytest.raises(IngestError, match="unknown document strategy 'words'"):
        engine.ingest([good], documents="words")
    engine.close()


def test_cli_rejects_an_unknown_document_strategy(tmp_path):
    from scr.cli import app

    doc = tmp_path / "d.txt"
    doc.write_text("Acme moved to Lyon.")
    result = CliRunner().invoke(app, ["--kb", str(tmp_path / "kb"), "kb", "add", str(doc), "--documents", "words"])
    assert result.exit_code == 1 and "unknown document strategy 'words'" in result.output


# ----- metrics ---------------------------------------------------------------------------------------------------
def test_scores_by_hand():
    case = DocCase(id=7, index=0, document="", query="q", paraphrases=("p1", "p2"), original="French",
                   altered="English", neighbours=("n1", "n2", "n3"),
                   reasoning=(ReasoningItem("r1", "", True), ReasoningItem("r2", "", False),
                              ReasoningItem("r3", "", True)), subject="S", subject_source="derived")
    scores = score_doc(case, ["Her mother tongue is ENGLISH.", "She speaks french.", "english"],
                       ["French", "He spoke English", "Italian"], ["French", "French", "italian"],
                       ["Yes, it is.", "Maybe not.", "no"])
    # "She speaks french." does not contain "English": a false `contains`.
    assert scores["efficacy"] == 1.0 and scores["paraphrase"] == 0.5 and scores["edit_success"] == pytest.approx(2 / 3)
    # Unchanged is exact equality with the unmodified model's answer ("Italian" != "italian").
    assert scores["locality_unchanged"] == pytest.approx(1 / 3)
    assert scores["locality_original"] == pytest.approx(1 / 3) and scores["locality_altered"] == pytest.approx(1 / 3)
    # yes (label True) right; "Maybe not." has neither word (wrong); "no" for label True wrong.
    assert (scores["reasoning_correct"], scores["reasoning_parsed"], scores["reasoning_n"]) == (1, 2, 3)
    assert [parse_yes_no(a) for a in ("No.", "I know", "Not sure", "yes")] == [False, None, None, True]
    assert [p.kind for p in probes(case)] == ["reliability"] + ["generalization"] * 2 + ["locality"] * 3 + \
        ["portability"] * 3
    rows = [{"scores": scores, "edit": [], "locality": []},
            {"scores": {**scores, "edit_success": 0.0, "reasoning_correct": 3}, "edit": [], "locality": []}]
    total = aggregate(rows)
    assert total["edit_success"] == pytest.approx(1 / 3) and total["reasoning_accuracy"] == pytest.approx(4 / 6)


def test_neighbours_another_document_edits_are_left_out_of_the_kept_locality():
    """With every document's updates applied, "Hank Aaron plays" SHOULD change when another document moves Hank
    Aaron from baseball to basketball: a neighbour prompt naming another document's subject, with that document's
    original target (the same relation), is left out of locality_unchanged_kept. A document on Hank Aaron with
    another original target (another relation) does not edit the prompt; nor does the document itself."""
    def case(id_, subject, original, neighbours=()):
        return DocCase(id=id_, index=id_, document="", query="q", paraphrases=("p",), original=original,
                       altered="x", neighbours=tuple(neighbours), reasoning=(), subject=subject,
                       subject_source="derived")

    probed = case(1, "Satchel Paige", "baseball", ["Hank Aaron plays", "Hank Aaronson plays", "Babe Ruth plays"])
    others = [probed, case(2, "Hank Aaron", "baseball"), case(3, "Hank Aaronson", "Atlanta"),
              case(4, "Babe Ruth", "Baseball ")]
    assert updated_elsewhere(probed, others) == {0, 2}  # "Hank Aaronson" is not "Hank Aaron"; 3 is another relation
    assert updated_elsewhere(probed, others[:1]) == set()
    row = {"id": 1, "edit": [], "scores": {"locality_unchanged": 1 / 3, "reasoning_n": 0, "reasoning_correct": 0,
                                         "reasoning_parsed": 0},
           "locality": [{"answer": "basketball", "reference": "baseball"}, {"answer": "a", "reference": "a"},
                        {"answer": "golf", "reference": "baseball"}]}
    total = aggregate([row], {1: {0, 2}})
    assert total["locality_unchanged"] == pytest.approx(1 / 3) and total["locality_unchanged_kept"] == 1.0
    assert total["neighbours_updated_elsewhere"] == 2 and "locality_unchanged_kept" not in aggregate([row])


def test_method_names():
    assert parse_method("scr") == parse_method("scr-sentences")
    assert parse_method("memit-upper").upper_bound and parse_method("scr-upper").upper_bound
    assert parse_method("alphaedit-extracted").editor == "alphaedit"
    atomic = parse_method("scr-atomic-object-first")
    assert (atomic.source, atomic.answer_style) == ("atomic", "object-first")
    assert parse_method("scr-paper-answers").answer_style == "paper" and parse_method("scr").answer_style is None
    context = parse_method("scr-atomic-context3-object-first")
    assert (context.source, context.context_facts, context.answer_style) == ("atomic", 3, "object-first")
    assert parse_method("scr").context_facts is None
    for bad, message in (("scr-words", "unknown DocTER method"), ("come-extracted", "old answer"),
                         ("memit-extracted-object-first", "unknown DocTER method")):
        with pytest.raises(ValueError, match=message):
            parse_method(bad)


# ----- the evaluator end to end ----------------------------------------------------------------------------------
@pytest.mark.data
def test_evaluator_end_to_end_then_resumes_without_work(tmp_path, smol_backend, embedder):
    out = tmp_path / "run"
    config = DocterConfig(methods=["base", "scr", "scr-atomic", "scr-upper"], limit=2, max_new_tokens=12,
                          extract_tokens=12, out=str(out))
    report = DocterRunner(config, command="test", log=lambda m: None, backend=smol_backend,
                          embedder=embedder).run()
    for name in config.methods:
        m = report["methods"][name]
        assert m["docs_done"] == 2 and 0 <= m["scores"]["edit_success"] <= 1
        rows = [json.loads(x) for x in (out / "records" / f"{name}.jsonl").read_text().splitlines()]
        docs = [r for r in rows if r["type"] == "doc"]
        assert [d["id"] for d in docs] == [0, 1] and len(docs[0]["edit"]) == 3 and len(docs[0]["locality"]) == 10
    assert report["methods"]["base"]["scores"]["locality_unchanged"] == 1.0  # base is its own reference
    assert report["methods"]["scr-upper"]["upper_bound"]
    atomic = [json.loads(x) for x in (out / "facts" / "atomic.jsonl").read_text().splitlines()]
    assert {a["doc"] for a in atomic} == {0, 1} and all(a["source"].startswith(f"docter-{a['doc']}#a") for a in atomic)
    assert "| scr-upper (UPPER BOUND) |" in (out / "report.md").read_text() and (out / "docter.png").exists()

    before = {p.name: p.read_text() for p in (out / "records").glob("*.jsonl") if p.name != "_sessions.jsonl"}
    again = DocterRunner(config, command="test", log=lambda m: None, embedder=embedder)  # no backend: must not load
    again.run()
    assert not again.memo.loaded and again.memo.misses == 0
    assert {p.name: p.read_text() for p in (out / "records").glob("*.jsonl") if p.name != "_sessions.jsonl"} == before

    # Edit requests for the editing methods, from the same (memoised) extraction and from the benchmark pairs.
    again.setup()
    extracted, details = again.edit_cases("extracted", again.cases)
    assert not again.memo.loaded and details["edits_per_doc"] == len(extracted) / 2
    for case in extracted + again.edit_cases("upper", again.cases)[0]:
        request = case.edit_request()
        assert request.subject in request.prompt and request.target_new

    # A fresh checkout (no cache/): a new method's neighbour references come from the base records, not the model.
    shutil.rmtree(out / "cache")
    asked = []

    class Recording:
        name = smol_backend.name

        def generate(self, prompts, max_new_tokens=48):
            asked.extend(prompts)
            return smol_backend.generate(prompts, max_new_tokens)

        def close(self):
            pass

    logged = []
    context = DocterConfig(**{**config.model_dump(), "methods": ["scr-upper-context2"]})
    DocterRunner(context, command="test", log=logged.append, backend=Recording(), embedder=embedder).run()
    neighbours = {p for d in again.cases for p in d.neighbours}
    assert not any(p[-1]["content"] in neighbours for p in asked if len(p) == 1)
    assert any("answers of the unmodified model from" in m for m in logged)
    shutil.rmtree(out)


@pytest.mark.data
def test_probing_every_nth_document_over_all_documents_updates(tmp_path, smol_backend, embedder):
    """probe_every: the probes of documents 0 and 2 only, over a knowledge base of all 4 documents' updates; with
    updates = "probed" the same questions over those 2 documents' updates. The unmodified model's records hash the
    same in both runs (they can be shared), SCR's do not."""
    runs = {}
    for updates in ("selected", "probed"):
        out = tmp_path / updates
        config = DocterConfig(methods=["base", "scr-upper"], limit=4, probe_every=2, updates=updates,
                              max_new_tokens=8, out=str(out))
        runner = DocterRunner(config, command="test", log=lambda m: None, backend=smol_backend, embedder=embedder)
        report = runner.run()
        scr = report["methods"]["scr-upper"]
        assert [d.id for d in runner.docs_for("scr-upper")] == [runner.cases[0].id, runner.cases[2].id]
        assert scr["docs"] == scr["docs_done"] == 2 and report["run"]["probed"] == 2
        assert scr["apply_details"]["facts_added"] == (4 if updates == "selected" else 2)
        rows = [json.loads(x) for x in (out / "records" / "scr-upper.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows if r["type"] == "doc"] == [runner.cases[0].id, runner.cases[2].id]
        assert "probes of one document in 2 (2 documents)" in (out / "report.md").read_text()
        runs[updates] = {name: runner.method_hash(name, runner.make_method(name)) for name in config.methods}
    assert runs["selected"]["base"] == runs["probed"]["base"]
    assert runs["selected"]["scr-upper"] != runs["probed"]["scr-upper"]


def test_probe_start_picks_another_window_and_the_name_match_is_in_sentence_runs_hashes(tmp_path, smol_backend,
                                                                                          embedder):
    """probe_start 1 of every 2 asks documents 1 and 3 (a development window beside documents 0 and 2), under its
    own hash. The name match judges sentences, which carry no subject, so it enters the hash of sentence runs only,
    and "last-word" keeps the hash such runs had before the setting."""
    def runner(settings=None, **fields):
        config = DocterConfig(methods=["base", "scr", "scr-upper"], limit=4, probe_every=2, out=str(tmp_path),
                              **fields)
        made = DocterRunner(config, settings or Settings(), command="test", log=lambda m: None,
                            backend=smol_backend, embedder=embedder)
        made.setup()
        return made

    first, second = runner(), runner(probe_start=1)
    assert [d.id for d in second.docs_for("scr")] == [first.cases[1].id, first.cases[3].id]
    assert [d.id for d in first.docs_for("scr")] == [first.cases[0].id, first.cases[2].id]
    assert first.method_hash("scr", first.make_method("scr")) != second.method_hash("scr", second.make_method("scr"))
    with pytest.raises(ValueError, match="probe_start must be below probe_every"):
        DocterConfig(probe_every=2, probe_start=2)
    hashes = {}
    for match in ("whole-name", "last-word"):
        made = runner(Settings(scope_name_match=match))
        hashes[match] = {name: made.method_hash(name, made.make_method(name)) for name in ("scr", "scr-upper")}
    assert hashes["whole-name"]["scr"] != hashes["last-word"]["scr"]
    assert hashes["whole-name"]["scr-upper"] == hashes["last-word"]["scr-upper"]


@pytest.mark.data
def test_editing_methods_share_descents_and_count_their_cost(tmp_path, tiny_llama_dir, embedder):
    """MEMIT then AlphaEdit on the same benchmark pairs (tiny Llama): AlphaEdit reuses MEMIT's first-batch descents
    and its apply time counts them at what they cost."""
    out = tmp_path / "run"
    config = DocterConfig(methods=["base", "memit-upper", "alphaedit-upper"], limit=2, max_new_tokens=4,
                          edit_batch_size=10, out=str(out),
                          editing=dict(n_samples=8, sample_tokens=32, context_template_count=1, v_num_grad_steps=3,
                                       show_progress=False))
    DocterRunner(config, Settings(llm=str(tiny_llama_dir)), command="test", log=lambda m: None,
                 embedder=embedder).run()
    applied = [json.loads(x) for x in (out / "records" / "alphaedit-upper.jsonl").read_text().splitlines()]
    applied = [r for r in applied if r["type"] == "apply"]
    assert len(applied) == 1 and applied[0]["details"]["reused_descents"] == 2  # one pair per document
    # The apply record counts the reused descents: more than this process's own editing time.
    assert applied[0]["seconds"] >= applied[0]["details"]["edit_seconds"] > applied[0]["details"]["reused_seconds"] > 0


def test_apply_seconds_count_every_edit_at_what_it_cost():
    from scr.evaluation.methods import counted_apply_seconds

    assert counted_apply_seconds(10.0, {}) == 10.0
    details = {"loaded_seconds": 100.0, "journalled_seconds": 50.0, "replay_seconds": 5.0, "reused_seconds": 7.0}
    assert counted_apply_seconds(10.0, details) == 10.0 + 100.0 + 50.0 - 5.0 + 7.0


def test_cli_errors_are_one_line(tmp_path):
    from scr.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["eval-docter", "--methods", "base,nope", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "unknown DocTER method 'nope'" in result.output
    result = runner.invoke(app, ["eval-docter", "--method-limit", "memit-upper", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "expects NAME=N" in result.output
