"""The HTTP API over a real Engine (SmolLM2 in process + MiniLM): every endpoint, the token, bad input, the
OpenAI-compatible endpoint through the openai client (and LangChain when installed), concurrency, a real
`scr serve` subprocess, and the docker-compose file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from scr.api.batching import QueryBatcher
from scr.config import Settings
from scr.engine import Engine
from scr.llm.vllm import VLLMBackend
from scr.llm.vllm_server import free_port
from scr.pipeline import base_prompt

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "knowledge_base"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_NEW_TOKENS = 12  # answers only need their first words; CPU is scarce
IN_SCOPE_Q = "Who is the Chancellor of Germany?"
OUT_SCOPE_Q = "What is the capital of France?"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, smol_backend, embedder):
    settings = Settings(kb_dir=tmp_path_factory.mktemp("api") / "kb", max_new_tokens=MAX_NEW_TOKENS,
                        max_question_chars=300)
    engine = Engine(settings, backend=smol_backend, embedder=embedder)
    engine.ingest([SAMPLE / "facts.jsonl"])
    yield engine
    engine.kb().close()


@pytest.fixture(scope="module")
def client(engine):
    from fastapi.testclient import TestClient

    from scr.api import create_app

    with TestClient(create_app(engine, api_token=TOKEN), raise_server_exceptions=False) as client:
        yield client


def _error(response: httpx.Response) -> str:
    body = response.json()
    assert body["error"]["message"] == body["detail"]  # both shapes, for curl users and OpenAI clients
    return body["detail"]


# ----- questions -----------------------------------------------------------------------------------------------
def test_query_uses_the_stored_fact_in_scope_and_the_model_alone_out_of_scope(client, smol_backend):
    r = client.post("/v1/query", json={"question": IN_SCOPE_Q})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["in_scope"] is True
    assert [f["id"] for f in body["facts"]] == ["sample-02"]
    assert set(body["facts"][0]) == {"id", "text", "score"}
    assert body["scoped_on"] is None  # decided on the whole question (tests/test_scope_pipeline.py: the retry)
    assert "Merz" in body["answer"]
    assert {"retrieve_s", "scope_s", "answer_s", "total_s", "queue_s", "request_s"} <= set(body["timings"])

    r = client.post("/v1/query", json={"question": OUT_SCOPE_Q})
    body = r.json()
    assert body["in_scope"] is False and body["facts"] == []
    # Out of scope, the answer is exactly the unmodified model's.
    assert body["answer"] == smol_backend.generate([base_prompt(OUT_SCOPE_Q)], MAX_NEW_TOKENS)[0]


def test_multihop_query_walks_the_stored_links(client):
    """The sample holds a chain: Northwind Labs' flagship product is the Helios-3, which stores 12 kWh."""
    question = "How much energy does the flagship product of Northwind Labs store?"
    r = client.post("/v1/query/multihop", json={"question": question})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(h["written_by"], h["fact"]["id"]) for h in body["hops"][:2]] == [("kb", "sample-17"), ("kb", "sample-20")]
    assert [f["id"] for f in body["facts"]][:2] == ["sample-17", "sample-20"] and body["in_scope"] is True
    assert body["answer"].startswith("12 kilowatt-hours")  # object-first: the last walked fact's object
    assert {"decompose_s", "hops_s", "answer_s", "total_s", "request_s"} <= set(body["timings"])
    bounded = client.post("/v1/query/multihop", json={"question": question, "max_hops": 1}).json()
    assert len(bounded["hops"]) <= 1 and bounded["stop"] == "max_hops"
    assert "max_hops" in _error(client.post("/v1/query/multihop", json={"question": question, "max_hops": 0}))
    assert "empty" in _error(client.post("/v1/query/multihop", json={"question": "  "}))


def test_query_batch_answers_in_order(client):
    questions = ["Who is the Pope?", "Who wrote Romeo and Juliet?"]
    r = client.post("/v1/query/batch", json={"questions": questions})
    assert r.status_code == 200, r.text
    answers = r.json()["answers"]
    assert [a["question"] for a in answers] == questions
    assert [a["in_scope"] for a in answers] == [True, False]
    assert answers[0]["facts"][0]["id"] == "sample-01"


# ----- facts ----------------------------------------------------------------------------------------------------
def test_write_endpoints_need_the_token_and_reads_do_not(client):
    fact = {"text": "The mascot of Freedonia is a heron."}
    r = client.post("/v1/facts", json=fact)
    assert r.status_code == 401 and "API token" in _error(r)
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.post("/v1/facts", json=fact, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "wrong API token" in _error(r)
    assert client.delete("/v1/facts/sample-01").status_code == 401
    assert client.get("/v1/facts/sample-01").status_code == 200
    assert client.get("/v1/facts").status_code == 200


def test_fact_lifecycle_add_list_get_supersede_history_retract(client):
    one = client.post("/v1/facts", json={"id": "api-1", "text": "The anthem of Freedonia is 'Hail Freedonia'."},
                      headers=AUTH)
    assert one.status_code == 201, one.text
    assert [f["id"] for f in one.json()["added"]] == ["api-1"]
    assert one.json()["added"][0]["source"] == "api"

    many = client.post("/v1/facts", headers=AUTH, json=[
        {"id": "api-2", "text": "Freedonia's national bird is the heron.", "subject": "Freedonia",
         "relation": "national bird", "object": "heron"},
        {"id": "api-3", "text": "Freedonia's currency is the florin."}])
    assert many.status_code == 201 and len(many.json()["added"]) == 2
    wrapped = client.post("/v1/facts", headers=AUTH, json={"facts": [{"id": "api-4", "text": "Freedonia has 3 rivers."}]})
    assert wrapped.status_code == 201

    duplicate = client.post("/v1/facts", headers=AUTH, json={"text": "Freedonia's currency is the florin."})
    assert duplicate.status_code == 200
    assert duplicate.json()["added"] == [] and duplicate.json()["duplicates"] == ["Freedonia's currency is the florin."]

    assert client.get("/v1/facts/api-2").json()["text"] == "Freedonia's national bird is the heron."
    listed = client.get("/v1/facts", params={"limit": 1000}).json()
    assert {"api-1", "api-2", "api-3", "api-4"} <= {f["id"] for f in listed["facts"]}
    assert listed["total"] == len(listed["facts"])
    page = client.get("/v1/facts", params={"limit": 2, "offset": 1}).json()
    assert [f["id"] for f in page["facts"]] == [f["id"] for f in listed["facts"][1:3]]

    # Same subject and relation: the new fact supersedes api-2.
    newer = client.post("/v1/facts", headers=AUTH, json={
        "id": "api-2b", "text": "Freedonia's national bird is the crane.", "subject": "Freedonia",
        "relation": "national bird", "object": "crane"})
    assert newer.json()["superseded"] == [["api-2", "api-2b"]] and newer.json()["conflicts"] == []
    rival = client.post("/v1/facts", headers=AUTH, json={
        "id": "api-2c", "text": "What is the national bird of Freedonia? The stork.", "subject": "Freedonia",
        "object": "stork"})
    assert rival.json()["conflicts"] == [["api-2c", "api-2b"]]
    assert {"api-2b", "api-2c"} in [set(pair) for pair in client.get("/v1/conflicts").json()["conflicts"]]
    assert client.delete("/v1/facts/api-2c", headers=AUTH).status_code == 200
    chain = client.get("/v1/facts/api-2b/history").json()["chain"]
    assert [(e["fact"]["id"], e["fact"]["status"]) for e in chain] == [("api-2", "superseded"), ("api-2b", "active")]
    assert [e["event"] for e in chain[0]["events"]] == ["added", "superseded"]
    assert "api-2" in {f["id"] for f in client.get("/v1/facts", params={"status": "superseded"}).json()["facts"]}

    gone = client.delete("/v1/facts/api-3", params={"reason": "wrong"}, headers=AUTH)
    assert gone.status_code == 200 and gone.json()["status"] == "retracted"
    assert "api-3" not in {f["id"] for f in client.get("/v1/facts").json()["facts"]}
    assert client.get("/v1/facts/api-3/history").json()["chain"][0]["events"][-1]["detail"] == "wrong"
    again = client.delete("/v1/facts/api-3", headers=AUTH)
    assert again.status_code == 409 and "already retracted" in _error(again)
    assert client.post("/v1/facts/api-3/restore").status_code == 401
    back = client.post("/v1/facts/api-3/restore", params={"reason": "retracted by mistake"}, headers=AUTH)
    assert back.status_code == 200 and back.json()["status"] == "active"
    assert "api-3" in {f["id"] for f in client.get("/v1/facts").json()["facts"]}
    twice = client.post("/v1/facts/api-3/restore", headers=AUTH)
    assert twice.status_code == 409 and "is active, not retracted" in _error(twice)
    superseded = client.post("/v1/facts/api-2/restore", headers=AUTH)
    assert superseded.status_code == 409 and "is superseded by 'api-2b'" in _error(superseded)


def test_unknown_fact_ids_are_404(client):
    for r in (client.get("/v1/facts/nope"), client.get("/v1/facts/nope/history"),
              client.delete("/v1/facts/nope", headers=AUTH), client.post("/v1/facts/nope/restore", headers=AUTH)):
        assert r.status_code == 404 and "nope" in _error(r)


def test_an_added_fact_is_used_by_the_next_query(client):
    r = client.post("/v1/facts", headers=AUTH, json={
        "id": "sylvania", "text": "The capital of Freedonia is Sylvania.", "subject": "Freedonia",
        "relation": "capital", "object": "Sylvania"})
    assert r.status_code == 201, r.text
    body = client.post("/v1/query", json={"question": "What is the capital of Freedonia?"}).json()
    assert body["in_scope"] and body["facts"][0]["id"] == "sylvania"
    assert "Sylvania" in body["answer"]


# ----- bad input: 4xx naming the field, never 500 ------------------------------------------------------------------
@pytest.mark.parametrize("path, kwargs, status, words", [
    ("/v1/query", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, ["JSON"]),
    ("/v1/query", {"json": {}}, 422, ["question", "required"]),
    ("/v1/query", {"json": {"question": 42}}, 422, ["question", "string"]),
    ("/v1/query", {"json": {"question": "   "}}, 422, ["question", "empty"]),
    ("/v1/query", {"json": {"question": "x" * 301}}, 422, ["question", "301", "limit is 300"]),
    ("/v1/query", {"json": {"question": "hi", "extra": 1}}, 422, ["extra"]),
    ("/v1/query", {"content": b"", "headers": {"content-type": "application/json"}}, 422, ["body"]),
    ("/v1/query/batch", {"json": {"questions": []}}, 422, ["questions", "at least one"]),
    ("/v1/query/batch", {"json": {"questions": ["ok?", ""]}}, 422, ["questions", "question 2", "empty"]),
    ("/v1/query/batch", {"json": {"questions": "one"}}, 422, ["questions", "list"]),
    ("/v1/facts", {"json": {"subject": "x"}}, 422, ["text", "required"]),
    ("/v1/facts", {"json": [{"text": "fine"}, {"text": ""}]}, 422, ["facts[1].text"]),
    ("/v1/facts", {"json": {"text": "x", "colour": "red"}}, 422, ["colour"]),
    ("/v1/facts", {"json": {"text": "x", "id": "bad id!"}}, 422, ["id"]),
    ("/v1/facts", {"json": "just text"}, 422, ["body"]),
    ("/v1/facts", {"json": {"facts": []}}, 422, ["facts", "at least one"]),
    ("/v1/facts", {"content": b"[{", "headers": {"content-type": "application/json"}}, 400, ["JSON"]),
    ("/v1/facts", {"json": {"text": "x", "supersedes": "nope"}}, 404, ["nope"]),
    ("/v1/facts", {"json": {"id": "sample-01", "text": "A new text."}}, 409, ["sample-01", "exists"]),
    ("/v1/chat/completions", {"json": {"model": "scr", "messages": []}}, 422, ["messages"]),
    ("/v1/chat/completions", {"json": {"model": "scr", "messages": [{"role": "system", "content": "hi"}]}}, 422,
     ["messages", "user"]),
    ("/v1/chat/completions", {"json": {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}}, 404,
     ["gpt-4", "scr"]),
    ("/v1/chat/completions", {"json": {"messages": [{"role": "user", "content": "hi"}]}}, 422, ["model"]),
])
def test_bad_input_gets_a_4xx_naming_the_problem(client, path, kwargs, status, words):
    kwargs = dict(kwargs)
    r = client.post(path, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
    assert r.status_code == status, r.text
    message = _error(r)
    for word in words:
        assert word.lower() in message.lower(), message


def test_bad_query_parameters_and_oversized_bodies(client):
    r = client.get("/v1/facts", params={"status": "sleeping"})
    assert r.status_code == 422 and "status" in _error(r)
    r = client.get("/v1/facts", params={"limit": 0})
    assert r.status_code == 422 and "limit" in _error(r)
    r = client.post("/v1/query", content=b"{" + b" " * (9 << 20) + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_backend_down_is_503_and_the_api_stays_up(tmp_path, embedder):
    from fastapi.testclient import TestClient

    from scr.api import create_app

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = Settings(kb_dir=tmp_path / "kb", backend="vllm", vllm_url=dead)
    backend = VLLMBackend(dead, retries=1, backoff_s=0.01)
    engine = Engine(settings, backend=backend, embedder=embedder)
    engine.add_facts([{"text": "The capital of Freedonia is Sylvania."}])
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        for path, body in (("/v1/query", {"question": "What is the capital of Freedonia?"}),
                           ("/v1/chat/completions", {"model": "scr", "messages": [{"role": "user", "content": "hi"}]})):
            r = client.post(path, json=body)
            assert r.status_code == 503, r.text
            assert "cannot reach the vLLM server" in _error(r) and dead in _error(r)
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "cannot reach" in health["backend_error"]
        assert client.get("/v1/facts").json()["total"] == 1
    engine.close()


# ----- OpenAI-compatible ------------------------------------------------------------------------------------------------
def test_openai_client_chat_completion_and_streaming(client):
    from openai import OpenAI

    openai = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    assert [m.id for m in openai.models.list().data] == ["scr"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": IN_SCOPE_Q}]
    completion = openai.chat.completions.create(model="scr", messages=messages, temperature=0.7, max_tokens=5)
    assert completion.object == "chat.completion"
    assert "Merz" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    scr = completion.model_extra["scr"]
    assert scr["in_scope"] and scr["question"] == IN_SCOPE_Q and scr["facts"][0]["id"] == "sample-02"

    chunks = list(openai.chat.completions.create(model="scr", messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == completion.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["scr"]["facts"][0]["id"] == "sample-02"


def test_langchain_chat_openai_works_unchanged(client):
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="scr", base_url="http://testserver/v1", api_key="unused", http_client=client,
                      max_retries=0)
    reply = chat.invoke("Who is the Pope?")
    assert "Leo" in reply.content
    assert "Leo" in "".join(chunk.content for chunk in chat.stream("Who is the Pope?"))


# ----- service endpoints ---------------------------------------------------------------------------------------------------
def test_health_metrics_and_docs(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["facts"] >= 25 and health["backend_error"] is None
    client.get("/v1/facts/sample-01")
    client.post("/v1/query", json={"question": "Who is the Pope?"})
    metrics = client.get("/metrics").json()
    route = metrics["requests"]["GET /v1/facts/{fact_id}"]
    assert route["count"] >= 1 and route["latency_s"]["max"] >= route["latency_s"]["p50"] > 0
    assert "POST /v1/query" in metrics["requests"] and metrics["query_batches"]["batches"] >= 1
    text = client.get("/metrics", params={"format": "prometheus"}).text
    assert 'scr_requests_total{route="GET /v1/facts/{fact_id}",status="200"}' in text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs <= set(spec["components"]["schemas"])  # the docs page resolves every schema
    assert {"/v1/query", "/v1/query/batch", "/v1/facts", "/v1/facts/{fact_id}", "/v1/facts/{fact_id}/history",
            "/v1/chat/completions", "/v1/models", "/health", "/metrics"} <= set(paths)


# ----- concurrency ---------------------------------------------------------------------------------------------------------
def test_concurrent_adds_and_queries_lose_nothing(client):
    before = client.get("/v1/facts").json()["total"]
    errors: list[str] = []
    answers: list[dict] = []

    def add(n: int) -> None:
        r = client.post("/v1/facts", headers=AUTH, json=[{"text": f"Concurrent fact {n}-{m}: item {n * 10 + m}."}
                                                          for m in range(3)])
        if r.status_code != 201:
            errors.append(r.text)

    def ask() -> None:
        r = client.post("/v1/query", json={"question": "Who is the Pope?"})
        if r.status_code != 200:
            errors.append(r.text)
        else:
            answers.append(r.json())

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)] + [threading.Thread(target=ask)
                                                                             for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert client.get("/v1/facts").json()["total"] == before + 24
    assert len(answers) == 4 and all(a["facts"][0]["id"] == "sample-01" for a in answers)
    assert len({a["answer"] for a in answers}) == 1


def test_the_batcher_groups_concurrent_questions_and_reports_errors_to_each_caller():
    seen: list[list[str]] = []
    release = threading.Event()

    def answer_batch(questions):
        seen.append(list(questions))
        release.wait(5)
        if "boom" in questions:
            raise RuntimeError("backend failed")
        return [f"answer to {q}" for q in questions]

    batcher = QueryBatcher(answer_batch, max_batch=8, max_wait_s=0.05)
    first = batcher.submit("q0")  # occupies the worker...
    time.sleep(0.1)
    rest = [batcher.submit(f"q{n}") for n in range(1, 6)]  # ...while these queue up into one batch
    release.set()
    assert [f.result(5)[0] for f in [first, *rest]] == [f"answer to q{n}" for n in range(6)]
    assert seen == [["q0"], [f"q{n}" for n in range(1, 6)]]
    failing = batcher.submit("boom")
    with pytest.raises(RuntimeError, match="backend failed"):
        failing.result(5)
    assert batcher.submit("q9").result(5)[0] == "answer to q9"  # the worker survived
    batcher.close()


# ----- a real `scr serve` ----------------------------------------------------------------------------------------------------
def wait_for_health(url: str, process: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"scr serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("scr serve did not become healthy")


def start_scr_serve(kb_dir: Path, *global_args: str, token: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "SCR_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS)}
    env.pop("SCR_API_TOKEN", None)
    if token:
        env["SCR_API_TOKEN"] = token
    command = [sys.executable, "-m", "scr.cli", "--kb", str(kb_dir), *global_args, "serve", "--port", str(port),
               "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
    except BaseException:
        stop(process)
        raise
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_scr_serve_subprocess_answers_query_and_openai_chat(tmp_path):
    from openai import OpenAI

    process, url = start_scr_serve(tmp_path / "kb", token=TOKEN)
    try:
        assert httpx.post(f"{url}/v1/facts", json={"text": "x"}).status_code == 401  # SCR_API_TOKEN is read
        r = httpx.post(f"{url}/v1/facts", headers=AUTH, timeout=120, json=[json.loads(line) for line in
                                                                        (SAMPLE / "facts.jsonl").read_text().splitlines()])
        assert r.status_code == 201 and len(r.json()["added"]) == 25
        body = httpx.post(f"{url}/v1/query", json={"question": IN_SCOPE_Q}, timeout=120).json()
        assert body["in_scope"] and "Merz" in body["answer"]
        openai = OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
        completion = openai.chat.completions.create(model="scr", messages=[{"role": "user", "content": IN_SCOPE_Q}])
        assert completion.choices[0].message.content == body["answer"]
        assert completion.model_extra["scr"]["facts"][0]["id"] == "sample-02"
    finally:
        stop(process)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status reports it.
    assert process.returncode in (0, -15)


# ----- docker compose ------------------------------------------------------------------------------------------------------------
def compose_defaults(value):
    """What docker compose makes of ${NAME:-default} with nothing set in the environment."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [compose_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: compose_defaults(v) for k, v in value.items()}
    return value


def test_docker_compose_wires_vllm_chroma_and_the_api():
    import yaml

    from scr.config import Settings

    compose = compose_defaults(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))
    services = compose["services"]
    assert set(services) == {"vllm", "chroma", "api"}
    vllm, chroma, api = services["vllm"], services["chroma"], services["api"]

    assert vllm["image"].startswith("vllm/vllm-openai")
    command = vllm["command"]
    assert command[command.index("--model") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    served = command[command.index("--served-model-name") + 1]
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert chroma["image"].startswith("chromadb/chroma")
    assert api["build"]["dockerfile"] == "docker/Dockerfile" and (ROOT / api["build"]["dockerfile"]).exists()

    env = api["environment"]
    assert env["SCR_BACKEND"] == "vllm" and env["SCR_STORE"] == "chroma"
    assert env["SCR_VLLM_URL"] == "http://vllm:8000/v1" and env["SCR_CHROMA_URL"] == "http://chroma:8000"
    assert env["SCR_VLLM_MODEL"] == served
    # Every SCR_* variable the API gets is a Settings field (or the API token).
    fields = {f"SCR_{name.upper()}" for name in Settings.model_fields} | {"SCR_API_TOKEN"}
    assert {k for k in env if k.startswith("SCR_")} <= fields
    assert api["depends_on"] == {"vllm": {"condition": "service_healthy"}, "chroma": {"condition": "service_healthy"}}
    assert any(str(p).endswith(":8080") for p in api["ports"])
    for service in services.values():
        assert "test" in service["healthcheck"]
    assert {"hf-cache", "chroma-data", "scr-kb"} <= set(compose["volumes"])
