"""The connection guard: deadlines for a client to send its request, and a budget of open
connections that keeps descriptors for the clients who do.

Why hand-written. uvicorn has no deadline for a request head or body (only an idle keep-alive
timeout, which the first byte of a request disarms), and its `limit_concurrency` answers 503
only once a head is complete, to health checks too. Measured on this code base before the
guard (tests/e2e/test_overload.py, `rdev serve` with 256 descriptors): 1,000 clients sending
their head a byte a second plus 400 SSE stream attempts used every descriptor within seconds,
after which the honest client's /health got "Server disconnected without sending a response"
in its very first round. A descriptor is what runs out, so the guard counts connections.

The policy:
- A connection awaiting its request head (new, or idle between keep-alive requests) must
  finish it within `header_timeout`; one whose head is in but whose body is not must finish the
  body within `body_timeout`. Past the deadline it is closed (408 first if a head had begun).
- A head larger than `max_head_bytes` is answered 431 and closed.
- At most `max_connections` are open (the descriptor limit minus a reserve for the database,
  command pipes and files). A connection arriving at the budget does not push out a client
  being served: the longest-waiting connection that has not finished sending its request is
  shed instead — the slow sender or an idle keep-alive connection, never a stream or a request
  being answered. A connection that has sent nothing yet is not shed in its first second: in
  a burst the server may not have read it yet (measured: without that grace, a burst of 400
  stream requests was shed whole by the slow senders connecting behind it). One that has sent
  part of a head has shown it is slow and may be shed at once (measured: with a one-second
  grace for every connection, each wave of slow senders protected itself and honest newcomers
  were refused for seconds). When none may be shed, the newcomer is refused (503 OVERLOADED,
  Retry-After: 1, closed) and may retry.

Cost on the hot path: a few dict operations per request and no clock reads — deadlines count
ticks of one timer (`TICK` seconds) that runs only while connections are open, and it visits
only the connections whose request is not all in.

It plugs into uvicorn as its HTTP protocol class (a subclass of the httptools protocol that
uvicorn[standard] uses); WebSocket upgrades are off (`ws="none"`), rdev has none."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rdev.adapters.http.errors import envelope

log = structlog.get_logger(__name__)

TICK = 0.25  # seconds
GRACE_TICKS = 4  # a connection that has sent nothing is not shed in its first second


def _raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps(envelope(code, message, uuid.uuid4().hex)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def _with_retry_after(response: bytes, seconds: int) -> bytes:
    return response.replace(b"\r\n\r\n", f"\r\nretry-after: {seconds}\r\n\r\n".encode(), 1)


_TIMEOUT = _raw_error(408, "Request Timeout", "REQUEST_TIMEOUT", "request not received in time")
_HEAD_TOO_LARGE = _raw_error(
    431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE", "request head too large"
)
_FULL = _with_retry_after(
    _raw_error(503, "Service Unavailable", "OVERLOADED", "too many open connections"), 1
)


class ConnectionGuard:
    """The connections of one server and their deadlines (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int,
        header_timeout: float,
        body_timeout: float,
        max_head_bytes: int = 64 * 1024,
    ) -> None:
        self.max_connections = max_connections
        self.head_ticks = max(1, math.ceil(header_timeout / TICK))
        self.body_ticks = max(1, math.ceil(body_timeout / TICK))
        self.max_head_bytes = max_head_bytes
        self.live: set[GuardedProtocol] = set()
        # The connections whose request is not all in, each with the tick its deadline counts
        # from, in the order they entered the table:
        self.fresh: dict[GuardedProtocol, int] = {}  # nothing received yet
        self.heads: dict[GuardedProtocol, int] = {}  # part of a head, or idle after a response
        self.bodies: dict[GuardedProtocol, int] = {}  # head in, body still coming
        self.tick = 0
        self.shed = 0
        self.refused = 0
        self.timed_out = 0
        self._timer: asyncio.TimerHandle | None = None

    def admit(self, conn: GuardedProtocol) -> bool:
        """A new connection: False when it must be refused."""
        if len(self.live) >= self.max_connections and not self._shed_one():
            self.refused += 1
            return False
        self.live.add(conn)
        self.fresh[conn] = self.tick
        if self._timer is None:
            self._timer = conn.loop.call_later(TICK, self._sweep, conn.loop)
        return True

    def forget(self, conn: GuardedProtocol) -> None:
        self.live.discard(conn)
        self.fresh.pop(conn, None)
        self.heads.pop(conn, None)
        self.bodies.pop(conn, None)

    def _shed_one(self) -> bool:
        """Abort the longest-waiting connection that may be shed; False when there is none."""
        firsts = [next(iter(t.items()), None) for t in (self.heads, self.bodies, self.fresh)]
        if firsts[2] is not None and self.tick - firsts[2][1] < GRACE_TICKS:
            firsts[2] = None  # still in its grace: the server may not have read it yet
        oldest = min((f for f in firsts if f is not None), key=lambda f: f[1], default=None)
        if oldest is None:
            return False
        self.shed += 1
        victim = oldest[0]
        self.forget(victim)
        victim.transport.abort()  # at once: its descriptor is what the newcomer needs
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tick += 1
        for table, ticks in (
            (self.fresh, self.head_ticks),
            (self.heads, self.head_ticks),
            (self.bodies, self.body_ticks),
        ):
            expired = [conn for conn, since in table.items() if self.tick - since >= ticks]
            for conn in expired:
                self.timed_out += 1
                self.forget(conn)
                conn.time_out()
        self._timer = loop.call_later(TICK, self._sweep, loop) if self.live else None


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, reporting each connection's progress to its guard."""

    guard: ConnectionGuard  # set on the subclass made by `protocol_class`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_bytes = 0  # bytes received while the current head is incomplete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.write(_FULL)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard = self.guard
        since = guard.fresh.pop(self, None)
        if since is not None:
            guard.heads[self] = since  # a head begins; `on_headers_complete` may end it now
        super().data_received(data)
        if self in guard.heads:  # the head is still incomplete after these bytes
            self.head_bytes += len(data)
            if self.head_bytes > guard.max_head_bytes:
                guard.forget(self)
                self._close_with(_HEAD_TOO_LARGE)

    def on_headers_complete(self) -> None:
        guard = self.guard
        if guard.heads.pop(self, None) is not None:
            guard.bodies[self] = guard.tick
        self.head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.guard.bodies.pop(self, None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None and self in self.guard.live:
            self.guard.heads[self] = self.guard.tick  # idle: the next head's deadline starts

    def time_out(self) -> None:
        """Past its deadline: a client that had begun a request hears 408; any is closed."""
        if self.head_bytes and (self.cycle is None or self.cycle.response_complete):
            self._close_with(_TIMEOUT)
        else:
            self.transport.close()

    def _close_with(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def protocol_class(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """A protocol class bound to `guard`, for `uvicorn.Config(http=...)`."""
    return type("GuardedHttpProtocol", (GuardedProtocol,), {"guard": guard})
