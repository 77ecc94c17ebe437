"""Every error code a client can meet, with its HTTP status, derived from the one error table
(`errors.STATUS` over the classes of `domain/errors.py`, and `errors._HTTP_CODES`), plus the
few answers written below the error table (by the edge middleware, the connection guard,
readiness). OpenAPI lists each status's codes from here, and `docs/errors.md` is generated
from here (`python -m rdev.reference errors`); tests fail when a code has no advice below or
the doc differs from the table."""

from __future__ import annotations

from collections.abc import Iterator

from rdev.adapters.http import errors
from rdev.domain import errors as e

# Answers sent without passing the table: code → status.
DIRECT: dict[str, int] = {
    "VALIDATION_ERROR": 422,  # middleware: a URL that is not valid text
    "PAYLOAD_TOO_LARGE": 413,  # middleware: body over RDEV_MAX_BODY_BYTES
    "NOT_READY": 503,  # GET /ready
    "REQUEST_TIMEOUT": 408,  # connection guard: head or body too slow
    "HEADERS_TOO_LARGE": 431,  # connection guard
    "HTTP_ERROR": 400,  # any other HTTP-level refusal (errors._http_error)
}

# code → (what it means, what to do). Every code of `table()` has a row.
ADVICE: dict[str, tuple[str, str]] = {
    "INTERNAL_ERROR": ("An unexpected error; nothing about it is sent back.",
                       "Retry once; report the request id (meta.request_id) if it persists."),
    "NOT_FOUND": ("No such resource, or the key may not see it.",
                  "Check the id and that the key's `projects` include the project."),
    "UNAUTHORIZED": ("No API key, or one that is malformed, unknown, revoked or expired.",
                     "Send a valid key as `Authorization: Bearer <key>` or `X-API-Key`."),
    "FORBIDDEN": ("The key lacks the scope, the project or the client address for this.",
                  "Use a key with the scope (docs/security.md) or ask an admin for one."),
    "VALIDATION_ERROR": ("The request is malformed; `details.field` names the first field.",
                         "Fix the named field; see the operation's schema in /openapi.json."),
    "COMMAND_REJECTED": ("The command is refused by policy (an option, a path, a setting).",
                         "Change the command; `message` says what is refused and why."),
    "WEBHOOK_URL_REFUSED": ("The webhook URL is outside the SSRF policy: not https, malformed, "
                            "with credentials, unresolvable, or reaching a non-public address.",
                            "Use a public https URL; `details.reason` says why (for an address, "
                            "`details.class` its kind; docs/webhooks.md)."),
    "CONFLICT": ("The request conflicts with the resource's current state.",
                 "Read the resource again and retry if it still applies."),
    "ALREADY_EXISTS": ("Something of that name already exists.",
                       "Use another name, or update the existing one."),
    "IDEMPOTENCY_CONFLICT": ("This Idempotency-Key was used with another request body.",
                             "Use a new key for a new request; resend the same body to replay."),
    "PROJECT_UNAVAILABLE": ("The project exists but takes no commands now (not running, or "
                            "its settings are invalid).",
                            "Read GET /projects/{id}: `status_reason` says why; retry later."),
    "QUEUE_FULL": ("The project's queue holds as many commands as it may (RDEV_MAX_QUEUE).",
                   "Wait for commands to finish (Retry-After), or cancel some."),
    "RATE_LIMITED": ("Too many requests for this key, or too many failed authentications.",
                     "Wait the Retry-After seconds; slow down."),
    "BUDGET_EXCEEDED": ("A daily Claude budget, the key's or the project's, is spent; "
                        "`details` names it, its limit, today's spend and `resets_at`.",
                        "Wait for the reset at the next UTC midnight (Retry-After), or ask for "
                        "a larger budget (docs/claude-cost.md)."),
    "TOO_MANY_STREAMS": ("The key holds as many open event streams as it may.",
                         "Close streams you no longer read, then retry after Retry-After."),
    "UNAVAILABLE": ("A service rdev needs is unavailable.", "Retry after a while."),
    "OVERLOADED": ("This replica is at a capacity limit (streams, requests, connections).",
                   "Retry after Retry-After seconds, here or on another replica."),
    "BACKEND_UNAVAILABLE": ("The backend (Kubernetes API, or the pod) cannot be reached.",
                            "Retry later; operators: see docs/deploy.md troubleshooting."),
    "CLAUDE_UNAVAILABLE": ("The Claude CLI is not where the command would run (not installed, "
                           "or it does not answer `--version`); nothing was queued.",
                           "Install Claude Code there or set RDEV_CLAUDE_BIN (docs/claude.md); "
                           "`message` says how."),
    "DATABASE_UNAVAILABLE": ("The database cannot be reached; nothing was decided.",
                             "Retry after Retry-After seconds; the request is safe to repeat."),
    "SHUTTING_DOWN": ("This replica is shutting down.",
                      "Retry; the load balancer sends it to another replica."),
    "EXEC_FAILED": ("The backend could not start or keep the process (not an exit code).",
                    "Check the program exists in the project; `message` names the errno."),
    "INVALID_SETTINGS": ("The project's settings cannot be used; `details.problems` lists all.",
                         "Fix the project's settings file (or ConfigMap entry) as listed."),
    "INVALID_EVENT_ID": ("Last-Event-ID is malformed, of another stream, or ahead of its events.",
                         "Resume with an id this stream sent, or open it from the start."),
    "BAD_REQUEST": ("The HTTP request is malformed.", "Fix the request."),
    "METHOD_NOT_ALLOWED": ("The path does not take this method.", "See /openapi.json."),
    "NOT_ACCEPTABLE": ("The Accept header asks for a type rdev does not send.",
                       "Accept application/json (or text/event-stream for streams)."),
    "PAYLOAD_TOO_LARGE": ("The request body is larger than RDEV_MAX_BODY_BYTES.",
                          "Send less; `details.limit_bytes` is the limit."),
    "UNSUPPORTED_MEDIA_TYPE": ("The body is not JSON.", "Send `Content-Type: application/json`."),
    "NOT_READY": ("A readiness check failed; `details.checks` says which.",
                  "Operators: see the failing check; clients: use another replica."),
    "REQUEST_TIMEOUT": ("The request head or body did not arrive in time.",
                        "Send the whole request promptly; check the network."),
    "HEADERS_TOO_LARGE": ("The request head is too large.", "Send fewer or shorter headers."),
    "HTTP_ERROR": ("Another HTTP-level refusal.", "Read `message`."),
}  # fmt: skip


def _rdev_errors(cls: type[e.RdevError] = e.RdevError) -> Iterator[type[e.RdevError]]:
    if cls.__module__.startswith("rdev."):  # not a test's own subclass
        yield cls
    for sub in cls.__subclasses__():
        yield from _rdev_errors(sub)


def status_of(cls: type[e.RdevError]) -> int:
    return next((errors.STATUS[c] for c in cls.__mro__ if c in errors.STATUS), 500)


def table() -> dict[str, set[int]]:
    """Every code and the statuses it comes with."""
    found: dict[str, set[int]] = {}
    for cls in _rdev_errors():
        found.setdefault(cls.code, set()).add(status_of(cls))
    for status, code in errors._HTTP_CODES.items():
        found.setdefault(code, set()).add(status)
    for code, status in DIRECT.items():
        found.setdefault(code, set()).add(status)
    return found


def by_status() -> dict[int, list[str]]:
    """Each status and the codes that come with it, sorted."""
    out: dict[int, list[str]] = {}
    for code, statuses in table().items():
        for status in statuses:
            out.setdefault(status, []).append(code)
    return {s: sorted(c) for s, c in sorted(out.items())}
