"""Knowledge base operations on the real embedder: add, dedupe, supersede, retract, history, search,
persistence, both vector stores, incompatible stores, and atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from scr.kb import FactInput, FactNotFound, IncompatibleStore, KBError, KnowledgeBase

FACTS = [
    FactInput(text="The CEO of Northwind Labs is Priya Natarajan.", subject="Northwind Labs", relation="ceo",
              object="Priya Natarajan"),
    FactInput(text="The headquarters of Northwind Labs is in Oslo.", subject="Northwind Labs",
              relation="headquarters", object="Oslo"),
    FactInput(text="The Helios-3 battery stores 12 kilowatt-hours.", object="12 kilowatt-hours"),
]


def ids(hits):
    return [h.id for h in hits]


@pytest.mark.parametrize("store", ["faiss", "chroma"])
def test_add_search_and_persistence(make_kb, tmp_path, store):
    kb = make_kb(store)
    report = kb.add(FACTS)
    assert len(report.added) == 3 and not report.duplicates
    hits = kb.search(["Who runs Northwind Labs as chief executive?"], k=2)[0]
    assert hits[0].text == FACTS[0].text
    assert hits[0].key_score > hits[1].key_score
    # The key is the fact without its object.
    assert kb.get(report.added[0].id).key == "The CEO of Northwind Labs is"
    kb.close()
    reopened = make_kb(store)
    assert reopened.count() == 3
    assert reopened.search(["Where is Northwind Labs based?"], k=1)[0][0].id == report.added[1].id


def test_exact_duplicates_are_not_stored_twice(make_kb):
    kb = make_kb()
    kb.add(FACTS)
    report = kb.add([FactInput(text="The CEO of Northwind Labs  is Priya Natarajan. "),
                     FactInput(text="A new fact."), FactInput(text="A new fact.")])
    assert len(report.added) == 1 and len(report.duplicates) == 2
    assert kb.count() == 4
    kb.retract(report.added[0].id)
    again = kb.add([FactInput(text="A new fact.")])  # retired facts count too: an old ingest revives nothing
    assert again.added == [] and again.duplicates == ["A new fact."]


def test_supersede_by_subject_relation_keeps_history(make_kb):
    kb = make_kb()
    first = kb.add(FACTS).added
    newer = kb.add([FactInput(text="The headquarters of Northwind Labs moved to Lisbon.",
                              subject="northwind labs", relation="Headquarters", object="Lisbon")])
    old_id, new_id = first[1].id, newer.added[0].id
    assert newer.superseded == [(old_id, new_id)]
    assert kb.get(old_id).status == "superseded" and kb.get(old_id).superseded_by == new_id
    hits = kb.search(["Where is the headquarters of Northwind Labs?"], k=5)[0]
    assert new_id in ids(hits) and old_id not in ids(hits)
    chain = kb.history(new_id)
    assert [f.id for f, _ in chain] == [old_id, new_id]
    assert [e.event for e in chain[0][1]] == ["added", "superseded"]
    assert kb.history(old_id)[-1][0].id == new_id


def test_explicit_supersede_and_errors(make_kb):
    kb = make_kb()
    added = kb.add(FACTS).added
    report = kb.supersede(added[2].id, FactInput(text="The Helios-3 battery stores 14 kilowatt-hours."))
    assert kb.get(added[2].id).status == "superseded"
    assert kb.get(report.added[0].id).supersedes == added[2].id
    with pytest.raises(KBError, match="already superseded"):
        kb.supersede(added[2].id, FactInput(text="Another text."))
    with pytest.raises(FactNotFound, match="unknown fact id"):
        kb.add([FactInput(text="Something else.", supersedes="nope")])
    assert kb.count() == 3  # nothing stored by the failed calls


def test_retract_removes_from_retrieval_and_unknown_ids_fail(make_kb):
    kb = make_kb()
    added = kb.add(FACTS).added
    kb.retract(added[0].id, reason="wrong")
    assert kb.get(added[0].id).status == "retracted"
    assert added[0].id not in ids(kb.search(["Who is the CEO of Northwind Labs?"], k=5)[0])
    assert kb.events(added[0].id)[-1].detail == "wrong"
    with pytest.raises(KBError, match="already retracted"):
        kb.retract(added[0].id)
    with pytest.raises(FactNotFound, match="unknown fact id: 'missing'"):
        kb.retract("missing")
    with pytest.raises(FactNotFound):
        kb.get("missing")
    with pytest.raises(FactNotFound):
        kb.history("missing")
    assert [f.id for f in kb.list(status=None)] == [f.id for f in added]
    assert [f.id for f in kb.list()] == [f.id for f in added[1:]]


def test_bad_search_and_list_arguments_are_named(make_kb):
    kb = make_kb()
    kb.add(FACTS)
    for k in (0, -2, 2.5, True):  # faiss asserted on k < 1; 0 used to mean "the default"
        with pytest.raises(ValueError, match="k must be a whole number >= 1"):
            kb.search(["Who is the CEO of Northwind Labs?"], k=k)
    with pytest.raises(ValueError, match="limit and offset must be >= 0"):
        kb.list(limit=-1)  # SQLite reads a negative LIMIT as "no limit"
    with pytest.raises(ValueError, match="limit and offset must be >= 0"):
        kb.list(offset=-1)
    assert kb.list(limit=0) == [] and len(kb.list(limit=2)) == 2


def test_restore_undoes_a_retraction_only(make_kb):
    kb = make_kb()
    ceo, hq, _ = kb.add(FACTS).added
    question = "Who is the CEO of Northwind Labs?"
    kb.retract(ceo.id, reason="by mistake")
    assert ceo.id not in ids(kb.search([question], k=3)[0])
    assert kb.restore(ceo.id, reason="it was right").status == "active"
    assert ids(kb.search([question], k=1)[0]) == [ceo.id]
    assert [(e.event, e.detail) for e in kb.events(ceo.id)][-2:] == [("retracted", "by mistake"),
                                                                     ("restored", "it was right")]
    with pytest.raises(KBError, match="is active, not retracted"):
        kb.restore(ceo.id)
    with pytest.raises(FactNotFound, match="cannot restore unknown fact id: 'missing'"):
        kb.restore("missing")
    # A successor holds the place of a superseded fact, and of a retracted one whose subject and relation an
    # active fact has taken since.
    newer = kb.add([FactInput(text="The headquarters of Northwind Labs is in Bergen.", subject="Northwind Labs",
                              relation="headquarters", object="Bergen")]).added[0]
    with pytest.raises(KBError, match=f"is superseded by '{newer.id}', not retracted"):
        kb.restore(hq.id)
    kb.retract(ceo.id)
    kb.add([FactInput(text="The CEO of Northwind Labs is Ola Nordmann.", subject="Northwind Labs", relation="ceo",
                      object="Ola Nordmann")])
    with pytest.raises(KBError, match="now holds its subject and relation"):
        kb.restore(ceo.id)
    assert kb.get(ceo.id).status == "retracted"  # a refused restore changes nothing


def test_user_ids_must_be_unique(make_kb):
    kb = make_kb()
    kb.add([FactInput(id="f-1", text="One.")])
    with pytest.raises(KBError, match="already exists"):
        kb.add([FactInput(id="f-1", text="Two.")])


def test_future_facts_are_not_retrieved_until_valid(make_kb):
    kb = make_kb()
    later = datetime.now(timezone.utc) + timedelta(days=30)
    kb.add([FactInput(text="The Kestrel drone has a range of 60 kilometres.", valid_from=later),
            FactInput(text="The Kestrel drone weighs 2 kilograms.")])
    hits = kb.search(["What is the range of the Kestrel drone?"], k=5)[0]
    assert [h.text for h in hits] == ["The Kestrel drone weighs 2 kilograms."]


def test_a_damaged_index_is_rebuilt_and_a_damaged_database_refused(make_kb, tmp_path, embedder, caplog):
    kb = make_kb()
    added = kb.add(FACTS).added
    question = "Who is the CEO of Northwind Labs?"
    expected = ids(kb.search([question], k=3)[0])
    kb.close()
    index_file = tmp_path / "kb" / "index.faiss"
    index_file.write_bytes(b"not a faiss index")  # a disk error, a half-copied backup
    kb = KnowledgeBase(tmp_path / "kb", embedder=embedder)
    assert ids(kb.search([question], k=3)[0]) == expected and expected[0] == added[0].id
    assert "index.faiss is unreadable" in caplog.text and "rebuilding it from the fact database" in caplog.text
    kb.close()
    import faiss

    assert faiss.read_index(str(index_file)).ntotal == len(added)  # rewritten whole

    database = tmp_path / "kb" / "facts.sqlite"
    for side in ("-wal", "-shm"):
        (tmp_path / "kb" / f"facts.sqlite{side}").unlink(missing_ok=True)
    database.write_bytes(b"\0" * 4096)
    with pytest.raises(IncompatibleStore, match="facts.sqlite cannot be read .*restore it from a backup"):
        KnowledgeBase(tmp_path / "kb", embedder=embedder)
    assert database.read_bytes() == b"\0" * 4096  # the only copy of the facts is left as it was


def test_a_damaged_chroma_folder_is_set_aside_and_rebuilt(make_kb, tmp_path, caplog):
    kb = make_kb("chroma")
    added = kb.add(FACTS).added
    kb.close()
    (tmp_path / "kb" / "chroma" / "chroma.sqlite3").write_bytes(b"not a database" * 100)
    kb = make_kb("chroma")
    assert ids(kb.search(["Who is the CEO of Northwind Labs?"], k=1)[0]) == [added[0].id]
    assert "rebuilding it from the fact database" in caplog.text
    aside = [p.name for p in (tmp_path / "kb").iterdir() if p.name.startswith("chroma.damaged-")]
    assert len(aside) == 1  # kept for the operator, not deleted


def test_an_unknown_embedder_is_a_named_error(tmp_path):
    from scr.kb.embed import Embedder
    from scr.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="cannot load the embedder 'no-such/embedder': it is not an "
                                                 "embedded model, a local folder, or in the Hugging Face cache"):
        Embedder("no-such/embedder")
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        Embedder(str(tmp_path))


def test_incompatible_store_versions_and_foreign_folders(make_kb, tmp_path, embedder):
    kb = make_kb()
    kb.add(FACTS[:1])
    kb.close()
    manifest = tmp_path / "kb" / "scr-kb.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(IncompatibleStore, match="incompatible version"):
        KnowledgeBase(tmp_path / "kb", embedder=embedder)
    manifest.write_text(json.dumps({**data, "embedder": "some/other-model"}))
    with pytest.raises(IncompatibleStore, match="built with embedder"):
        KnowledgeBase(tmp_path / "kb", embedder=embedder)
    (tmp_path / "a-file").write_text("hello")
    with pytest.raises(KBError, match="a-file is a file; a knowledge base is a directory"):
        KnowledgeBase(tmp_path / "a-file", embedder=embedder)
    manifest.write_text("{not json")
    with pytest.raises(IncompatibleStore, match="corrupt"):
        KnowledgeBase(tmp_path / "kb", embedder=embedder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(IncompatibleStore, match="not an SCR knowledge base"):
        KnowledgeBase(other, embedder=embedder)
    with pytest.raises(KBError, match="no knowledge base"):
        KnowledgeBase(tmp_path / "absent", embedder=embedder, create=False)


@pytest.mark.parametrize("store", ["faiss", "chroma"])
def test_failed_write_leaves_store_as_it_was(make_kb, store, monkeypatch):
    kb = make_kb(store)
    kb.add(FACTS[:2])
    before = [f.id for f in kb.list(status=None)]
    index_before = kb.index.ids()

    original_remove = type(kb.index).remove

    def broken_remove(self, rowids):  # fails after the new facts were added to the index
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(kb.index), "remove", broken_remove)
    with pytest.raises(RuntimeError, match="disk full"):
        kb.add([FactInput(text="A brand new fact."), FACTS[2]])
    monkeypatch.setattr(type(kb.index), "remove", original_remove)
    assert [f.id for f in kb.list(status=None)] == before
    texts = [h.text for h in kb.search(["A brand new fact."], k=5)[0]]
    assert "A brand new fact." not in texts and FACTS[2].text not in texts
    assert kb.index.ids() == index_before


def test_index_is_reconciled_after_a_crash_between_commit_and_save(make_kb, tmp_path):
    kb = make_kb()
    kb.add(FACTS)
    kb.close()
    # Simulate a crash that committed the database but never wrote the index file.
    (tmp_path / "kb" / "index.faiss").unlink()
    reopened = make_kb()
    assert reopened.search(["Who is the CEO of Northwind Labs?"], k=1)[0][0].text == FACTS[0].text
    assert len(reopened.index.ids()) == 3


def test_killed_ingest_leaves_previous_state(tmp_path, embedder):
    """SIGKILL an ingest of many facts while it runs: the store afterwards is the store before."""
    kb_dir = tmp_path / "kb"
    kb = KnowledgeBase(kb_dir, embedder=embedder)
    kb.add(FACTS)
    kb.close()
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"text": f"Synthetic fact number {i} says item {i} is blue."}) + "\n"
                           for i in range(20000)))
    env = {**os.environ, "SCR_KB_DIR": str(kb_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "scr.cli", "kb", "add", str(big)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(12)  # loads the embedder, then spends ~a minute embedding 40,000 texts
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reopened = KnowledgeBase(kb_dir, embedder=embedder)
    assert reopened.count(status=None) == 3
    assert len(reopened.index.ids()) == 3
    reopened.close()


def test_concurrent_writers_lose_nothing(make_kb, tmp_path, embedder):
    kb = make_kb()
    errors = []

    def writer(n):
        try:
            for i in range(5):
                kb.add([FactInput(text=f"Writer {n} stored fact {i}.")])
            kb.add([FactInput(text="Every writer adds this same fact.")])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert kb.count() == 21 and len(kb.index.ids()) == 21  # the shared fact is stored once
    # A second handle (as another process would open) sees every write.
    other = KnowledgeBase(tmp_path / "kb", embedder=embedder)
    assert other.count() == 21
    other.add([FactInput(text="Written through a second handle.")])
    assert kb.search(["Written through a second handle."], k=1)[0][0].text == "Written through a second handle."
    other.close()


def test_search_vectors_scores_are_cosines(make_kb, embedder):
    kb = make_kb()
    kb.add(FACTS)
    query = "Who is the CEO of Northwind Labs?"
    hit = kb.search([query], k=1)[0][0]
    q, t = embedder.embed([query, FACTS[0].text])
    assert hit.score == pytest.approx(float(np.dot(q, t)), abs=1e-4)
    # Stored key vectors come back in the order asked, equal to the keys' embeddings; unknown ids are named.
    facts = kb.list()
    stored = kb.key_vectors([facts[1].id, facts[0].id])
    assert np.allclose(stored, embedder.embed([facts[1].key, facts[0].key]), atol=1e-5)
    with pytest.raises(FactNotFound, match="nope"):
        kb.key_vectors([facts[0].id, "nope"])
    assert kb.key_vectors([]).shape == (0, embedder.dim)


def test_switching_store_rebuilds_the_index_from_the_database(make_kb):
    faiss_kb = make_kb("faiss")
    added = faiss_kb.add(FACTS).added
    faiss_kb.close()
    chroma_kb = make_kb("chroma")
    assert chroma_kb.search(["Who is the CEO of Northwind Labs?"], k=1)[0][0].id == added[0].id
    assert len(chroma_kb.index.ids()) == 3


LAUNCH_DATES = [  # one fact updated twice, written as questions: no relation, so neither supersedes the other
    {"id": "usa64-a", "text": "What was the launch date of USA-64? 3 December 1992.", "subject": "USA-64",
     "object": "3 December 1992"},
    {"id": "usa64-b", "text": "The USA-64 was launched on what date? 2 March 1992.", "subject": "USA-64",
     "object": "2 March 1992"},
    {"id": "usa64-maker", "text": "Who manufactured USA-64? Lockheed.", "subject": "USA-64", "object": "Lockheed"},
    {"id": "usa65", "text": "What was the launch date of USA-65? 3 December 1992.", "subject": "USA-65",
     "object": "3 December 1992"},
]


def test_added_facts_that_contradict_active_ones_are_reported_not_retired(tmp_path, embedder):
    """Two updates of one fact without a relation both stay active; the report names the pair once. Another
    relation of the subject, another subject, and the same object again are no conflict."""
    from scr.config import Settings
    from scr.engine import Engine

    engine = Engine(Settings(kb_dir=tmp_path / "kb"), embedder=embedder)
    report = engine.add_facts(LAUNCH_DATES)
    assert report.conflicts == [("usa64-a", "usa64-b")]
    assert report.superseded == [] and engine.kb().count() == 4
    assert engine.conflicts() == [("usa64-a", "usa64-b")]  # the whole knowledge base, each pair once
    same_object = engine.add_facts([{"id": "usa64-c", "text": "When was USA-64 launched? 2 March 1992.",
                                     "subject": "USA-64", "object": "2 March 1992"}])
    assert ("usa64-c", "usa64-b") not in same_object.conflicts
    engine.retract("usa64-a")
    later = engine.add_facts([{"id": "usa64-d", "text": "What was the launch date of USA-64? 3 March 1990.",
                               "subject": "USA-64", "object": "3 March 1990"}])
    assert later.conflicts and {other for _, other in later.conflicts} <= {"usa64-b", "usa64-c"}
    # The evaluator adds benchmark cases without the check.
    quiet = engine.add_facts([{"text": "What was the launch date of USA-64? 1 January 1991.", "subject": "USA-64",
                               "object": "1 January 1991"}], find_conflicts=False)
    assert quiet.conflicts == []
    engine.close()


def test_facts_found_by_the_subject_a_text_names(make_kb, embedder):
    """named_in: whole-word subject mentions, longest subject first, active and valid facts only; about: the facts
    stored with exactly one subject. Scores are cosines to the text, as in search."""
    kb = make_kb()
    later = datetime.now(timezone.utc) + timedelta(days=30)
    first = kb.add([
        FactInput(text="Rome is the capital of Italy.", subject="Rome", object="Italy"),
        FactInput(text="Romeo was written by William Shakespeare.", subject="Romeo", object="William Shakespeare"),
        FactInput(text="Romeo and Juliet premiered in London.", subject="Romeo and Juliet", object="London"),
        FactInput(text="The mayor of Rome is Ada Lovelace.", subject="rome", relation="mayor", object="Ada Lovelace"),
        FactInput(text="Rome hosts the 2040 Olympics.", subject="Rome", object="the 2040 Olympics", valid_from=later),
        FactInput(text="Italy is in Europe."),  # no subject: never found by name
    ])
    second = kb.add([FactInput(text="The mayor of Rome is Alan Turing.", subject="Rome", relation="mayor",
                               object="Alan Turing")])
    assert len(first.added) == 6 and len(second.superseded) == 1  # the new mayor retired the old one
    text = "Where did Romeo and Juliet premiere, and who is the mayor of ROME?"
    hits = kb.named_in([text, "Who wrote Romeo?", "Nothing stored is named here."])
    assert [h.text for h in hits[0]] == ["Romeo and Juliet premiered in London.",
                                         "Romeo was written by William Shakespeare.", "Rome is the capital of Italy.",
                                         "The mayor of Rome is Alan Turing."]
    assert [h.text for h in hits[1]] == ["Romeo was written by William Shakespeare."]  # "Rome" only inside a word
    assert hits[2] == []
    query = embedder.embed([text])[0]
    key = embedder.embed(["Romeo and Juliet premiered in"])[0]
    assert hits[0][0].key_score == pytest.approx(float(query @ key), abs=1e-5)
    assert hits[0][0].object == "London" and hits[0][0].subject == "Romeo and Juliet"

    about = kb.about(["ROME", "Romeo", "Juliet"], embedder.embed(["Who governs Rome?"] * 3))
    assert [h.text for h in about[0]] == ["Rome is the capital of Italy.", "The mayor of Rome is Alan Turing."]
    assert [h.text for h in about[1]] == ["Romeo was written by William Shakespeare."]
    assert about[2] == []
    kb.retract(first.added[0].id)
    assert [h.text for h in kb.about(["Rome"], embedder.embed(["Rome"]))[0]] == ["The mayor of Rome is Alan Turing."]
    with pytest.raises(ValueError, match="2 texts but 1 query vectors"):
        kb.about(["Rome", "Romeo"], embedder.embed(["Rome"]))
