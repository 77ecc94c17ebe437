"""What one replica serves at once: open event streams (per key and in all) and requests in
flight. Past a limit a request is refused at once with a stable code — 429 TOO_MANY_STREAMS
for a key's streams, 503 OVERLOADED with Retry-After for the replica — and the connection is
closed, instead of everyone slowing down together until health checks fail.

Health, readiness and metrics are never counted or refused (a probe must see a busy replica
as alive), and event streams are counted by their own limits, not as requests in flight: they
are long by design. Counts are per replica, in memory; nothing here waits or does I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from rdev.adapters.http.errors import envelope
from rdev.domain.errors import Overloaded, TooManyStreams

STREAM_RETRY_SECONDS = 5.0
_EXEMPT = frozenset({"/health", "/ready", "/metrics"})


def is_stream_path(path: str) -> bool:
    """`/commands/{id}/events` and `/projects/{id}/events`: the event streams."""
    parts = path.split("/")
    return len(parts) == 4 and parts[3] == "events" and parts[1] in ("commands", "projects")


class StreamSlots:
    def __init__(self, *, per_key: int, per_replica: int) -> None:
        self.per_key = per_key
        self.per_replica = per_replica
        self._by_key: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def acquire(self, key_id: str) -> Callable[[], None]:
        """A slot for one more stream of `key_id`; call the result (once or more) to free it."""
        if self._open >= self.per_replica:
            raise Overloaded(
                "this replica has as many open event streams as it may serve; retry later",
                retry_after=STREAM_RETRY_SECONDS,
                details={"resource": "streams", "limit": self.per_replica},
            )
        held = self._by_key.get(key_id, 0)
        if held >= self.per_key:
            raise TooManyStreams(
                f"this key has {held} open event streams, the most it may hold",
                retry_after=STREAM_RETRY_SECONDS,
                details={"limit": self.per_key},
            )
        self._by_key[key_id] = held + 1
        self._open += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._open -= 1
            left = self._by_key[key_id] - 1
            if left:
                self._by_key[key_id] = left
            else:
                del self._by_key[key_id]

        return release


class InFlightLimit:
    """Pure ASGI middleware: at most `limit` requests in flight on this replica (streams and
    probes apart); the next one is 503 OVERLOADED with Retry-After and `Connection: close`."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _EXEMPT or is_stream_path(path):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        body = json.dumps(
            envelope(
                "OVERLOADED",
                "this replica has as many requests in flight as it may serve; retry shortly",
                request_id,
                {"resource": "requests", "limit": self.limit},
            )
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
