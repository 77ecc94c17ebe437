"""The FastAPI application factory. Routes read their services from app state; the lifespan
belongs to whoever built the services (bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from rdev.adapters.http import errors
from rdev.adapters.http.capacity import InFlightLimit
from rdev.adapters.http.deps import KEY_ERRORS
from rdev.adapters.http.documented import ERRORS
from rdev.adapters.http.metrics import RequestMetrics, Scrape, metrics_route
from rdev.adapters.http.middleware import EdgeMiddleware
from rdev.adapters.http.routes import (
    audit,
    claude_config,
    commands,
    health,
    keys,
    projects,
    streams,
)
from rdev.adapters.http.state import HttpServices

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    services: HttpServices,
    *,
    max_body_bytes: int,
    max_requests_in_flight: int = 256,
    trusted_proxies: tuple[str, ...] = (),
    lifespan: Lifespan | None = None,
    scrape: Scrape | None = None,
) -> FastAPI:
    app = FastAPI(
        title="rdev",
        version="0.1.0",
        description="Run Claude Code, shell and git in development pods; stream output over SSE.",
        lifespan=lifespan,
    )
    app.state.services = services
    errors.install(app)
    # matched before the documented twins in the routers
    app.router.routes.extend([*projects.lean_routes, *streams.lean_routes])
    app.router.routes.append(metrics_route(scrape))  # 404 unless served here (metrics.py)
    app.include_router(health.router)
    for module in (keys, projects, commands, streams, claude_config, audit):
        # all behind KeyAuth; KEY_ERRORS last, so its 429 and 503 keep their Retry-After
        app.include_router(module.router, responses=ERRORS | KEY_ERRORS)
    app.add_middleware(InFlightLimit, limit=max_requests_in_flight)  # inside the edge
    app.add_middleware(
        EdgeMiddleware, max_body_bytes=max_body_bytes, trusted_proxies=trusted_proxies
    )
    # outermost: every answer is observed once, the edge's own 413/422 included
    app.add_middleware(RequestMetrics, metrics=services.metrics, routes=lambda: app.routes)
    return app
