"""The one composition root: build(settings) wires adapters → services → HTTP app. Tests call
the same function, overriding what they need."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from rdev.adapters.bus.memory import InProcessBus
from rdev.adapters.http.app import create_app
from rdev.adapters.http.capacity import StreamSlots
from rdev.adapters.http.connections import ConnectionGuard, protocol_class
from rdev.adapters.http.drain import DrainingServer, InFlight
from rdev.adapters.http.metrics import MetricsListener, Scrape, queued_by_project
from rdev.adapters.http.ratelimit import Limits
from rdev.adapters.http.refusals import RefusalAudit
from rdev.adapters.http.state import HttpServices
from rdev.adapters.local.backend import LocalBackend
from rdev.adapters.local.demo import ensure_demo_project
from rdev.adapters.metrics import Metrics, TimedEventLog
from rdev.adapters.sql.store import Store, build_store
from rdev.clock import utcnow
from rdev.config import Settings
from rdev.domain.models import Command
from rdev.ports import Backend, Bus, Finish
from rdev.runtime.dispatcher import CANCEL_TOPIC, QUEUE_TOPIC, Dispatcher
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.runner import EndHook
from rdev.runtime.streams import EVENTS_TOPIC, StreamHub
from rdev.services.audit import AuditService
from rdev.services.claude_config import ClaudeConfigService
from rdev.services.commands import CommandService
from rdev.services.health import Readiness
from rdev.services.keys import KEYS_TOPIC, KeyService
from rdev.services.projects import ProjectService

log = structlog.get_logger(__name__)


def build_backend(settings: Settings) -> Backend:
    if settings.backend == "kubernetes":
        from rdev.adapters.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(
            namespace=settings.namespace, kubeconfig=settings.kubeconfig or None
        )
    return LocalBackend(
        settings.workspace_root,
        claude_bin=settings.claude_bin,
        claude_state=settings.data_dir / "claude",
    )


def build_bus(settings: Settings) -> Bus:
    url = settings.db_url
    if url.startswith("postgresql"):
        # imported only here, like the Kubernetes backend: psycopg costs a SQLite replica ~6 MB
        from rdev.adapters.bus.postgres import PostgresBus

        dsn = "postgresql://" + url.split("://", 1)[1]
        return PostgresBus(dsn, (EVENTS_TOPIC, QUEUE_TOPIC, CANCEL_TOPIC, KEYS_TOPIC))
    return InProcessBus()


@dataclass
class App:
    settings: Settings
    store: Store
    backend: Backend
    bus: Bus
    hub: StreamHub
    dispatcher: Dispatcher
    services: HttpServices
    http: FastAPI = field(init=False)
    demo: bool = False
    metrics_listener: MetricsListener | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.db.migrate()
        await self.backend.start()
        if self.demo and isinstance(self.backend, LocalBackend):
            await asyncio.to_thread(ensure_demo_project, self.settings.workspace_root)
        await self.bus.start()
        await self.dispatcher.start()
        if self.metrics_listener is not None:
            await self.metrics_listener.start()
        self._tasks.append(asyncio.create_task(self._prune_forever(), name="event-prune"))
        log.info("rdev.started", backend=self.backend.name, replica=self.settings.replica)

    def begin_shutdown(self) -> None:
        """On SIGTERM, while the server still drains: fail readiness, refuse new commands, end
        SSE streams, and start stopping the running commands within the shutdown budget."""
        if self._stopping is not None:
            return
        self.services.commands.accepting = False
        self.services.readiness.draining = True
        self.hub.shutdown()
        plan = self.settings.shutdown_plan
        self._stopping = asyncio.create_task(
            self.dispatcher.stop(
                grace_seconds=plan.command_grace, kill_wait_seconds=plan.kill_wait
            ),
            name="dispatcher-stop",
        )

    async def close(self) -> None:
        self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
        assert self._stopping is not None
        await self._stopping
        if self.metrics_listener is not None:
            await self.metrics_listener.close()
        await self.bus.close()
        await self.services.limits.close()
        await self.backend.close()
        await self.store.close()
        log.info("rdev.stopped")

    async def _prune_forever(self) -> None:
        while True:
            cutoff = utcnow() - timedelta(days=self.settings.event_retention_days)
            with contextlib.suppress(Exception):
                await self.store.events.prune(cutoff)
            await asyncio.sleep(3600)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.close()


def build(
    settings: Settings,
    *,
    backend: Backend | None = None,
    demo: bool = False,
    clock: Callable[[], datetime] = utcnow,
    **overrides: Any,
) -> App:
    store = build_store(settings)
    backend = backend or build_backend(settings)
    bus = overrides.get("bus") or build_bus(settings)
    replica = settings.replica
    metrics = overrides.get("metrics") or Metrics(backend=backend.name)
    hub = StreamHub(store.events, bus, replica=replica, buffer_events=settings.sse_buffer_events)
    audit = AuditService(store.audit_log, clock=clock)
    dispatcher = Dispatcher(
        commands=store.commands,
        log=TimedEventLog(store.events, metrics),
        hub=hub,
        backend=backend,
        bus=bus,
        replica=replica,
        limits=DispatchLimits(
            per_project=settings.concurrent_commands,
            per_replica=settings.replica_max_commands,
            lease_seconds=settings.lease_seconds,
            kill_grace_seconds=settings.kill_grace_seconds,
            max_output_bytes=settings.max_output_bytes,
            outage_buffer_bytes=settings.outage_buffer_bytes,
            max_output_events=settings.max_output_events,
        ),
        clock=clock,
        on_end=_both(audit.command_ended, metrics.command_ended),
    )
    readiness = Readiness({"database": store.db.ping, "backend": backend.check})
    limits = Limits(
        rps=settings.rate_limit_rps,
        auth_failures_per_minute=settings.auth_failures_per_minute,
        redis_url=settings.redis_url,
        redis_key_prefix=settings.redis_key_prefix,
        refusal_entries_per_minute=settings.audit_refusals_per_minute,
    )
    services = HttpServices(
        keys=KeyService(
            store.keys, audit, bus, clock=clock, cache_seconds=settings.key_cache_seconds
        ),
        audit=audit,
        projects=ProjectService(backend),
        readiness=readiness,
        limits=limits,
        commands=CommandService(
            store=store.commands,
            log=store.events,
            hub=hub,
            backend=backend,
            dispatcher=dispatcher,
            audit=audit,
            clock=clock,
            max_queue=settings.max_queue,
            default_timeout=settings.default_timeout_seconds,
            max_timeout=settings.max_timeout_seconds,
            claude_bin=settings.claude_bin,
        ),
        streams=hub,
        claude_config=ClaudeConfigService(backend, audit),
        refusals=RefusalAudit(audit, limits.refusal_entry_allowed),
        stream_slots=StreamSlots(
            per_key=settings.max_streams_per_key, per_replica=stream_capacity(settings)
        ),
        heartbeat_seconds=settings.sse_heartbeat_seconds,
        metrics=metrics,
    )
    app = App(settings, store, backend, bus, hub, dispatcher, services, demo=demo)
    scrape = build_scrape(settings, metrics, app)
    if scrape is not None and settings.metrics_port:
        app.metrics_listener = MetricsListener(
            scrape, host=settings.metrics_host or settings.host, port=settings.metrics_port
        )
    app.http = create_app(
        services,
        max_body_bytes=settings.max_body_bytes,
        max_requests_in_flight=settings.max_requests_in_flight,
        trusted_proxies=settings.trusted_proxy_networks,
        lifespan=app.lifespan,
        scrape=None if settings.metrics_port else scrape,
    )
    return app


def _both(first: EndHook, second: EndHook) -> EndHook:
    async def hook(command: Command, finish: Finish) -> None:
        try:
            await first(command, finish)
        finally:
            await second(command, finish)

    return hook


def build_scrape(settings: Settings, metrics: Metrics, app: App) -> Scrape | None:
    """What /metrics serves, or None when neither RDEV_METRICS_TOKEN nor RDEV_METRICS_PORT is
    set: metrics are then off (404), never open to anyone who can reach the API."""
    if not settings.metrics_token and not settings.metrics_port:
        return None
    breaker = getattr(app.backend, "breaker_state", None)  # the Kubernetes backend's
    return Scrape(
        metrics,
        running=app.dispatcher.running_by_project,
        queued=queued_by_project(app.backend, app.store.commands),
        breaker=breaker,
        token=settings.metrics_token,
    )


def connection_budget(settings: Settings) -> int:
    """Connections this process may hold open: its descriptor limit less RDEV_FD_RESERVE, kept
    for the database, command pipes, files and the clients' health checks."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - settings.fd_reserve)


def stream_capacity(settings: Settings) -> int:
    """RDEV_MAX_STREAMS, but at most three quarters of the connection budget: the rest stays
    for requests, so open streams cannot starve submissions and health checks."""
    return max(1, min(settings.max_streams, connection_budget(settings) * 3 // 4))


def server_config(app: App, asgi: Any = None, **overrides: Any) -> uvicorn.Config:
    """How rdev is served, by `rdev serve`, the tests and the benchmarks alike: uvicorn with the
    connection guard as its HTTP protocol (adapters/http/connections.py). `asgi` wraps the app
    (the shutdown's in-flight tracker); `overrides` replace uvicorn options (tests: port=0, a
    quieter log level)."""
    settings = app.settings
    guard = ConnectionGuard(
        max_connections=connection_budget(settings),
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": protocol_class(guard),
        "ws": "none",
        "log_level": settings.log_level,
        # uvicorn's access line carries the raw path and query (where a careless client may put
        # a key): off; the edge logs `http.request` at debug instead (adapters/http/metrics.py)
        "access_log": False,
        "log_config": None,  # uvicorn's loggers go through logsetup (JSON with RDEV_LOG_FORMAT)
        "lifespan": "on",
        "proxy_headers": False,  # rdev resolves client IPs itself, from RDEV_TRUSTED_PROXIES
        "server_header": False,
    }
    return uvicorn.Config(asgi or app.http, **(options | overrides))


def make_server(app: App, **overrides: Any) -> DrainingServer:
    """The server `rdev serve` runs: SIGTERM is handled by the shutdown budget
    (adapters/http/drain.py)."""
    inflight = InFlight(app.http)
    return DrainingServer(
        server_config(app, inflight, **overrides),
        plan=app.settings.shutdown_plan,
        inflight=inflight,
        on_signal=app.begin_shutdown,
    )


def run(settings: Settings, *, demo: bool = False) -> None:
    """Build rdev and serve it with uvicorn until SIGTERM/SIGINT."""
    app = build(settings, demo=demo)
    log.info(
        "rdev.capacity",
        connections=connection_budget(settings),
        streams=app.services.stream_slots.per_replica,
        streams_per_key=settings.max_streams_per_key,
        requests_in_flight=settings.max_requests_in_flight,
    )
    make_server(app).run()
