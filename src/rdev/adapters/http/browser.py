"""What a web page needs at the edge (docs/browser.md): CORS for the origins in
RDEV_CORS_ORIGINS, and the rule that a stream token (`?token=`) is a credential on one route only.

CORS is Starlette's middleware, outermost, so every answer carries its headers, errors
included: a page can read a 401 or a 404. Two choices on top of it:
- A request without an `Origin` header (every non-browser client) skips it, after one scan of
  the raw headers: the hot path pays nothing else.
- `Access-Control-Allow-Credentials` is never sent. rdev uses no cookies (keys travel in
  headers, stream tokens in the URL), so there are no ambient credentials for another site to
  borrow. Hence `*` is allowed and means any origin, answered with the literal `*` (never an
  echo of the caller's Origin); any other entry must be an exact origin.
- A refused preflight is the JSON error envelope (400 CORS_REFUSED), not Starlette's plain text.

uvicorn's access log (on at RDEV_LOG_LEVEL=debug) prints each URL with its query string: the
`TokenRedactor` filter on that logger replaces a token's value before anything is written.

The token guard answers 401 to any request that carries a `token` query parameter anywhere
but `GET /commands/{id}/events`: a token is never accepted, nor ignored, elsewhere."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rdev.adapters.http.errors import envelope

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Authorization", "Content-Type", "Last-Event-ID", "X-API-Key", "X-Request-ID",
    "Idempotency-Key",
)  # fmt: skip
EXPOSED_HEADERS = ("X-Request-ID", "Location", "Retry-After", "RateLimit", "RateLimit-Policy")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may cache a preflight answer

_STREAM_PATH = re.compile(r"/commands/[^/]+/events")


def _json(
    status: int, code: str, message: str, headers: dict[str, str], request_id: str | None = None
) -> Response:
    body = json.dumps(envelope(code, message, request_id or uuid.uuid4().hex)).encode()
    return Response(body, status, headers=headers, media_type="application/json")


class Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=tuple(origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=False,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )
        self.inner = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(k == b"origin" for k, _ in scope["headers"]):
            await self.inner(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code == 200:
            return answer
        refused = bytes(answer.body).decode().removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in answer.headers.items() if k.startswith(("access-", "vary"))}
        return _json(400, "CORS_REFUSED", f"CORS preflight refused: {refused}", headers)


class TokenGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        if (
            scope["type"] == "http"
            and (b"token" in query or b"%" in query)  # the common case ends here, in C
            and _has_token(query)
            and not (scope["method"] == "GET" and _STREAM_PATH.fullmatch(scope["path"]))
        ):
            message = "a stream token is accepted only by GET /commands/{id}/events"
            rid = scope.get("state", {}).get("request_id")
            await _json(401, "UNAUTHORIZED", message, {}, rid)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_token(query: bytes) -> bool:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return any(name == "token" for name, _ in pairs)


_TOKEN_IN_URL = re.compile(r"((?:^|[?&])token=)[^&\s\"]*")


class TokenRedactor(logging.Filter):
    """Replaces the value of `token=` in a log record's arguments (the URL uvicorn logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def redact_access_log() -> None:
    """Install the redactor on uvicorn's access logger (once)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, TokenRedactor) for f in logger.filters):
        logger.addFilter(TokenRedactor())
