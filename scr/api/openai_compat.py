"""OpenAI-compatible endpoints: POST /v1/chat/completions (streaming too) and GET /v1/models.

The last user message is answered through SCR (earlier turns are not used: SCR answers one question at a
time); the reply is an ordinary chat completion, so the stock ``openai`` client and LangChain's ChatOpenAI work
unchanged. The facts used travel in an extra top-level field ``scr`` (``completion.model_extra["scr"]`` with
the openai client; ``response_metadata`` does not carry it in LangChain). Sampling options (temperature,
max_tokens, ...) are accepted and ignored: SCR answers greedily with the server's own settings.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from scr.api.app import answer_questions, engine_of
from scr.api.errors import BadRequest, error_response
from scr.pipeline import Answer, check_questions

router = APIRouter(tags=["OpenAI-compatible"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, ...: accepted, not used

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="only one answer per request")


def last_user_text(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role != "user":
            continue
        if isinstance(message.content, list):  # content parts: keep the text ones
            return "".join(str(part.get("text", "")) for part in message.content if part.get("type") == "text")
        return message.content or ""
    raise BadRequest("messages: there is no message with role 'user' to answer")


def scr_extra(answer: Answer) -> dict[str, Any]:
    return {"question": answer.question, "in_scope": answer.in_scope,
            "facts": [{"id": f.id, "text": f.text, "score": f.score} for f in answer.facts]}


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    name = request.app.state.options.model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "scr"}]}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    served = request.app.state.options.model_name
    if body.model != served:
        return error_response(404, f"model: the model {body.model!r} does not exist; this server serves {served!r}")
    question = check_questions([last_user_text(body.messages)], engine_of(request).settings.max_question_chars)[0]
    ((answer, _queued),) = await answer_questions(request, [question])
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        return StreamingResponse(_stream(answer, completion_id, created, served), media_type="text/event-stream")
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": served,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                     "finish_reason": "stop", "logprobs": None}],
        "scr": scr_extra(answer),
    }


async def _stream(answer: Answer, completion_id: str, created: int, model: str) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format. The answer is complete before the first byte (so errors
    still get a proper status); it is sent word by word so streaming clients behave as usual."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\s*\S+", answer.answer):
        yield chunk({"content": piece})
    yield chunk({}, "stop", scr=scr_extra(answer))
    yield "data: [DONE]\n\n"
