"""`GET /metrics` (the Prometheus text format), its protection, its own listener, and the one
place request durations are observed (`RequestMetrics`, the outermost middleware).

Who may scrape, the operator's choice (docs/monitoring.md):
- RDEV_METRICS_TOKEN: `Authorization: Bearer <token>` is required (compared in constant time)
  wherever /metrics is served;
- RDEV_METRICS_PORT: /metrics is served only by a listener of its own (on RDEV_METRICS_HOST,
  by default RDEV_HOST), which a NetworkPolicy or the pod network can keep private; the main
  port then answers 404;
- neither: /metrics is off (404), so nothing is exposed by default.

The separate listener is a second uvicorn server on the same loop, started and stopped with the
app (`Server.startup`/`shutdown`, without uvicorn's signal handling, which `rdev serve` owns).

What a scrape reads fresh: running commands (this replica's dispatcher), queue depth (the
database, database-wide: every replica serves the same number, so aggregate with max, not sum)
and the Kubernetes circuit breaker."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rdev.adapters.metrics import OTHER, Metrics
from rdev.domain.errors import NotFound, Unauthenticated
from rdev.ports import Backend, CommandStore

log = structlog.get_logger(__name__)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the endpoint label of every path no route matches
SCRAPE_READ_SECONDS = 5.0


@dataclass
class Scrape:
    """Renders the registry, after refreshing the gauges that are read rather than counted."""

    metrics: Metrics
    running: Callable[[], Mapping[str, int]]
    queued: Callable[[], Awaitable[Mapping[str, int]]]
    breaker: Callable[[], Awaitable[str]] | None = None
    token: str = ""

    async def render(self) -> bytes:
        self.metrics.set_running(self.running())
        try:
            self.metrics.set_queue_depth(await asyncio.wait_for(self.queued(), SCRAPE_READ_SECONDS))
            if self.breaker is not None:
                self.metrics.set_breaker(await self.breaker())
        except Exception as e:  # the counters are still worth serving
            log.warning("metrics.read_failed", error=type(e).__name__)
        return generate_latest(self.metrics.registry)

    def allowed(self, request: Request) -> bool:
        if not self.token:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )


def queued_by_project(
    backend: Backend, commands: CommandStore
) -> Callable[[], Awaitable[dict[str, int]]]:
    """Queue depth of every project the backend knows (so only projects that exist)."""

    async def read() -> dict[str, int]:
        projects = await backend.list_projects()
        return {p.id: await commands.count_queued(p.id) for p in projects}

    return read


def metrics_route(scrape: Scrape | None) -> Route:
    """/metrics: served when `scrape` is given, else 404 like any unknown path."""

    async def endpoint(request: Request) -> Response:
        if scrape is None:
            raise NotFound("not found")
        if not scrape.allowed(request):
            raise Unauthenticated("a valid metrics token is required")
        return Response(await scrape.render(), media_type=CONTENT_TYPE_LATEST)

    route = Route("/metrics", endpoint, methods=["GET"])
    route.methods = {"GET"}
    return route


class MetricsListener:
    """/metrics alone, on a port of its own (RDEV_METRICS_PORT)."""

    def __init__(self, scrape: Scrape, *, host: str, port: int) -> None:
        app = Starlette(routes=[metrics_route(scrape)], exception_handlers={
            NotFound: lambda _r, _e: Response(status_code=404),
            Unauthenticated: lambda _r, _e: Response(status_code=401),
        })  # fmt: skip
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_config=None, access_log=False,
            ws="none", server_header=False,
        )  # fmt: skip
        config.load()
        self._server = uvicorn.Server(config)
        self._server.lifespan = config.lifespan_class(config)

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self._server.startup()

    async def close(self) -> None:
        await self._server.shutdown()


class RequestMetrics:
    """Observes every request once, at the edge: the time to its response's start (a stream's
    life is not a request's latency), by route template, method (allow-listed) and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Callable[[], list[Any]]) -> None:
        self.app = app
        self._done = metrics.request_done
        self._routes = routes
        self._templates: dict[int, str] | None = None
        # decided once (logsetup ran before the app was built): a filtered call still costs ~1 us
        self._log_requests = logging.getLogger("rdev").isEnabledFor(logging.DEBUG)

    def _endpoint(self, scope: Scope) -> str:
        route = scope.get("route")  # FastAPI routes
        if route is not None:
            return str(route.path)
        endpoint = scope.get("endpoint")  # plain Starlette routes
        if endpoint is None:
            return UNMATCHED
        if self._templates is None:
            self._templates = {
                id(r.endpoint): r.path for r in self._routes() if hasattr(r, "endpoint")
            }
        return self._templates.get(id(endpoint), UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        answered = False

        async def timed(message: Message) -> None:
            nonlocal answered
            if not answered and message["type"] == "http.response.start":
                answered = True
                self._observe(scope, message["status"], perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            if not answered:  # failed before answering: the server answers 500
                self._observe(scope, 500, perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        method = method if method in METHODS else OTHER
        endpoint = self._endpoint(scope)
        self._done(endpoint, method, status, seconds)
        if self._log_requests:  # instead of uvicorn's access line: never the raw path or query
            log.debug("http.request", endpoint=endpoint, method=method, status=status,
                      ms=round(seconds * 1000, 2))  # fmt: skip
