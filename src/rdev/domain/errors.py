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


class ShuttingDown(Unavailable):
    code = "SHUTTING_DOWN"


class ExecFailed(RdevError):
    """The backend could not start or keep the process (not an exit code)."""

    code = "EXEC_FAILED"


_SPAWN_FAILURES = {
    "ENOENT": "executable not found",
    "EACCES": "executable not permitted",
    "ENOEXEC": "not an executable file or script",
    "ENAMETOOLONG": "executable name too long",
    "E2BIG": "arguments and environment too long for",
}


def spawn_failure(program: str, errno_name: str, reason: str = "") -> str:
    """How a program that could not start is described, the same on every backend: what went
    wrong, the program (shortened), and the errno name, e.g.
    `not an executable file or script: ./x (ENOEXEC)`."""
    what = _SPAWN_FAILURES.get(errno_name) or f"cannot run ({reason or errno_name})"
    shown = program if len(program) <= 80 else program[:77] + "..."
    return f"{what}: {shown} ({errno_name})"


class InvalidEventId(InvalidInput):
    code = "INVALID_EVENT_ID"
