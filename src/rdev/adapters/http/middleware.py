"""Pure ASGI middleware (no BaseHTTPMiddleware, so streams stay streams): request ids, the
client IP behind trusted proxies, the body-size limit, and valid text in the URL.

The server decodes a URL's percent-escapes leniently (invalid UTF-8 becomes U+FFFD, `%00` a
NUL), and some routes (see lean.py) read path and query without FastAPI's validation, so
the one check that path and query parameters are text (`domain.text`) is made here, for every
route, before any of them runs."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rdev.adapters.http.errors import envelope
from rdev.domain import text

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing lets it through to the error table."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _text(raw: bytes) -> str | None:
    """A percent-encoded URL part as text, or None when it is not valid UTF-8 without NUL."""
    if b"%" not in raw and raw.isascii() and b"\x00" not in raw:
        return raw.decode("ascii")  # the common case, without a copy per escape
    return text.decode(unquote_to_bytes(raw))


def _plain(raw: bytes) -> bool:
    """ASCII without a percent-escape or NUL: text, whatever the query's `+` stand for."""
    return raw.isascii() and b"%" not in raw and b"\x00" not in raw


def url_text_errors(scope: Scope) -> list[dict[str, str]]:
    """The path and query parameters that are not text, as 422 `fields` entries."""
    raw_path = scope.get("raw_path")  # the path as sent; servers without it sent valid text
    query: bytes = scope.get("query_string", b"")
    if raw_path is not None and _plain(raw_path) and _plain(query):
        return []  # the common case, decided in C: ASCII without escapes or NUL
    errors = []
    message = "must be percent-encoded UTF-8 without NUL"
    bad_path = text.problem(scope["path"]) if raw_path is None else _text(raw_path) is None
    if bad_path:
        errors.append({"field": "path", "message": message})
    for pair in query.split(b"&") if query else ():
        name, _, value = pair.replace(b"+", b" ").partition(b"=")
        decoded = _text(name)
        if decoded is None or _text(value) is None:
            errors.append({"field": decoded or "query", "message": message})
    return errors


class ClientIp:
    """The socket peer, or — only when the peer is a trusted proxy — the right-most address in
    X-Forwarded-For that is not itself a trusted proxy."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def _is_trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def resolve(self, scope: Scope) -> str | None:
        client = scope.get("client")
        peer: str | None = str(client[0]) if client else None
        if peer is None or not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = _header(scope, b"x-forwarded-for")
        if not forwarded:
            return peer
        hops = [h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return peer


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, trusted_proxies: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.client_ip = ClientIp(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = (_header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)  # this request's task
        state["client_ip"] = self.client_ip.resolve(scope)
        rid_header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # the key's RateLimit headers, when the request was authenticated (deps.py)
                message["headers"] = [
                    *message.get("headers", ()),
                    rid_header,
                    *state.get("ratelimit", ()),
                ]
            await send(message)

        invalid = url_text_errors(scope)
        if invalid:
            await _send_json(send_with_id, 422, envelope(
                "VALIDATION_ERROR", "invalid request: " + ", ".join(e["field"] for e in invalid),
                request_id, {"fields": invalid},
            ))  # fmt: skip
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(send_with_id, request_id)
            return
        try:
            await self.app(scope, self._limited(receive), send_with_id)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_id, request_id)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return wrapped

    async def _too_large(self, send: Any, request_id: str) -> None:
        await _send_json(send, 413, envelope(
            "PAYLOAD_TOO_LARGE", f"request body exceeds {self.max_body} bytes", request_id,
            {"limit_bytes": self.max_body},
        ), close=True)  # fmt: skip


async def _send_json(
    send: Any, status: int, content: dict[str, Any], *, close: bool = False
) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
