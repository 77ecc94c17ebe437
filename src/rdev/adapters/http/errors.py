"""The one error table: domain errors to HTTP status and the JSON envelope. Walks the MRO, so a
new error subclass inherits its parent's status. No stack trace ever reaches a client.

Every refusal passes here, so this is also where 403s and refused commands are audited
(refusals.py)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rdev.adapters.http.jsonresponse import JSONResponse
from rdev.domain import errors as e

log = structlog.get_logger(__name__)

STATUS: dict[type[e.RdevError], int] = {
    e.RdevError: 500,
    e.NotFound: 404,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.InvalidInput: 422,
    e.InvalidEventId: 400,
    e.CommandRejected: 400,
    e.Conflict: 409,
    e.ProjectUnavailable: 409,
    e.QueueFull: 429,
    e.RateLimited: 429,
    e.Unavailable: 503,
    e.DatabaseUnavailable: 503,
    e.ExecFailed: 502,
    e.WebhookUrlRefused: 422,
    e.ClaudeUnavailable: 503,
    e.BudgetExceeded: 429,
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def status_for(exc: e.RdevError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def envelope(
    code: str, message: str, request_id: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "details": details or {}},
        "meta": {"request_id": request_id},
    }


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        envelope(code, message, request_id, details), status_code=status, headers=headers
    )


async def _rdev_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.RdevError)
    status = status_for(exc)
    headers = None
    if isinstance(exc, e.RateLimited | e.QueueFull | e.Overloaded | e.DatabaseUnavailable):
        retry = getattr(exc, "retry_after", 1.0)
        headers = {"Retry-After": str(max(1, round(retry)))}
        if isinstance(exc, e.TooManyStreams | e.Overloaded):
            headers["Connection"] = "close"  # the connection is part of what is over the limit
    if status >= 500 and not isinstance(exc, e.Overloaded):  # a flood is not a log flood
        log.warning("request.error", code=exc.code, message=exc.message)
    if isinstance(exc, e.Forbidden | e.CommandRejected):
        await request.app.state.services.refusals.record(request, exc)
    return error_response(
        status, exc.code, exc.message, request_id_of(request), exc.details, headers
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1] if loc else "body")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"field": _field_name(tuple(err.get("loc", ()))), "message": err.get("msg", "invalid")}
        for err in exc.errors()
    ]
    names = ", ".join(sorted({f["field"] for f in fields}))
    return error_response(
        422,
        "VALIDATION_ERROR",
        f"invalid request: {names}",
        request_id_of(request),
        # `field` names the first problem, as the policy's own 422s do; `fields` lists them all
        {"field": fields[0]["field"] if fields else None, "fields": fields},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else code.lower()
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, request_id_of(request), headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("request.unhandled", error_type=type(exc).__name__, exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "internal error", request_id_of(request))


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.RdevError, _rdev_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
