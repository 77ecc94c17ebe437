"""The SDK's errors: one class per family of the server's stable error codes, built from the
JSON envelope `{"error": {"code", "message", "details"}, "meta": {"request_id"}}`.

A code the SDK does not know yet falls back on the HTTP status, so a newer server's codes still
land in the right family."""

from __future__ import annotations

import json
from typing import Any

import httpx


class RdevError(Exception):
    """An error answer from rdev, or a failure to reach it (`status` 0, `code` CONNECTION)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 0,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}
        self.request_id = request_id
        self.retry_after = retry_after


class ConnectionFailed(RdevError):
    """The server could not be reached (or stopped answering) and retries ran out."""


class AuthError(RdevError):
    """401: no key, an unknown, revoked or expired key."""


class Forbidden(RdevError):
    """403: the key lacks a scope or the project, or the address is not allowed."""


class NotFound(RdevError):
    pass


class ValidationError(RdevError):
    """400/422: the request was refused as it is (a bad field, a refused command, a bad
    Last-Event-ID)."""


Invalid = ValidationError


class Conflict(RdevError):
    """409: already exists, an idempotency key reused with another body, a project that is not
    available."""


class RateLimited(RdevError):
    """429 RATE_LIMITED / TOO_MANY_STREAMS; `retry_after` in seconds."""


class QueueFull(RdevError):
    """429 QUEUE_FULL: the project's queue is full; `retry_after` in seconds."""


class Unavailable(RdevError):
    """503 (shutting down, overloaded, database or backend away) and 502 EXEC_FAILED;
    `retry_after` in seconds when the server gave one."""


class ServerError(RdevError):
    """500 INTERNAL_ERROR or an answer that is not rdev's envelope."""


_BY_CODE: dict[str, type[RdevError]] = {
    "UNAUTHORIZED": AuthError,
    "FORBIDDEN": Forbidden,
    "NOT_FOUND": NotFound,
    "VALIDATION_ERROR": ValidationError,
    "INVALID_SETTINGS": ValidationError,
    "INVALID_EVENT_ID": ValidationError,
    "COMMAND_REJECTED": ValidationError,
    "BAD_REQUEST": ValidationError,
    "PAYLOAD_TOO_LARGE": ValidationError,
    "UNSUPPORTED_MEDIA_TYPE": ValidationError,
    "CONFLICT": Conflict,
    "ALREADY_EXISTS": Conflict,
    "IDEMPOTENCY_CONFLICT": Conflict,
    "PROJECT_UNAVAILABLE": Conflict,
    "QUEUE_FULL": QueueFull,
    "RATE_LIMITED": RateLimited,
    "TOO_MANY_STREAMS": RateLimited,
    "UNAVAILABLE": Unavailable,
    "OVERLOADED": Unavailable,
    "BACKEND_UNAVAILABLE": Unavailable,
    "DATABASE_UNAVAILABLE": Unavailable,
    "SHUTTING_DOWN": Unavailable,
    "NOT_READY": Unavailable,
    "EXEC_FAILED": Unavailable,
    "INTERNAL_ERROR": ServerError,
}

_BY_STATUS: dict[int, type[RdevError]] = {
    400: ValidationError,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: ValidationError,
    415: ValidationError,
    422: ValidationError,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date (rdev sends seconds)


def error_for(response: httpx.Response, body: bytes) -> RdevError:
    """The exception for an error answer whose body has been read."""
    code, message, request_id = "", "", response.headers.get("x-request-id")
    details: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        err = parsed["error"]
        code, message = str(err["code"]), str(err.get("message", ""))
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        request_id = (parsed.get("meta") or {}).get("request_id") or request_id
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace").strip() or response.reason_phrase
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 or not code else RdevError
    return cls(
        code or f"HTTP_{response.status_code}",
        message,
        status=response.status_code,
        details=details,
        request_id=request_id,
        retry_after=_retry_after(response),
    )
