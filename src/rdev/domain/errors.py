"""The rdev error tree. Each error carries a stable code; HTTP status lives in the HTTP adapter."""

from __future__ import annotations

from collections.abc import Sequence
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
    """A command refused by policy. `argv` is what was refused, for the audit log only (never
    sent back, never an environment value)."""

    code = "COMMAND_REJECTED"

    def __init__(
        self, message: str = "", *, details: dict[str, Any] | None = None, argv: Sequence[str] = ()
    ) -> None:
        super().__init__(message, details=details)
        self.argv = tuple(argv)


class Conflict(RdevError):
    code = "CONFLICT"


class AlreadyExists(Conflict):
    code = "ALREADY_EXISTS"


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_CONFLICT"


class ProjectUnavailable(Conflict):
    """The project exists but takes no commands now: its settings are invalid, or its pod is not
    running. Says which status and why."""

    code = "PROJECT_UNAVAILABLE"


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


class InvalidSettings(InvalidInput):
    """A project's settings (`.settings/<project>.toml` locally, a ConfigMap entry) that cannot
    be used, with every problem found, so one edit can fix them all."""

    code = "INVALID_SETTINGS"

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems) or ("invalid settings",)
        super().__init__("; ".join(self.problems), details={"problems": list(self.problems)})


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


class WebhookUrlRefused(InvalidInput):
    """A webhook URL outside the SSRF policy (domain/ssrf.py): scheme, form or address."""

    code = "WEBHOOK_URL_REFUSED"


class ClaudeUnavailable(Unavailable):
    """The Claude CLI is not where a claude command would run (not installed, or it does not
    answer `--version`): said at submission, not as a failed command later."""

    code = "CLAUDE_UNAVAILABLE"


class BudgetExceeded(RateLimited):
    """A daily Claude budget (a key's or a project's) is spent; `retry_after` runs to the next
    UTC midnight, when it resets."""

    code = "BUDGET_EXCEEDED"
