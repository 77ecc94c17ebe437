"""Serving through a shutdown, within one budget (rdev.runtime.shutdown.ShutdownPlan).

uvicorn on SIGTERM closes its listener at once, so a client routed here before the endpoint
was removed is refused; then it waits up to its graceful timeout for open connections, answers
what is left with a bare 500, and only then runs the lifespan shutdown, whose command grace
comes on top. Here, from SIGTERM: readiness fails and commands start stopping (the caller's
`on_signal`), the listener keeps accepting until the drain ends, responses carry
`Connection: close` so keep-alive clients reconnect through the Service, open requests get
until the plan's deadline, and one that has not begun its response by then is answered
503 SHUTTING_DOWN."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rdev.adapters.http.errors import envelope
from rdev.runtime.shutdown import ShutdownPlan

log = structlog.get_logger(__name__)
_CLOSE = (b"connection", b"close")
_SETTLE_SECONDS = 1.0  # for cut requests to send their 503


@dataclass(slots=True)
class _Open:
    started: bool = False
    cut: bool = False


class InFlight:
    """The outermost ASGI layer: knows the requests in flight and ends them at the deadline."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.draining = False
        self._open: dict[asyncio.Task[Any], _Open] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await self.app(scope, receive, send)
            return
        state = self._open[task] = _Open()

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.started = True
                if self.draining:
                    headers = list(message.get("headers", ()))
                    if not any(k.lower() == b"connection" for k, _ in headers):
                        message = {**message, "headers": [*headers, _CLOSE]}
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not state.cut:
                raise
            task.uncancel()
            if not state.started:
                await _shutting_down(send, scope)
            # a response already under way ends short; the server closes its connection
        finally:
            del self._open[task]

    def cut(self) -> int:
        """Cancel every request still open; those not yet answered are answered 503."""
        for task, state in self._open.items():
            state.cut = True
            task.cancel()
        return len(self._open)


async def _shutting_down(send: Send, scope: Scope) -> None:
    request_id = str(scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
    body = json.dumps(
        envelope(
            "SHUTTING_DOWN",
            "this replica shut down before the request finished; retry it",
            request_id,
        )
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"x-request-id", request_id.encode()),
        _CLOSE,
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn, with SIGTERM/SIGINT handled by the ShutdownPlan (see the module docstring).
    A second signal ends the drain early; the deadlines for requests and commands stay."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        plan: ShutdownPlan,
        inflight: InFlight,
        on_signal: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._plan = plan
        self._inflight = inflight
        self._on_signal = on_signal
        self._signalled_at: float | None = None
        self._begun = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # a signal handler: note the time only; on_tick does the work on the event loop
        if self._signalled_at is None:
            self._captured_signals.append(sig)  # uvicorn re-raises it once it has finished
            self._signalled_at = time.monotonic()
        elif sig in (signal.SIGINT, signal.SIGTERM):
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._signalled_at is not None:
            self._begin()
        if await super().on_tick(counter):
            return True
        return self._signalled_at is not None and self._since_signal() >= self._plan.listen_until

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._signalled_at is None:
            self._signalled_at = time.monotonic()
        self._begin()
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive ones close; busy ones close after answering
        if not await self._settled(self._plan.requests_until - self._since_signal()):
            cut = self._inflight.cut()
            log.warning("shutdown.requests_cut", requests=cut)
            await self._settled(_SETTLE_SECONDS)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()

    def _begin(self) -> None:
        if not self._begun:
            self._begun = True
            self._inflight.draining = True
            self._on_signal()
            log.info("shutdown.begun", budget=self._plan.budget, drain=self._plan.listen_until)

    def _since_signal(self) -> float:
        assert self._signalled_at is not None
        return time.monotonic() - self._signalled_at

    async def _settled(self, within: float) -> bool:
        """Whether every request task has ended within `within` seconds."""
        if self.server_state.tasks:
            await asyncio.wait(set(self.server_state.tasks), timeout=max(0.0, within))
        return not self.server_state.tasks


_frozen = False


def freeze_heap() -> None:
    """Move everything alive once the server has started (modules, the app, the SQLAlchemy and
    psycopg machinery: most of the heap) out of the garbage collector's view, once per process.

    Why: a full (generation 2) collection walks every tracked object, and the event writer's
    pending output keeps enough objects alive long enough to trigger one every ~50,000 events on
    PostgreSQL. Measured (bench.throughput, PostgreSQL, 3 runs of 200,000 events): 12 full
    collections took 1.17 s, about 2 us per event, half the event loop's cost; frozen, 0.24 s.
    Those objects live as long as the process, so nothing that could be freed is kept."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
