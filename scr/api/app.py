"""The FastAPI app: ``create_app(engine_or_settings)``; every route is a thin call into scr.engine.Engine.

State lives on ``app.state`` (no module globals): the engine, the micro-batching queue for questions, the
metrics and the API options. Blocking work (the knowledge base, the backend) runs in worker threads or in the
batcher's thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from scr.api.batching import QueryBatcher
from scr.api.errors import BadRequest, error_response, install_error_handlers
from scr.api.metrics import Metrics
from scr.api.schemas import (AddFactsResponse, BatchQueryRequest, BatchQueryResponse, ConflictList, ErrorResponse,
                             FactHistory, FactList, FactUsed, Health, HistoryEntry, HopUsed, MultiHopRequest,
                             MultiHopResponse, QueryRequest, QueryResponse)
from scr.config import Settings, validation_message
from scr.engine import Engine
from scr.kb import Fact, FactInput
from scr.pipeline import Answer, QuestionError, check_questions


@dataclass
class ApiOptions:
    api_token: str | None  # when set, write endpoints need "Authorization: Bearer <token>"
    model_name: str  # the model id the OpenAI-compatible endpoints serve
    max_batch_questions: int  # per POST /v1/query/batch
    max_facts_per_request: int  # per POST /v1/facts
    max_body_bytes: int


def create_app(engine_or_settings: Engine | Settings, *, api_token: str | None = None, model_name: str = "scr",
               max_batch: int = 32, max_wait_s: float = 0.005, max_batch_questions: int = 256,
               max_facts_per_request: int = 1000, max_body_bytes: int = 8 << 20, warm_up: bool = True) -> FastAPI:
    """Build the API over an Engine (the caller keeps ownership) or over Settings (the app owns its engine).

    ``api_token`` defaults to $SCR_API_TOKEN. ``warm_up`` opens the knowledge base and loads the embedder and
    the backend now, so a server fails at start rather than at its first request (a vLLM backend does not
    contact its server here: the API starts, and answers 503, while vLLM is down).
    """
    owns_engine = isinstance(engine_or_settings, Settings)
    engine = Engine(engine_or_settings) if owns_engine else engine_or_settings
    if warm_up:
        try:
            engine.kb(create=True)
            _ = engine.embedder, engine.backend
        except BaseException:
            if owns_engine:
                engine.close()
            raise

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.batcher.close()
        if owns_engine:
            engine.close()

    app = FastAPI(
        title="SCR: Selective Contextual Reasoning",
        description="Answers with updated facts from the knowledge base where one applies, as the model would "
                    "otherwise. Also an OpenAI-compatible chat endpoint.",
        version="0.1.0",
        lifespan=lifespan,
        responses={code: {"model": ErrorResponse} for code in (401, 404, 409, 422, 502, 503)},
    )
    app.state.engine = engine
    app.state.batcher = QueryBatcher(engine.ask_batch, max_batch=max_batch, max_wait_s=max_wait_s)
    app.state.metrics = Metrics()
    app.state.options = ApiOptions(
        api_token=api_token if api_token is not None else (os.environ.get("SCR_API_TOKEN") or None),
        model_name=model_name, max_batch_questions=max_batch_questions,
        max_facts_per_request=max_facts_per_request, max_body_bytes=max_body_bytes)

    install_error_handlers(app)
    _install_middleware(app)
    _add_query_routes(app)
    _add_fact_routes(app)
    _add_service_routes(app)
    from scr.api.openai_compat import router as openai_router

    app.include_router(openai_router)
    return app


# ----- shared helpers ---------------------------------------------------------------------------------------------
def _install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        options: ApiOptions = request.app.state.options
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > options.max_body_bytes:
            return error_response(413, f"the request body is {length} bytes; the limit is {options.max_body_bytes}")
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # Route templates, not raw paths, so fact ids do not make one series each.
        label = f"{request.method} {getattr(route, 'path', 'unmatched')}"
        request.app.state.metrics.record(label, response.status_code, time.perf_counter() - started)
        return response


_bearer = HTTPBearer(auto_error=False, description="SCR_API_TOKEN, required by write endpoints when set")


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    expected = request.app.state.options.api_token
    if not expected:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        reason = "a wrong API token" if given else "no API token"
        raise HTTPException(401, f"this endpoint needs the API token (got {reason}): send 'Authorization: Bearer "
                                 "<SCR_API_TOKEN>'", headers={"WWW-Authenticate": "Bearer"})


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


async def answer_questions(request: Request, questions: list[str]) -> list[tuple[Answer, float]]:
    """Answers through the micro-batching queue, each with the seconds it waited there."""
    batcher: QueryBatcher = request.app.state.batcher
    futures = [asyncio.wrap_future(batcher.submit(q)) for q in questions]
    return list(await asyncio.gather(*futures))


def query_response(answer: Answer, queued_s: float, total_s: float) -> QueryResponse:
    timings = {**answer.timings, "queue_s": queued_s, "request_s": total_s}
    return QueryResponse(question=answer.question, answer=answer.answer, in_scope=answer.in_scope,
                         facts=[FactUsed(id=f.id, text=f.text, score=f.score) for f in answer.facts],
                         scoped_on=answer.scoped_on, timings=timings)


# ----- questions ----------------------------------------------------------------------------------------------------
def _add_query_routes(app: FastAPI) -> None:
    @app.post("/v1/query", response_model=QueryResponse, tags=["questions"])
    async def query(body: QueryRequest, request: Request) -> QueryResponse:
        """Answer one question: with the applicable stored fact if there is one, else as the model would."""
        started = time.perf_counter()
        question = check_questions([body.question], engine_of(request).settings.max_question_chars)[0]
        ((answer, queued),) = await answer_questions(request, [question])
        return query_response(answer, queued, time.perf_counter() - started)

    @app.post("/v1/query/batch", response_model=BatchQueryResponse, tags=["questions"])
    async def query_batch(body: BatchQueryRequest, request: Request) -> BatchQueryResponse:
        """Answer many questions (in order); they share backend batches with concurrent requests."""
        started = time.perf_counter()
        limit = request.app.state.options.max_batch_questions
        if not body.questions:
            raise BadRequest("questions: give at least one question")
        if len(body.questions) > limit:
            raise BadRequest(f"questions: {len(body.questions)} questions; the limit per request is {limit}")
        try:
            questions = check_questions(body.questions, engine_of(request).settings.max_question_chars)
        except QuestionError as exc:
            raise QuestionError(f"questions: {exc}") from None
        results = await answer_questions(request, questions)
        total = time.perf_counter() - started
        return BatchQueryResponse(answers=[query_response(a, q, total) for a, q in results])


    @app.post("/v1/query/multihop", response_model=MultiHopResponse, tags=["questions"])
    async def query_multihop(body: MultiHopRequest, request: Request) -> MultiHopResponse:
        """Answer a question that chains several facts: walk the stored links from the subject it names, then
        sub-questions where no stored link goes on, then the whole question with every fact gathered."""
        started = time.perf_counter()
        engine = engine_of(request)
        question = check_questions([body.question], engine.settings.max_question_chars)[0]
        # Its own thread: the hops are several backend calls, which the backend serialises with the batcher's.
        result = await run_in_threadpool(engine.ask_multihop, question, body.max_hops)
        used = lambda f: FactUsed(id=f.id, text=f.text, score=f.score)  # noqa: E731
        return MultiHopResponse(
            question=result.question, answer=result.answer, in_scope=result.in_scope,
            facts=[used(f) for f in result.facts], stop=result.stop,
            hops=[HopUsed(question=h.question, answer=h.answer, fact=used(h.fact) if h.fact else None,
                          written_by=h.written_by) for h in result.hops],
            timings={**result.timings, "request_s": time.perf_counter() - started})


# ----- facts ----------------------------------------------------------------------------------------------------------
def _facts_body_doc() -> dict[str, Any]:
    """The OpenAPI description of POST /v1/facts, whose body is parsed by hand (see parse_facts)."""
    fact = FactInput.model_json_schema()
    many = {"type": "array", "items": fact}
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [fact, many, {"type": "object", "properties": {"facts": many}, "required": ["facts"]}]},
        "example": {"text": "The capital of Freedonia is Sylvania.", "subject": "Freedonia", "relation": "capital",
                    "object": "Sylvania"},
    }}}}


def parse_facts(payload: Any, limit: int) -> list[FactInput]:
    """One fact object, a list of them, or {"facts": [...]}; errors name the fact and the field."""
    if isinstance(payload, dict) and set(payload) == {"facts"}:
        items, prefix = payload["facts"], "facts"
        if not isinstance(items, list):
            raise BadRequest("facts: expected a list of fact objects")
    elif isinstance(payload, list):
        items, prefix = payload, "facts"
    elif isinstance(payload, dict):
        items, prefix = [payload], ""
    else:
        raise BadRequest('body: expected a fact object, a list of facts or {"facts": [...]}')
    if not items:
        raise BadRequest("facts: give at least one fact")
    if len(items) > limit:
        raise BadRequest(f"facts: {len(items)} facts; the limit per request is {limit}")
    facts = []
    for n, item in enumerate(items):
        try:
            fact = FactInput.model_validate(item)
        except ValidationError as exc:
            item = f"{prefix}[{n}]" if prefix else ""
            raise BadRequest(validation_message(exc, f"{item}." if item else "", item or "body")) from None
        facts.append(fact if fact.source else fact.model_copy(update={"source": "api"}))
    return facts


def _add_fact_routes(app: FastAPI) -> None:
    @app.post("/v1/facts", response_model=AddFactsResponse, status_code=201, tags=["facts"],
              dependencies=[Depends(require_token)], openapi_extra=_facts_body_doc())
    def add_facts(request: Request, response: Response, payload: Any = Body(None)):
        """Store one or many facts (all or nothing); a fact with ``supersedes`` (or the same subject and
        relation as an active fact) replaces it. Visible to the next query."""
        if payload is None:
            raise BadRequest("body: expected a fact object, a list of facts or {\"facts\": [...]}")
        facts = parse_facts(payload, request.app.state.options.max_facts_per_request)
        report = engine_of(request).add_facts(facts)
        if not report.added:
            response.status_code = 200  # nothing created: every text was a duplicate
        return AddFactsResponse(added=report.added, duplicates=report.duplicates,
                                superseded=[list(pair) for pair in report.superseded],
                                conflicts=[list(pair) for pair in report.conflicts])

    @app.get("/v1/facts", response_model=FactList, tags=["facts"])
    def list_facts(request: Request,
                   status: Literal["active", "superseded", "retracted", "all"] = "active",
                   limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> FactList:
        """Facts in insertion order (active ones unless ``status`` says otherwise)."""
        kb = engine_of(request).kb()
        wanted = None if status == "all" else status
        return FactList(facts=kb.list(status=wanted, limit=limit, offset=offset), total=kb.count(wanted))

    @app.get("/v1/conflicts", response_model=ConflictList, tags=["facts"])
    def list_conflicts(request: Request) -> ConflictList:
        """Pairs of active facts that may contradict each other, over the whole knowledge base (what adding facts
        reports for the new ones): retract the one that is out of date."""
        return ConflictList(conflicts=[list(pair) for pair in engine_of(request).conflicts()])

    @app.get("/v1/facts/{fact_id}", response_model=Fact, tags=["facts"])
    def get_fact(fact_id: str, request: Request) -> Fact:
        return engine_of(request).kb().get(fact_id)

    @app.get("/v1/facts/{fact_id}/history", response_model=FactHistory, tags=["facts"])
    def fact_history(fact_id: str, request: Request) -> FactHistory:
        """The supersession chain through the fact, oldest first, with every event."""
        chain = engine_of(request).kb().history(fact_id)
        return FactHistory(chain=[HistoryEntry(fact=f, events=events) for f, events in chain])

    @app.delete("/v1/facts/{fact_id}", response_model=Fact, tags=["facts"], dependencies=[Depends(require_token)])
    def retract_fact(fact_id: str, request: Request, reason: str | None = None) -> Fact:
        """Retract a fact: it leaves retrieval at once and stays in the history."""
        return engine_of(request).retract(fact_id, reason)

    @app.post("/v1/facts/{fact_id}/restore", response_model=Fact, tags=["facts"],
              dependencies=[Depends(require_token)])
    def restore_fact(fact_id: str, request: Request, reason: str | None = None) -> Fact:
        """Bring a retracted fact back into retrieval (409 if it is not retracted, or if an active fact now holds
        its subject and relation)."""
        return engine_of(request).restore(fact_id, reason)


# ----- service ----------------------------------------------------------------------------------------------------------
def _add_service_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["service"])
    def health(request: Request) -> Health:
        """Liveness plus the backend's reachability (a vLLM server that is down makes this "degraded")."""
        engine = engine_of(request)
        ping = getattr(engine.backend, "ping", None)
        problem = ping() if callable(ping) else None
        return Health(status="degraded" if problem else "ok", facts=engine.kb().count("active"),
                      backend=engine.backend.name, backend_error=problem)

    @app.get("/metrics", tags=["service"])
    def metrics(request: Request, format: Literal["json", "prometheus"] = "json"):
        """Request counts, error counts and latencies per route, and the query batches formed."""
        batcher: QueryBatcher = request.app.state.batcher
        batches = {"batches": batcher.batches, "questions": batcher.questions,
                   "mean_batch_size": batcher.questions / batcher.batches if batcher.batches else 0.0}
        if format == "prometheus":
            text = request.app.state.metrics.prometheus({"scr_query_batches_total": batcher.batches,
                                                         "scr_query_questions_total": batcher.questions})
            return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
        return {"requests": request.app.state.metrics.snapshot(), "query_batches": batches}
