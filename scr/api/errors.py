"""Library errors -> HTTP statuses, and one error body shape for every failure.

The body carries FastAPI's ``detail`` and OpenAI's ``error`` object, so both curl users and OpenAI clients
see the message. Validation errors name the offending field ("question: Field required").
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scr.config import SettingsError
from scr.kb import FactNotFound, IngestError, KBError
from scr.llm.base import BackendError, BackendUnavailable
from scr.pipeline import QuestionError

log = logging.getLogger("scr.api")


class BadRequest(ValueError):
    """A request the API itself rejects (shape or limits); the message names the field."""


# Most specific first: FactNotFound is a KBError, BackendUnavailable a BackendError.
_STATUS: list[tuple[type[BaseException], int, str]] = [
    (FactNotFound, 404, "NotFoundError"),
    (KBError, 409, "ConflictError"),
    (BadRequest, 422, "InvalidRequestError"),
    (QuestionError, 422, "InvalidRequestError"),
    (IngestError, 422, "InvalidRequestError"),
    (SettingsError, 422, "InvalidRequestError"),
    (BackendUnavailable, 503, "ServiceUnavailableError"),
    (BackendError, 502, "BadGatewayError"),
]

_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 405: "MethodNotAllowed",
          409: "ConflictError", 413: "PayloadTooLargeError", 422: "InvalidRequestError", 503: "ServiceUnavailableError"}


def error_response(status: int, message: str, kind: str | None = None, headers: dict | None = None) -> JSONResponse:
    kind = kind or _TYPES.get(status, "APIError")
    return JSONResponse({"detail": message, "error": {"message": message, "type": kind, "code": status}},
                        status_code=status, headers=headers)


def status_of(exc: BaseException) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "InternalServerError"


def describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    """(status, message): 400 for a body that is not JSON, else 422 naming each bad field."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            return 400, f"the request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
        if error.get("type") == "missing" and not loc:
            return 422, "the request needs a JSON body"
        where = ".".join(loc) or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return 422, "; ".join(problems) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        status, message = describe_validation(exc)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def _library(_request: Request, exc: Exception):
        status, kind = status_of(exc)
        if status == 500:
            log.exception("unexpected error", exc_info=exc)
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}", kind)
        return error_response(status, str(exc), kind)

    for cls, _status, _kind in _STATUS:
        app.add_exception_handler(cls, _library)
    app.add_exception_handler(Exception, _library)
