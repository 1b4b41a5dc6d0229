"""The command line end to end on the real embedded models: ingest, ask, supersede, retract, both stores,
a Chroma server, persistence across processes, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from scr.cli import app

ROOT = Path(__file__).resolve().parents[1]
FACTS = [
    {"id": "ceo", "text": "The CEO of Northwind Labs is Priya Natarajan.", "subject": "Northwind Labs",
     "relation": "ceo", "object": "Priya Natarajan"},
    {"id": "hq", "text": "The headquarters of Northwind Labs is in Oslo.", "subject": "Northwind Labs",
     "relation": "headquarters", "object": "Oslo"},
    {"id": "pope", "text": "Leo XIV is the Pope of the Catholic Church; he was elected in May 2025.",
     "subject": "Catholic Church", "relation": "pope", "object": "Leo XIV"},
]
UNRELATED = "What is the capital of France?"
runner = CliRunner()


def scr(*args: str, ok: bool = True):
    result = runner.invoke(app, ["--max-new-tokens", "24", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def ask_json(kb: Path, question: str, *extra: str) -> dict:
    return json.loads(scr("--kb", str(kb), *extra, "ask", question, "--json").stdout.strip())


@pytest.fixture
def facts_file(tmp_path) -> Path:
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(f) + "\n" for f in FACTS))
    return path


@pytest.fixture(scope="module")
def base_answer(smol_backend) -> str:
    # The unmodified model's own answer, with the same generation settings as the CLI uses here.
    return smol_backend.generate([[{"role": "user", "content": UNRELATED}]], max_new_tokens=24)[0]


@pytest.mark.parametrize("store", ["faiss", "chroma"])
def test_add_then_ask_gives_updated_answers_only_where_a_fact_applies(tmp_path, facts_file, base_answer, store):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "--store", store, "kb", "add", str(facts_file))
    updated = ask_json(kb, "Who is the CEO of Northwind Labs?", "--store", store)
    assert updated["in_scope"] and "Priya Natarajan" in updated["answer"]
    assert updated["facts"][0]["id"] == "ceo" and updated["facts"][0]["text"] == FACTS[0]["text"]
    unrelated = ask_json(kb, UNRELATED, "--store", store)
    assert not unrelated["in_scope"] and unrelated["facts"] == []
    assert unrelated["answer"] == base_answer

    # Supersede (same subject + relation) and retract; a fresh process sees the persisted state.
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"text": "The headquarters of Northwind Labs moved to Lisbon.",
                                 "subject": "Northwind Labs", "relation": "headquarters", "object": "Lisbon"}) + "\n")
    out = scr("--kb", str(kb), "--store", store, "kb", "add", str(newer), "--json").stdout
    assert json.loads(out)["superseded"][0][0] == "hq"
    hq = ask_json(kb, "Where is the headquarters of Northwind Labs?", "--store", store)
    assert "Lisbon" in hq["answer"] and "Oslo" not in hq["answer"]
    scr("--kb", str(kb), "--store", store, "kb", "retract", "ceo")
    after = ask_json(kb, "Who is the CEO of Northwind Labs?", "--store", store)
    assert "ceo" not in [f["id"] for f in after["facts"]]
    assert "Priya Natarajan" not in after["answer"]


def test_a_document_sentence_answers_only_questions_naming_what_it_names(tmp_path):
    """A document's sentences carry no subject: the name check keeps "Porsche 924" questions away from a sentence
    on the Porsche 911, which the similarity gate alone lets through (``--no-name-check``)."""
    doc = tmp_path / "porsche.md"
    doc.write_text("# Porsche news\n\nSince 2026 the Porsche 911 is produced by Honda in Osaka.\n")
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(doc))
    own = ask_json(kb, "Who produces the Porsche 911?")
    assert own["in_scope"] and own["facts"][0]["text"].startswith("Since 2026 the Porsche 911")
    assert not ask_json(kb, "Who produces the Porsche 924?")["in_scope"]
    assert ask_json(kb, "Who produces the Porsche 924?", "--no-name-check")["in_scope"]


def test_ask_multihop_walks_the_sample_chain(tmp_path):
    """`ask --multihop` over the shipped sample: Northwind Labs' flagship product (sample-17) stores 12 kWh
    (sample-20); the hops go to stderr, or into --json."""
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(ROOT / "knowledge_base" / "facts.jsonl"))
    question = "How much energy does the flagship product of Northwind Labs store?"
    assert "hops" not in ask_json(kb, question)  # a plain ask reads one fact and has no hops
    out = json.loads(scr("--kb", str(kb), "ask", question, "--multihop", "--json").stdout.strip())
    assert [(h["written_by"], h["fact"]["id"]) for h in out["hops"][:2]] == [("kb", "sample-17"), ("kb", "sample-20")]
    assert out["answer"].startswith("12 kilowatt-hours") and out["in_scope"] and out["stop"] in ("final", "max_hops")
    text = scr("--kb", str(kb), "ask", question, "--multihop", "--max-hops", "2")
    assert text.stdout.startswith("12 kilowatt-hours")
    assert "kb: " in text.stderr and "sample-20" in text.stderr
    assert scr("--kb", str(kb), "ask", question, "--multihop", "--max-hops", "0", ok=False).exit_code == 2


def test_kb_commands_and_history(tmp_path, facts_file):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    listed = [json.loads(line) for line in scr("--kb", str(kb), "kb", "list", "--json").stdout.splitlines()]
    assert [f["id"] for f in listed] == ["ceo", "hq", "pope"]
    shown = json.loads(scr("--kb", str(kb), "kb", "show", "pope").stdout)
    assert shown["object"] == "Leo XIV" and shown["status"] == "active"
    out = scr("--kb", str(kb), "kb", "add", "--text", "The CEO of Northwind Labs is Omar Haddad.",
              "--supersedes", "ceo").stdout
    new_id = out.strip().split("id: ")[-1]
    history = json.loads(scr("--kb", str(kb), "kb", "history", new_id, "--json").stdout)
    assert [h["fact"]["id"] for h in history] == ["ceo", new_id]
    assert [e["event"] for e in history[0]["events"]] == ["added", "superseded"]
    hits = json.loads(scr("--kb", str(kb), "kb", "search", "Who is the CEO of Northwind Labs?", "--json").stdout)
    assert hits[0]["id"] == new_id and "ceo" not in [h["id"] for h in hits]
    assert len([line for line in scr("--kb", str(kb), "kb", "list", "--all", "--json").stdout.splitlines()]) == 4
    # A fact that answers the headquarters question with another city, without a relation to supersede by: both
    # stay active and the command names them.
    out = scr("--kb", str(kb), "kb", "add", "--text", "Where is the headquarters of Northwind Labs? Bergen.",
              "--subject", "Northwind Labs", "--object", "Bergen")
    assert "1 possible conflict" in out.stderr and "Bergen" in out.stderr and "hq 'The headquarters" in out.stderr
    bergen = out.stdout.strip().split("id: ")[-1]
    assert json.loads(scr("--kb", str(kb), "kb", "conflicts", "--json").stdout) == [["hq", bergen]]
    scr("--kb", str(kb), "kb", "retract", bergen)
    assert "no possible conflicts" in scr("--kb", str(kb), "kb", "conflicts").stdout
    # Adding the same file again stores nothing and does not revive the superseded fact.
    again = json.loads(scr("--kb", str(kb), "kb", "add", str(facts_file), "--json").stdout)
    assert again["added"] == [] and again["duplicates"] == 3
    assert json.loads(scr("--kb", str(kb), "kb", "show", "ceo").stdout)["status"] == "superseded"
    # A retraction is undone with restore (a superseded fact is not: its successor holds its place).
    scr("--kb", str(kb), "kb", "retract", "pope")
    assert json.loads(scr("--kb", str(kb), "kb", "show", "pope").stdout)["status"] == "retracted"
    assert scr("--kb", str(kb), "kb", "restore", "pope", "--reason", "by mistake").stdout.strip() == "restored pope"
    assert json.loads(scr("--kb", str(kb), "kb", "show", "pope").stdout)["status"] == "active"
    refused = scr("--kb", str(kb), "kb", "restore", "ceo", ok=False)
    assert refused.exit_code == 1 and f"cannot restore fact 'ceo': it is superseded by '{new_id}'" in refused.stderr


def test_export_is_read_back_by_add(tmp_path, facts_file):
    kb, copy = tmp_path / "kb", tmp_path / "copy"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    scr("--kb", str(kb), "kb", "add", "--text", "The CEO of Northwind Labs is Omar Haddad. :smile: [b]x[/b]",
        "--supersedes", "ceo")
    scr("--kb", str(kb), "kb", "retract", "pope")
    exported = scr("--kb", str(kb), "kb", "export").stdout
    rows = [json.loads(line) for line in exported.splitlines()]
    assert [r.get("id") for r in rows][0] == "hq" and len(rows) == 2  # active facts only
    assert rows[1]["text"].endswith(":smile: [b]x[/b]") and "supersedes" not in rows[1]  # printed as is
    dump = tmp_path / "facts-export.jsonl"
    dump.write_text(exported)
    scr("--kb", str(copy), "kb", "add", str(dump))
    assert scr("--kb", str(copy), "kb", "export").stdout == exported


def test_square_brackets_in_facts_and_errors_are_printed_as_text(tmp_path):
    """Fact texts, ids and error messages are data, not console markup: "[bold]" stays on the screen."""
    kb = tmp_path / "kb"
    text = "The motto of [Acme] is [bold]Onward[/bold]."
    facts = tmp_path / "motto.jsonl"
    facts.write_text(json.dumps({"id": "[m1]", "text": text}) + "\n")
    bad_id = scr("--kb", str(kb), "kb", "add", str(facts), ok=False)
    assert bad_id.exit_code == 1 and "should match pattern '^[A-Za-z0-9_.:\\-]+$'" in bad_id.output
    facts.write_text(json.dumps({"id": "m1", "text": text}) + "\n")
    scr("--kb", str(kb), "kb", "add", str(facts))
    for args in (["kb", "list"], ["kb", "history", "m1"], ["kb", "search", "What is the motto of Acme?"]):
        shown = "".join(scr("--kb", str(kb), *args).stdout.split())  # tables wrap long cells
        assert "[Acme]is[bold]Onward[/bold]" in shown, shown
    missing = scr("--kb", str(kb), "kb", "show", "[nope]", ok=False)
    assert missing.exit_code == 1 and "unknown fact id: '[nope]'" in missing.output


def test_batch_questions_from_a_file(tmp_path, facts_file, base_answer):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    questions = tmp_path / "questions.txt"
    questions.write_text("Who is the Pope?\n\n" + UNRELATED + "\n")
    lines = scr("--kb", str(kb), "ask", "--file", str(questions), "--json").stdout.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["in_scope"] for r in records] == [True, False]
    assert "Leo XIV" in records[0]["answer"]
    assert records[1]["answer"] == base_answer


@pytest.mark.parametrize("args, message", [
    (["kb", "show", "nope"], "unknown fact id: 'nope'"),
    (["kb", "retract", "nope"], "unknown fact id"),
    (["kb", "history", "nope"], "unknown fact id"),
    (["ask", "   "], "question is empty"),
    (["ask"], "give a QUESTION or --file"),
    (["--kb", "/nonexistent/kb-typo", "ask", "Who?"], "no knowledge base at /nonexistent/kb-typo"),
    (["--store", "milvus", "kb", "list"], "store"),
    (["--k", "0", "kb", "list"], "k:"),
    (["--backend", "vllm", "--vllm-url", "localhost:8000", "ask", "Who?"],
     "vllm_url: expected an http:// or https:// URL with a host, got 'localhost:8000'"),
    (["--store", "chroma", "--chroma-url", "chroma:8000", "kb", "search", "Oslo"], "chroma_url: expected an http://"),
    (["--llm", "no-such/model", "ask", "Who?"],
     "cannot load the LLM 'no-such/model': it is not an embedded model, a local folder, or in the Hugging Face cache"),
    (["--llm", str(ROOT / "knowledge_base"), "ask", "Who?"], "holds no config.json"),
    (["kb", "add", "--text", ""], "--text: String should have at least 1 character"),
    (["kb", "add", "--text", "x" * 5000], "--text: String should have at most 4000 characters"),
    (["kb", "supersede", "ceo", "--text", "  "], "--text: String should have at least 1 character"),
    (["kb", "search", "Oslo", "--k", "0"], "Invalid value for '--k'"),
    (["kb", "list", "--limit", "-1"], "Invalid value for '--limit'"),
])
def test_bad_input_gives_a_clear_error_and_nonzero_exit(tmp_path, facts_file, args, message):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    result = scr("--kb", str(kb), *args, ok=False)
    assert result.exit_code != 0
    assert message in result.stderr


def test_bad_questions_file_is_named(tmp_path, facts_file):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    latin1 = tmp_path / "questions.txt"
    latin1.write_bytes("Who is the CEO of Northwind Labs?\nQui est le pr\u00e9sident ?\n".encode("latin-1"))
    for path, message in [(latin1, f"{latin1}:2: not UTF-8 text (byte 0xe9)"),
                          (tmp_path, f"{tmp_path}: is a directory"),
                          (tmp_path / "none.txt", "questions file not found")]:
        result = scr("--kb", str(kb), "ask", "--file", str(path), ok=False)
        assert result.exit_code == 1 and message in result.stderr


def test_bad_settings_file_is_named(tmp_path):
    latin1 = tmp_path / "scr.toml"
    latin1.write_bytes('k = 3\nllm = "caf\u00e9"\n'.encode("latin-1"))
    for path, message in [(latin1, f"settings file {latin1}:2: not UTF-8 text (byte 0xe9)"),
                          (tmp_path, f"settings file {tmp_path} is a directory"),
                          (tmp_path / "none.toml", "settings file not found")]:
        result = scr("--config", str(path), "--kb", str(tmp_path / "kb"), "kb", "list", ok=False)
        assert result.exit_code == 1 and message in result.stderr


def test_serve_refuses_a_taken_port_or_bad_options_before_loading_models(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = scr("--kb", str(tmp_path / "kb"), "serve", "--port", str(port), ok=False)
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "loading models" not in result.stderr
    result = scr("--kb", str(tmp_path / "kb"), "serve", "--log-level", "loud", ok=False)
    assert result.exit_code == 1 and "--log-level 'loud': choose from critical" in result.stderr
    result = scr("--kb", str(tmp_path / "kb"), "serve", "--port", "70000", ok=False)
    assert result.exit_code == 2 and "Invalid value for '--port'" in result.stderr


def test_quickstart_names_a_bad_sample_folder(tmp_path):
    result = scr("--kb", str(tmp_path / "kb"), "quickstart", "--sample", str(tmp_path), ok=False)
    assert result.exit_code == 1 and "no facts.jsonl, updates.jsonl, questions.jsonl" in result.stderr
    sample = tmp_path / "sample"
    shutil.copytree(ROOT / "knowledge_base", sample)
    with open(sample / "questions.jsonl", "a") as fh:
        fh.write('{"question": \n')
    lines = len((sample / "questions.jsonl").read_text().splitlines())
    result = scr("--kb", str(tmp_path / "kb"), "quickstart", "--sample", str(sample), ok=False)
    assert result.exit_code == 1 and f"questions.jsonl:{lines}: invalid JSON" in result.stderr
    assert not (tmp_path / "kb").exists()  # nothing ingested


def test_malformed_file_stores_nothing_unless_skip_invalid(tmp_path, facts_file):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "A valid new fact."}\n{"text": \n')
    result = scr("--kb", str(kb), "kb", "add", str(bad), ok=False)
    assert result.exit_code == 1 and f"{bad}:2: invalid JSON" in result.stderr
    assert len(scr("--kb", str(kb), "kb", "list", "--json").stdout.splitlines()) == 3
    result = scr("--kb", str(kb), "kb", "add", str(bad), "--skip-invalid")
    assert "added 1 fact(s)" in result.stdout and "bad.jsonl:2" in result.stderr
    assert len(scr("--kb", str(kb), "kb", "list", "--json").stdout.splitlines()) == 4


def test_incompatible_store_version_is_a_clear_error(tmp_path, facts_file):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    manifest = kb / "scr-kb.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 7}))
    result = scr("--kb", str(kb), "kb", "list", ok=False)
    assert result.exit_code == 1 and "incompatible version" in result.stderr


def test_settings_file_and_environment(tmp_path, facts_file, monkeypatch):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "scr.toml").write_text('k = 1\nscope_mode = "similarity"\nscope_threshold = 0.99\n')
    scr("--kb", str(kb), "kb", "add", str(facts_file))
    hits = json.loads(scr("--kb", str(kb), "kb", "search", "Northwind Labs", "--json").stdout)
    assert len(hits) == 1  # k from the settings file
    monkeypatch.setenv("SCR_K", "2")
    assert len(json.loads(scr("--kb", str(kb), "kb", "search", "Northwind", "--json").stdout)) == 2
    assert len(json.loads(scr("--kb", str(kb), "--k", "3", "kb", "search", "Northwind", "--json").stdout)) == 3
    # the similarity gate at 0.99, from the file: nothing is in scope
    assert not ask_json(kb, "Who is the CEO of Northwind Labs?")["in_scope"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = _free_port()
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the Chroma server did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_chroma_server_by_url(tmp_path, facts_file, chroma_server):
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "--store", "chroma", "--chroma-url", chroma_server, "kb", "add", str(facts_file))
    assert not (kb / "chroma").exists()  # vectors live in the server, not in the folder
    hits = json.loads(scr("--kb", str(kb), "--store", "chroma", "--chroma-url", chroma_server, "kb", "search",
                          "Who is the Pope?", "--json").stdout)
    assert hits[0]["id"] == "pope"
    down = f"http://127.0.0.1:{_free_port()}"
    result = scr("--kb", str(kb), "--store", "chroma", "--chroma-url", down, "kb", "search", "Pope", ok=False)
    assert result.exit_code == 1 and f"error: Chroma server at {down}: Could not connect" in result.stderr


def test_console_script_in_a_fresh_process(tmp_path, facts_file):
    """The installed `scr` entry point, as an operator runs it."""
    exe = shutil.which("scr") or str(Path(sys.executable).with_name("scr"))
    kb = tmp_path / "kb"
    env = {**os.environ, "SCR_MAX_NEW_TOKENS": "16"}
    subprocess.run([exe, "--kb", str(kb), "kb", "add", str(facts_file)], check=True, env=env, capture_output=True)
    done = subprocess.run([exe, "--kb", str(kb), "ask", "Who is the CEO of Northwind Labs?", "--json"], check=True, env=env,
                          capture_output=True, text=True)
    record = json.loads(done.stdout)
    assert record["in_scope"] and "Priya Natarajan" in record["answer"]
    missing = subprocess.run([exe, "--kb", str(kb), "kb", "show", "nope"], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "unknown fact id" in missing.stderr


def test_inverse_questions_from_the_command_line(tmp_path, monkeypatch):
    """`scr ask` answers a question asked backwards from a fact's object (the default); `--no-inverse` and
    SCR_SCOPE_INVERSE=false leave it to the model as before."""
    kb = tmp_path / "kb"
    scr("--kb", str(kb), "kb", "add", "--text", "The father of Hnoss Mallory is Joktan Verel.", "--subject",
        "Hnoss Mallory", "--relation", "father", "--object", "Joktan Verel")
    question = "Who is the daughter of Joktan Verel?"
    answer = ask_json(kb, question)
    assert answer["in_scope"] and answer["answer"].startswith("Hnoss Mallory")
    assert not ask_json(kb, question, "--no-inverse")["in_scope"]
    monkeypatch.setenv("SCR_SCOPE_INVERSE", "false")
    assert not ask_json(kb, question)["in_scope"]
