"""The one composition root: build(settings) wires adapters → services → HTTP app. Tests call
the same function, overriding what they need."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
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
from rdev.adapters.http.browser import redact_access_log
from rdev.adapters.http.capacity import StreamSlots
from rdev.adapters.http.connections import ConnectionGuard, protocol_class
from rdev.adapters.http.drain import DrainingServer, InFlight
from rdev.adapters.http.metrics import MetricsListener, Scrape, queued_by_project
from rdev.adapters.http.ratelimit import Limits
from rdev.adapters.http.refusals import RefusalAudit
from rdev.adapters.http.state import HttpServices
from rdev.adapters.local.backend import LocalBackend
from rdev.adapters.local.claude_probe import claude_version
from rdev.adapters.local.demo import ensure_demo_project
from rdev.adapters.metrics import Metrics, TimedEventLog
from rdev.adapters.otel import setup as otel_setup
from rdev.adapters.sql.store import Store, build_store
from rdev.adapters.webhooks.build import build_webhooks
from rdev.adapters.webhooks.worker import WEBHOOKS_TOPIC, DeliveryWorker
from rdev.clock import utcnow
from rdev.config import Settings
from rdev.domain.claude_env import ClaudeEnv, parse_names
from rdev.domain.models import Command
from rdev.ports import Backend, Bus, Finish, Tracer
from rdev.runtime.dispatcher import CANCEL_TOPIC, QUEUE_TOPIC, Dispatcher
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.runner import EndHook
from rdev.runtime.streams import EVENTS_TOPIC, StreamHub
from rdev.runtime.tracing import NO_TRACER
from rdev.services.audit import AuditService
from rdev.services.claude_cli import ClaudeCli
from rdev.services.claude_config import ClaudeConfigService
from rdev.services.commands import CommandService
from rdev.services.health import Readiness
from rdev.services.keys import KEYS_TOPIC, KeyService
from rdev.services.projects import ProjectService
from rdev.services.stream_tokens import StreamTokenService
from rdev.services.usage import UsageService

log = structlog.get_logger(__name__)


def build_backend(settings: Settings) -> Backend:
    if settings.backend == "kubernetes":
        from rdev.adapters.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(
            namespace=settings.namespace,
            kubeconfig=settings.kubeconfig or None,
            claude_bin=settings.claude_bin,
        )
    return LocalBackend(
        settings.workspace_root,
        claude_bin=settings.claude_bin,
        claude_state=settings.data_dir / "claude",
        claude_temp=settings.data_dir / "claude-tmp",
    )


def build_bus(settings: Settings) -> Bus:
    url = settings.db_url
    if url.startswith("postgresql"):
        # imported only here, like the Kubernetes backend: psycopg costs a SQLite replica ~6 MB
        from rdev.adapters.bus.postgres import PostgresBus

        dsn = "postgresql://" + url.split("://", 1)[1]
        topics = (EVENTS_TOPIC, QUEUE_TOPIC, CANCEL_TOPIC, KEYS_TOPIC, WEBHOOKS_TOPIC)
        return PostgresBus(dsn, topics)
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
    deliveries: DeliveryWorker
    http: FastAPI = field(init=False)
    demo: bool = False
    tracer_provider: Any = None  # an OpenTelemetry TracerProvider when tracing is on
    owns_tracer_provider: bool = False  # made from OTEL_*: shut down (flushed) at close
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
        await self.deliveries.start()
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
        await self.deliveries.stop()  # attempts in flight are made again after their lease
        await self._stopping
        if self.metrics_listener is not None:
            await self.metrics_listener.close()
        await self.bus.close()
        await self.services.limits.close()
        await self.backend.close()
        await self.store.close()
        if self.tracer_provider is not None:
            flush = self.tracer_provider.shutdown if self.owns_tracer_provider else None
            await asyncio.to_thread(flush or self.tracer_provider.force_flush)
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
    backend = own_backend = backend or build_backend(settings)
    # tracing: a TracerProvider given (the tests' in-memory exporter) or made from OTEL_*
    given = overrides.get("tracer_provider")
    provider = given or otel_setup.tracer_provider(os.environ)
    tracer: Tracer = NO_TRACER
    if provider is not None:
        backend, tracer = _traced(provider, backend, store)
    bus = overrides.get("bus") or build_bus(settings)
    replica = settings.replica
    metrics = overrides.get("metrics") or Metrics(backend=own_backend.name)
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
            claude_bin=settings.claude_bin,
            claude_env=ClaudeEnv.passthrough(parse_names(settings.claude_env), os.environ),
            claude_max_retries=settings.claude_max_retries,
        ),
        clock=clock,
        on_end=_both(audit.command_ended, metrics.command_ended),
        tracer=tracer,
    )
    webhook_service, deliveries = build_webhooks(
        settings, store, bus, audit, clock=clock, on_outcome=metrics.webhook_delivery
    )
    readiness = Readiness({"database": store.db.ping, "backend": backend.check})
    limits = Limits(
        rps=settings.rate_limit_rps,
        burst=settings.rate_limit_burst,
        redis_retry_seconds=settings.redis_retry_seconds,
        auth_failures_per_minute=settings.auth_failures_per_minute,
        redis_url=settings.redis_url,
        redis_key_prefix=settings.redis_key_prefix,
        refusal_entries_per_minute=settings.audit_refusals_per_minute,
    )
    keys = KeyService(store.keys, audit, bus, clock=clock, cache_seconds=settings.key_cache_seconds)
    claude_cli = ClaudeCli(
        backend,
        settings.claude_bin,
        server_probe=None
        if settings.backend == "kubernetes"
        else functools.partial(claude_version, settings.claude_bin),
        ttl=settings.claude_check_seconds,
    )
    usage = UsageService(
        store=store.usage,
        keys=keys,
        backend=backend,
        clock=clock,
        key_daily_usd=settings.key_daily_budget_usd,
        project_daily_usd=settings.project_daily_budget_usd,
    )
    services = HttpServices(
        keys=keys,
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
            claude_cli=claude_cli,
            budget=usage.check_budget,
            tracer=tracer,
        ),
        claude_cli=claude_cli,
        streams=hub,
        claude_config=ClaudeConfigService(backend, audit),
        refusals=RefusalAudit(audit, limits.refusal_entry_allowed),
        stream_slots=StreamSlots(
            per_key=settings.max_streams_per_key, per_replica=stream_capacity(settings)
        ),
        webhooks=webhook_service,
        usage=usage,
        heartbeat_seconds=settings.sse_heartbeat_seconds,
        stream_tokens=StreamTokenService(
            keys,
            ttl_seconds=settings.stream_token_ttl_seconds,
            server_secret=settings.stream_token_secret.encode(),
            clock=clock,
        ),
        metrics=metrics,
    )
    app = App(settings, store, own_backend, bus, hub, dispatcher, services, deliveries, demo=demo)
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
        cors_origins=settings.cors_origin_list,
        lifespan=app.lifespan,
        scrape=None if settings.metrics_port else scrape,
    )
    if provider is not None:
        from rdev.adapters.otel.asgi import TracingMiddleware

        app.http.add_middleware(TracingMiddleware, provider=provider)  # outermost
        app.tracer_provider, app.owns_tracer_provider = provider, given is None
    return app


def _traced(provider: Any, backend: Backend, store: Store) -> tuple[Backend, Tracer]:
    """The backend and the database traced, and the core's tracer (imported here: without
    the `otel` extra these modules are never loaded)."""
    from rdev.adapters.otel import sql
    from rdev.adapters.otel.backend import TracedBackend
    from rdev.adapters.otel.tracer import OtelTracer

    system = "sqlite" if store.db.is_sqlite else "postgresql"
    for engine in store.db.engines():
        sql.instrument(engine, provider, system)
    return TracedBackend(backend, provider), OtelTracer(provider)


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
    config = uvicorn.Config(asgi or app.http, **(options | overrides))
    redact_access_log()  # after uvicorn has configured its loggers
    return config


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
