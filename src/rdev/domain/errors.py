"""The rdev error tree. Each error carries a stable code; HTTP status lives in the HTTP adapter."""

from __future__ import annotations

from typing import Any


class RdevError(Exception):
    code = "INTERNAL_ERROR"

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ").lower()
        self.details = details or {}


class NotFound(RdevError):
    code = "NOT_FOUND"


class Unauthenticated(RdevError):
    code = "UNAUTHORIZED"


class Forbidden(RdevError):
    code = "FORBIDDEN"


class InvalidInput(RdevError):
    code = "VALIDATION_ERROR"


class CommandRejected(RdevError):
    code = "COMMAND_REJECTED"


class Conflict(RdevError):
    code = "CONFLICT"


class AlreadyExists(Conflict):
    code = "ALREADY_EXISTS"


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_CONFLICT"


class QueueFull(RdevError):
    code = "QUEUE_FULL"


class RateLimited(RdevError):
    code = "RATE_LIMITED"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float = 1.0,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or "too many requests", details=details or {})
        self.retry_after = retry_after


class TooManyStreams(RateLimited):
    """The key holds as many open event streams as it may."""

    code = "TOO_MANY_STREAMS"


class Unavailable(RdevError):
    code = "UNAVAILABLE"


class Overloaded(Unavailable):
    """This replica is at a capacity limit (open streams, requests in flight): try again soon,
    here or on another replica."""

    code = "OVERLOADED"

    def __init__(
        self, message: str, *, retry_after: float = 1.0, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class BackendUnavailable(Unavailable):
    code = "BACKEND_UNAVAILABLE"


class ShuttingDown(Unavailable):
    code = "SHUTTING_DOWN"


class ExecFailed(RdevError):
    """The backend could not start or keep the process (not an exit code)."""

    code = "EXEC_FAILED"


class InvalidEventId(InvalidInput):
    code = "INVALID_EVENT_ID"
