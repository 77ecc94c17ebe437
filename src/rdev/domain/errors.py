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

    def __init__(self, message: str = "", *, retry_after: float = 1.0) -> None:
        super().__init__(message or "too many requests", details={})
        self.retry_after = retry_after


class Unavailable(RdevError):
    code = "UNAVAILABLE"


class BackendUnavailable(Unavailable):
    code = "BACKEND_UNAVAILABLE"


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached (connection refused, lost or timed out). Transient: the
    operation may be retried, and nothing about the request was decided."""

    code = "DATABASE_UNAVAILABLE"
    retry_after = 5.0  # seconds a client is asked to wait before trying again


class ShuttingDown(Unavailable):
    code = "SHUTTING_DOWN"


class ExecFailed(RdevError):
    """The backend could not start or keep the process (not an exit code)."""

    code = "EXEC_FAILED"


class InvalidEventId(InvalidInput):
    code = "INVALID_EVENT_ID"
