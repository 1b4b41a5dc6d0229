"""vLLM backend: the LLMBackend protocol over a vLLM server's OpenAI-compatible HTTP API.

It reproduces the in-process backend (scr/llm/hf.py) request for request, so greedy answers are equal:
  * raw-text prompts go to /v1/completions (vLLM tokenises them WITH special tokens, as hf.py does);
  * chat prompts go to /v1/chat/completions (vLLM applies the model's chat template with the generation
    prompt and no extra special tokens, as hf.py does);
  * token_logprobs tokenises prompt and continuation separately through /tokenize, appends the ids and reads
    vLLM's prompt log-probabilities (their rank gives the greedy flag);
  * choose uses vLLM's structured output ``{"choice": options}``: greedy decoding that may only write one of
    the options, which is what hf.py's trie-constrained decoding does.

Batches: completion prompts travel as one list per request (vLLM batches them); chat requests, which take one
conversation each, are sent concurrently from a thread pool and vLLM batches them on its side.
Failures: connection errors and 502/503/504 are retried with exponential backoff, then raise
BackendUnavailable (the API answers 503); a server that serves another model raises BackendError at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import httpx

from scr.llm.base import BackendError, BackendUnavailable, Prompt, TokenScores, answer_prefix

# Statuses that mean "the server is there but cannot take the request right now": worth retrying.
_RETRY_STATUSES = {502, 503, 504}
# vLLM answers at most this many completion prompts per request comfortably; larger batches are split.
_PROMPTS_PER_REQUEST = 64


class VLLMBackend:
    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: str | None = None,
                 api_key: str | None = None, timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5,
                 max_concurrency: int = 16, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        """``model`` is the name the server serves (None: the server's only model, looked up on first use).

        ``transport`` and ``sleep`` exist for tests of the error paths (fake transports, no real waiting).
        """
        self.base_url = base_url.rstrip("/")
        # /tokenize and /health live at the server root, beside /v1.
        self.root_url = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self.requested_model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="scr-vllm")
        self._model: str | None = None
        self._model_lock = threading.Lock()
        self._option_cache: dict[str, list[int]] = {}
        self._end_cache: set[int] | None = None

    @classmethod
    def from_settings(cls, settings) -> "VLLMBackend":
        return cls(settings.vllm_url, model=settings.vllm_model, api_key=settings.vllm_api_key,
                   timeout_s=settings.request_timeout_s)

    # ----- HTTP with retries -----------------------------------------------------------------------------
    def _request(self, method: str, url: str, json: Any = None) -> Any:
        """One JSON request; retries connection failures and 502/503/504 with exponential backoff."""
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, url, json=json)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    last_problem = f"connection timed out ({exc})"
                    continue
                # The server took the request but did not answer in time; repeating it would only add load.
                raise BackendUnavailable(
                    f"the vLLM server at {self.base_url} did not answer within {self.timeout_s:g} s "
                    "(raise request_timeout_s / SCR_REQUEST_TIMEOUT_S if the model is slow)") from None
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRY_STATUSES:
                last_problem = f"HTTP {response.status_code}: {_error_message(response)}"
                continue
            return self._json(response, url)
        raise BackendUnavailable(
            f"cannot reach the vLLM server at {self.base_url} ({last_problem}; {self.retries + 1} attempts). "
            "Is it running? Start one with `python scripts/vllm_serve.py`, or point --vllm-url / SCR_VLLM_URL "
            "at it.")

    def _json(self, response: httpx.Response, url: str) -> Any:
        if response.status_code == 404 and "model" in _error_message(response).lower():
            self._forget_server()
            raise BackendError(f"the vLLM server at {self.base_url} does not serve model {self._model_name_hint()}:"
                               f" {_error_message(response)}")
        if response.status_code >= 400:
            raise BackendError(f"the vLLM server at {self.base_url} rejected the request to {url} "
                               f"(HTTP {response.status_code}): {_error_message(response)}")
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{url} did not answer JSON: is {self.base_url} a vLLM OpenAI-compatible server?") \
                from None

    def _forget_server(self) -> None:
        """Look model, end token and option tokens up again (the server may now serve another model)."""
        self._model, self._end_cache = None, None
        self._option_cache.clear()

    def _model_name_hint(self) -> str:
        return repr(self.requested_model) if self.requested_model else "the requested model"

    # ----- model check -------------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The served model's name, checked against the server once (a clear error if it serves another)."""
        with self._model_lock:
            if self._model is None:
                self._model = self._resolve_model()
            return self._model

    def _resolve_model(self) -> str:
        return self._pick_model(self._served_models(self._request("GET", f"{self.base_url}/models")))

    def _served_models(self, data: Any) -> list[str]:
        try:
            return [m["id"] for m in data["data"]]
        except (KeyError, TypeError):
            raise BackendError(f"{self.base_url}/models is not an OpenAI model list: is it a vLLM server?") from None

    def _pick_model(self, served: list[str]) -> str:
        if self.requested_model:
            if self.requested_model not in served:
                raise BackendError(
                    f"the vLLM server at {self.base_url} serves {served}, not {self.requested_model!r}: set "
                    "vllm_model (--vllm-model / SCR_VLLM_MODEL) to the served name, or start vLLM with that model")
            return self.requested_model
        if len(served) != 1:
            raise BackendError(f"the vLLM server at {self.base_url} serves {served}: choose one with vllm_model "
                               "(--vllm-model / SCR_VLLM_MODEL)")
        return served[0]

    @property
    def name(self) -> str:
        return f"vllm:{self.requested_model or self.base_url}"

    def ping(self) -> str | None:
        """None when the server answers /health and serves the expected model, else what is wrong.

        One quick try, no retries (health checks call it often)."""
        timeout = min(self.timeout_s, 5.0)
        try:
            health = self._http.get(f"{self.root_url}/health", timeout=timeout)
            if health.status_code != 200:
                return f"the vLLM server at {self.root_url} answered /health with HTTP {health.status_code}"
            served = self._served_models(self._json(self._http.get(f"{self.base_url}/models", timeout=timeout),
                                                    f"{self.base_url}/models"))
            expected = self._pick_model(served)
        except httpx.HTTPError as exc:
            return f"cannot reach the vLLM server at {self.root_url} ({type(exc).__name__})"
        except BackendError as exc:
            self._forget_server()
            return str(exc)
        if self._model not in (None, expected):
            self._forget_server()  # restarted with another model that still fits: look everything up again
        return None

    # ----- the protocol --------------------------------------------------------------------------------------
    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """fn over items concurrently, results in order (the first error is raised)."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def _sampling(self, max_tokens: int) -> dict[str, Any]:
        # Greedy, and nothing from the model's generation_config may turn sampling back on.
        return {"model": self.model, "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "top_k": -1,
                "n": 1}

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 48) -> list[str]:
        if not prompts:
            return []
        _ = self.model  # fail once here (server down, wrong model) rather than in every concurrent request
        out: list[str | None] = [None] * len(prompts)
        raw = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        chunks = [raw[s : s + _PROMPTS_PER_REQUEST] for s in range(0, len(raw), _PROMPTS_PER_REQUEST)]

        def complete(chunk: list[int]) -> list[str]:
            body = {**self._sampling(max_new_tokens), "prompt": [prompts[i] for i in chunk]}
            return _choice_texts(self._request("POST", f"{self.base_url}/completions", body), len(chunk))

        def chat(i: int) -> str:
            body = {**self._sampling(max_new_tokens), "messages": list(prompts[i])}
            prefix = answer_prefix(prompts[i])
            if prefix:  # vLLM continues the final assistant message and returns only what it wrote
                body.update(add_generation_prompt=False, continue_final_message=True)
            return prefix + _message_text(self._request("POST", f"{self.base_url}/chat/completions", body))

        tasks: list[tuple[str, Any]] = [("complete", c) for c in chunks] + [("chat", i) for i in chats]
        results = self._map(lambda t: complete(t[1]) if t[0] == "complete" else chat(t[1]), tasks)
        for (kind, item), result in zip(tasks, results):
            if kind == "complete":
                for i, text in zip(item, result):
                    out[i] = text.strip()
            else:
                out[item] = result.strip()
        return [text or "" for text in out]

    def _tokenize(self, prompt: Prompt | None, text: str | None = None) -> list[int]:
        """Token ids exactly as hf.py's _encode makes them (or a bare continuation without special tokens)."""
        if text is not None:
            body: dict[str, Any] = {"model": self.model, "prompt": text, "add_special_tokens": False}
        elif isinstance(prompt, str):
            body = {"model": self.model, "prompt": prompt, "add_special_tokens": True}
        else:
            body = {"model": self.model, "messages": list(prompt or []), "add_generation_prompt": True,
                    "add_special_tokens": False}
            if answer_prefix(prompt):
                body.update(add_generation_prompt=False, continue_final_message=True)
        data = self._request("POST", f"{self.root_url}/tokenize", body)
        try:
            return [int(t) for t in data["tokens"]]
        except (KeyError, TypeError, ValueError):
            raise BackendError(f"{self.root_url}/tokenize answered without token ids") from None

    def token_logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[TokenScores]:
        if len(prompts) != len(continuations):
            raise ValueError("prompts and continuations differ in length")
        if not prompts:
            return []
        _ = self.model
        prompt_ids = self._map(lambda p: self._tokenize(p), list(prompts))
        cont_ids = self._map(lambda c: self._tokenize(None, c), list(continuations))
        rows = [p + c for p, c in zip(prompt_ids, cont_ids)]
        order = list(range(len(rows)))
        chunks = [order[s : s + _PROMPTS_PER_REQUEST] for s in range(0, len(order), _PROMPTS_PER_REQUEST)]

        def score(chunk: list[int]) -> list[Any]:
            # max_tokens must be >= 1; the one generated token is ignored. prompt_logprobs=0 returns the
            # log-probability and rank of each prompt token itself.
            body = {**self._sampling(1), "prompt": [rows[i] for i in chunk], "prompt_logprobs": 0}
            choices = _choices(self._request("POST", f"{self.base_url}/completions", body), len(chunk))
            return [c.get("prompt_logprobs") for c in choices]

        out: list[TokenScores] = [TokenScores([], [], []) for _ in rows]
        for chunk, scored in zip(chunks, self._map(score, chunks)):
            for i, positions in zip(chunk, scored):
                out[i] = _continuation_scores(positions, len(prompt_ids[i]), cont_ids[i])
        return out

    def choose(self, prompts: Sequence[Prompt], options: Sequence[Sequence[str]]) -> list[int]:
        if len(prompts) != len(options):
            raise ValueError("prompts and options differ in length")
        for opts in options:
            if not opts:
                raise ValueError("choose() needs at least one option")
        if not prompts:
            return []
        end_ids = self._end_ids()

        def pick(i: int) -> int:
            opts = list(options[i])
            # Each token carries at least one byte, so this bounds the option length; +1 for the end token.
            body = {**self._sampling(max(len(o.encode()) for o in opts) + 1),
                    "structured_outputs": {"choice": opts}}
            if end_ids:
                # The grammar alone would accept ANY spelling of an option ("y"+"e"+"s" for "yes"); hf.py walks
                # a trie of each option's own tokenisation. Allowing only those tokens (plus the end token the
                # grammar needs to stop) makes the two decode the same way.
                option_tokens = {t for o in opts for t in self._option_ids(o)}
                body["allowed_token_ids"] = sorted(option_tokens | end_ids)
            if isinstance(prompts[i], str):
                body["prompt"] = prompts[i]
                text = _choice_texts(self._request("POST", f"{self.base_url}/completions", body), 1)[0]
            else:
                body["messages"] = list(prompts[i])
                text = _message_text(self._request("POST", f"{self.base_url}/chat/completions", body))
            for candidate in (text, text.strip()):
                if candidate in opts:
                    return opts.index(candidate)
            raise BackendError(f"the vLLM server wrote {text!r}, none of the options {opts}: does it support "
                               "structured outputs (vLLM >= 0.10)?")

        return self._map(pick, list(range(len(prompts))))

    def _option_ids(self, option: str) -> list[int]:
        if option not in self._option_cache:
            self._option_cache[option] = self._tokenize(None, option)
        return self._option_cache[option]

    def _end_ids(self) -> set[int]:
        """The token the server ends a constrained answer with (looked up once by writing a one-word choice).

        The server knows the model's end-of-sequence ids; we do not (no local tokenizer). Empty when the server
        does not report token ids: choose() then relies on the grammar alone.
        """
        with self._model_lock:
            if self._end_cache is not None:
                return self._end_cache
        body = {**self._sampling(8), "prompt": "Answer:", "structured_outputs": {"choice": ["yes"]},
                "return_token_ids": True}
        choice = _choices(self._request("POST", f"{self.base_url}/completions", body), 1)[0]
        ids = choice.get("token_ids") or []
        found = {int(ids[-1])} if choice.get("finish_reason") == "stop" and ids else set()
        with self._model_lock:
            self._end_cache = found
        return found

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


# ----- response parsing ------------------------------------------------------------------------------------
def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data))
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(data)[:300]


def _choices(data: Any, expected: int) -> list[dict]:
    try:
        choices = sorted(data["choices"], key=lambda c: c["index"])
    except (KeyError, TypeError):
        raise BackendError("the vLLM server answered without choices") from None
    if len(choices) != expected:
        raise BackendError(f"the vLLM server answered {len(choices)} choices for {expected} prompts")
    return choices


def _choice_texts(data: Any, expected: int) -> list[str]:
    return [c.get("text") or "" for c in _choices(data, expected)]


def _message_text(data: Any) -> str:
    choice = _choices(data, 1)[0]
    return (choice.get("message") or {}).get("content") or ""


def _continuation_scores(positions: list | None, prompt_len: int, cont: list[int]) -> TokenScores:
    """Read the continuation's entries out of vLLM's per-position prompt log-probabilities."""
    if not cont:
        return TokenScores([], [], [])
    if not positions or len(positions) != prompt_len + len(cont):
        raise BackendError("the vLLM server returned no prompt log-probabilities (prompt_logprobs unsupported?)")
    tokens, logprobs, greedy = [], [], []
    for offset, token_id in enumerate(cont):
        entry = (positions[prompt_len + offset] or {}).get(str(token_id))
        if entry is None:
            raise BackendError(f"the vLLM server omitted the log-probability of token {token_id}")
        tokens.append(entry.get("decoded_token") or "")
        logprobs.append(float(entry["logprob"]))
        greedy.append(int(entry.get("rank", 0)) == 1)
    return TokenScores(tokens=tokens, logprobs=logprobs, greedy=greedy)
