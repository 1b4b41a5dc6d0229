"""Request and response bodies of the HTTP API (the OpenAI-compatible ones live in openai_compat.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from scr.kb.records import Fact, FactEvent


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="the question, in natural language")


class BatchQueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    questions: list[str] = Field(description="questions answered together (one backend batch)")


class FactUsed(BaseModel):
    id: str
    text: str
    score: float = Field(description="cosine similarity of the question to the fact's text")


class QueryResponse(BaseModel):
    question: str
    answer: str
    in_scope: bool = Field(description="whether a stored fact applied (else the model answered as before)")
    facts: list[FactUsed] = Field(description="the fact(s) the answer used; empty when out of scope")
    scoped_on: str | None = Field(None, description="the question's last sentence, when the fact was found through it "
                                                    "alone (the whole question found none)")
    timings: dict[str, float] = Field(description="seconds: retrieve, scope, answer (of the batch), queue, total")


class MultiHopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="a question that chains several facts (\"the capital of the country of ...\")")
    max_hops: int = Field(4, ge=1, le=8, description="links or sub-questions per question, at most")


class HopUsed(BaseModel):
    question: str = Field(description="the sub-question (for a walked link: the fact's key)")
    answer: str
    fact: FactUsed | None = Field(None, description="the stored fact of this hop, if one applied")
    written_by: str = Field(description="kb (a stored link, walked), llm or rules (who wrote the sub-question)")


class MultiHopResponse(BaseModel):
    question: str
    answer: str
    in_scope: bool = Field(description="whether any hop used a stored fact (else the model answered as before)")
    facts: list[FactUsed] = Field(description="the distinct stored facts used, in hop order")
    hops: list[HopUsed]
    stop: str = Field(description="why the hop loop ended: final, max_hops, rules_done or no_question")
    timings: dict[str, float] = Field(description="seconds: decompose, hops, answer, total, request")


class BatchQueryResponse(BaseModel):
    answers: list[QueryResponse]


class AddFactsResponse(BaseModel):
    added: list[Fact]
    duplicates: list[str] = Field(description="texts skipped because an identical active fact exists")
    superseded: list[list[str]] = Field(description="[old id, new id] pairs")
    conflicts: list[list[str]] = Field(
        [], description="[new id, active id] pairs that may contradict each other: same subject, another object, "
                        "and the scope check cannot tell their questions apart; nothing was retired for them")


class ConflictList(BaseModel):
    conflicts: list[list[str]] = Field(
        description="[fact id, fact id] pairs of active facts that may contradict each other (same subject, another "
                    "object, and the scope check cannot tell their questions apart), each pair once")


class FactList(BaseModel):
    facts: list[Fact]
    total: int = Field(description="facts with this status in the knowledge base")


class HistoryEntry(BaseModel):
    fact: Fact
    events: list[FactEvent]


class FactHistory(BaseModel):
    chain: list[HistoryEntry] = Field(description="the supersession chain through the fact, oldest first")


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when the LLM backend cannot be reached")
    facts: int
    backend: str
    backend_error: str | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    """Both shapes at once: FastAPI's ``detail`` and OpenAI's ``error`` object (what its clients read)."""

    detail: str
    error: ErrorBody
