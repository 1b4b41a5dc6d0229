"""The vLLM backend: error paths against fake transports, then a real CPU vLLM server (one per module, SmolLM2)
compared with the in-process backend: generate, token_logprobs, choose, SCR end to end, and `scr serve`.

The real server comes from the venv that scripts/vllm_env.sh creates (cached in ~/.cache/scr-vllm-venv or
$SCR_VLLM_VENV). When it cannot be created these tests FAIL with the reason; SCR_SKIP_VLLM=1 skips them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from scr.config import Settings
from scr.engine import Engine
from scr.llm import make_backend
from scr.llm.base import BackendError, BackendUnavailable, as_chat
from scr.llm.vllm import VLLMBackend
from scr.llm.vllm_server import VLLMSetupError, ensure_venv, free_port, start_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "knowledge_base"
SERVED = "smollm2"
MAX_NEW_TOKENS = 16


# ----- error paths (fake transports: no server needed) --------------------------------------------------------------
def _completion(texts):
    return {"choices": [{"index": i, "text": t} for i, t in enumerate(texts)]}


def _models(*names):
    return {"object": "list", "data": [{"id": n} for n in names]}


def fake_backend(handler, **kwargs) -> tuple[VLLMBackend, list[float]]:
    sleeps: list[float] = []
    backend = VLLMBackend("http://fake:8000/v1", transport=httpx.MockTransport(handler), sleep=sleeps.append,
                          **kwargs)
    return backend, sleeps


def test_server_down_raises_backend_unavailable_after_retries_with_backoff():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sleeps: list[float] = []
    backend = VLLMBackend(url, retries=2, backoff_s=0.5, sleep=sleeps.append)
    with pytest.raises(BackendUnavailable) as caught:
        backend.generate(["hello"])
    message = str(caught.value)
    assert url in message and "3 attempts" in message and "Is it running?" in message
    assert sleeps == [0.5, 1.0]  # exponential backoff between the attempts
    backend.close()


def test_connection_errors_and_503_are_retried_then_succeed():
    calls = {"models": 0, "completions": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            calls["models"] += 1
            if calls["models"] <= 2:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, json=_models(SERVED))
        calls["completions"] += 1
        if calls["completions"] == 1:
            return httpx.Response(503, json={"error": {"message": "loading"}})
        body = json.loads(request.content)
        assert body["temperature"] == 0 and body["model"] == SERVED and body["prompt"] == ["a", "b"]
        return httpx.Response(200, json=_completion([" one ", "two"]))

    backend, sleeps = fake_backend(handler, backoff_s=0.25)
    assert backend.generate(["a", "b"], max_new_tokens=3) == ["one", "two"]
    assert calls == {"models": 3, "completions": 2}
    assert sleeps == [0.25, 0.5, 0.25]


def test_a_server_serving_another_model_is_a_clear_error():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models", "nothing may be generated with the wrong model"
        return httpx.Response(200, json=_models("Qwen/Qwen2.5-7B"))

    backend, _ = fake_backend(handler, model=SERVED)
    with pytest.raises(BackendError) as caught:
        backend.generate([as_chat("hi")])
    assert not isinstance(caught.value, BackendUnavailable)
    assert "Qwen/Qwen2.5-7B" in str(caught.value) and SERVED in str(caught.value) and "vllm_model" in str(caught.value)

    two, _ = fake_backend(lambda request: httpx.Response(200, json=_models("a", "b")))
    with pytest.raises(BackendError, match="choose one"):
        two.generate(["hi"])


def test_a_slow_server_times_out_without_retrying():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=_models(SERVED))
        calls.append(request.url.path)
        raise httpx.ReadTimeout("timed out", request=request)

    backend, sleeps = fake_backend(handler, timeout_s=2)
    with pytest.raises(BackendUnavailable, match="did not answer within 2 s"):
        backend.generate(["hi"])
    assert len(calls) == 1 and sleeps == []


def test_a_rejected_request_reports_the_servers_message():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=_models(SERVED))
        return httpx.Response(400, json={"error": {"message": "This model's maximum context length is 2048 tokens"}})

    backend, _ = fake_backend(handler)
    with pytest.raises(BackendError, match="maximum context length is 2048"):
        backend.generate(["x" * 10])


def test_settings_select_the_vllm_backend():
    settings = Settings(backend="vllm", vllm_url="http://gpu-host:8000/v1/", vllm_model="llama", vllm_api_key="k",
                        request_timeout_s=7)
    backend = make_backend(settings)
    assert isinstance(backend, VLLMBackend)
    assert (backend.base_url, backend.root_url, backend.requested_model, backend.timeout_s) == (
        "http://gpu-host:8000/v1", "http://gpu-host:8000", "llama", 7)
    assert backend._http.headers["authorization"] == "Bearer k"
    backend.close()


# ----- a real vLLM server ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_server(smollm2_dir, tmp_path_factory):
    """One CPU vLLM server with the embedded SmolLM2 for all tests of this module; its process group is killed
    at teardown."""
    if os.environ.get("SCR_SKIP_VLLM") == "1":
        pytest.skip("SCR_SKIP_VLLM=1: tests against a real vLLM server are switched off")
    try:
        python = ensure_venv()
        server = start_server(smollm2_dir, python, served_name=SERVED,
                              log_path=tmp_path_factory.mktemp("vllm") / "server.log")
    except VLLMSetupError as exc:
        pytest.fail(f"cannot run the real-vLLM tests: {exc}\n(SCR_SKIP_VLLM=1 skips them)", pytrace=False)
    yield server
    server.stop()
    assert server.process.poll() is not None


@pytest.fixture(scope="module")
def vllm_backend(vllm_server):
    backend = VLLMBackend(vllm_server.url, model=SERVED, timeout_s=120)
    yield backend
    backend.close()


PROMPTS = [
    as_chat("Who is the Pope?"),
    as_chat("What is the capital of France?"),
    as_chat("Fact: Friedrich Merz is the Chancellor of Germany since May 2025.\nQuestion: Who is the Chancellor "
            "of Germany?\nAnswer:"),
    as_chat("Translate to French: good morning", system="You are a translator."),
    "Once upon a time",
]


@pytest.mark.vllm
def test_greedy_generation_equals_the_in_process_backend(vllm_backend, smol_backend):
    assert vllm_backend.generate(PROMPTS, MAX_NEW_TOKENS) == smol_backend.generate(PROMPTS, MAX_NEW_TOKENS)


@pytest.mark.vllm
def test_token_logprobs_equal_the_in_process_backend(vllm_backend, smol_backend):
    continuations = [" Pope Francis", "Paris", "Friedrich Merz.", " Bonjour", ", there was"]
    remote = vllm_backend.token_logprobs(PROMPTS, continuations)
    local = smol_backend.token_logprobs(PROMPTS, continuations)
    for r, l in zip(remote, local):
        assert r.tokens == l.tokens
        assert r.greedy == l.greedy
        assert r.logprobs == pytest.approx(l.logprobs, abs=1e-3)


@pytest.mark.vllm
def test_constrained_choice_equals_the_in_process_backend(vllm_backend, smol_backend):
    from scr import prompts

    facts = ["Leo XIV is the Pope.", "Paris is the capital of France.", "The Helios-3 battery costs 4,500 euros."]
    chats, options = [], []
    chats.append(as_chat(prompts.choose_fact(facts, "Who won the world cup?", allow_none=True)))
    options.append(["1", "2", "3", "none"])
    # Options whose letters could also be spelt with other tokens ("y"+"e"+"s"): the trie of each option's own
    # tokens decides, in both backends.
    chats += ["Once upon a time", "Q: Is fire cold? A:"]
    options += [["yes", "no"], [" yes", " no", " none"]]
    assert vllm_backend.choose(chats, options) == smol_backend.choose(chats, options)


@pytest.mark.vllm
def test_the_real_server_serving_another_model_is_a_clear_error(vllm_server):
    backend = VLLMBackend(vllm_server.url, model="meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(BackendError, match=f"serves \\['{SERVED}'\\]"):
        backend.generate(["hi"])
    assert "serves" in backend.ping()
    assert VLLMBackend(vllm_server.url).ping() is None  # no name given: the only served model is used
    backend.close()


QUESTIONS = ["Who is the Pope?", "Who is the Chancellor of Germany?", "Where is the headquarters of Northwind Labs?",
             "What is the capital of France?", "Who wrote Romeo and Juliet?"]


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory, embedder) -> Path:
    kb_dir = tmp_path_factory.mktemp("vllm-kb") / "kb"
    engine = Engine(Settings(kb_dir=kb_dir), embedder=embedder)
    engine.ingest([SAMPLE / "facts.jsonl"])
    engine.ingest([SAMPLE / "updates.jsonl"])
    engine.close()
    return kb_dir


@pytest.fixture(scope="module")
def local_answers(sample_kb, smol_backend, embedder):
    engine = Engine(Settings(kb_dir=sample_kb, max_new_tokens=MAX_NEW_TOKENS), backend=smol_backend, embedder=embedder)
    answers = engine.ask_batch(QUESTIONS)
    engine.kb().close()
    return answers


@pytest.mark.vllm
def test_scr_through_vllm_equals_scr_in_process(vllm_server, vllm_backend, sample_kb, local_answers, embedder):
    settings = Settings(kb_dir=sample_kb, backend="vllm", vllm_url=vllm_server.url, vllm_model=SERVED,
                        max_new_tokens=MAX_NEW_TOKENS)
    engine = Engine(settings, backend=vllm_backend, embedder=embedder)
    remote = engine.ask_batch(QUESTIONS)
    engine.kb().close()
    assert [(a.answer, a.in_scope, [f.id for f in a.facts]) for a in remote] == \
        [(a.answer, a.in_scope, [f.id for f in a.facts]) for a in local_answers]
    assert [a.in_scope for a in remote] == [True, True, True, False, False]
    assert "Merz" in remote[1].answer and "Lisbon" in remote[2].answer  # updated answers


@pytest.mark.vllm
def test_scr_serve_with_the_vllm_backend_answers_like_the_in_process_backend(vllm_server, sample_kb, local_answers):
    from openai import OpenAI

    from test_api import start_scr_serve, stop

    process, url = start_scr_serve(sample_kb, "--backend", "vllm", "--vllm-url", vllm_server.url,
                                   "--max-new-tokens", str(MAX_NEW_TOKENS))
    try:
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert health["status"] == "ok" and health["backend"].startswith("vllm")
        body = httpx.post(f"{url}/v1/query", json={"question": QUESTIONS[2]}, timeout=120).json()
        assert (body["answer"], body["in_scope"]) == (local_answers[2].answer, True)
        openai = OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
        completion = openai.chat.completions.create(model="scr", messages=[{"role": "user", "content": QUESTIONS[1]}])
        assert completion.choices[0].message.content == local_answers[1].answer
        assert completion.model_extra["scr"]["facts"][0]["id"] == local_answers[1].facts[0].id
        batch = httpx.post(f"{url}/v1/query/batch", json={"questions": QUESTIONS}, timeout=300).json()["answers"]
        assert [a["answer"] for a in batch] == [a.answer for a in local_answers]
    finally:
        stop(process)


@pytest.mark.vllm
def test_a_given_answer_start_is_continued_alike(vllm_backend, smol_backend):
    chat = PROMPTS[2] + [{"role": "assistant", "content": "Olaf Scholz"}]
    remote = vllm_backend.generate([chat], MAX_NEW_TOKENS)
    assert remote == smol_backend.generate([chat], MAX_NEW_TOKENS)
    assert remote[0].startswith("Olaf Scholz") and len(remote[0]) > len("Olaf Scholz")
    continuation = [" is the Chancellor"]
    r, l = vllm_backend.token_logprobs([chat], continuation)[0], smol_backend.token_logprobs([chat], continuation)[0]
    assert r.tokens == l.tokens and r.logprobs == pytest.approx(l.logprobs, abs=1e-3)
