"""The FastAPI application factory. Routes read their services from app state; the lifespan
belongs to whoever built the services (bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from rdev.adapters.http import docs, errors, openapi
from rdev.adapters.http.browser import Cors, TokenGuard
from rdev.adapters.http.capacity import InFlightLimit
from rdev.adapters.http.documented import HEALTH_ERRORS, KEYED
from rdev.adapters.http.lean import lean_routes
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
    usage,
    webhooks,
)
from rdev.adapters.http.state import HttpServices

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    services: HttpServices,
    *,
    max_body_bytes: int,
    max_requests_in_flight: int = 256,
    trusted_proxies: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
    lifespan: Lifespan | None = None,
    scrape: Scrape | None = None,
) -> FastAPI:
    app = FastAPI(
        title="rdev",
        version="0.1.0",
        description="Run Claude Code, shell and git in development pods; stream output over SSE.",
        lifespan=lifespan,
        docs_url=None,  # served offline by docs.install
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,  # operationId: the function
    )
    app.state.services = services
    errors.install(app)
    docs.install(app)
    # the lean routes, built from their twins; the twins only document (never mounted)
    twins = [*projects.twins.routes, *streams.twins.routes]
    app.router.routes.extend(lean_routes(twins))
    app.include_router(health.router, responses=HEALTH_ERRORS)
    for module in (keys, commands, streams, claude_config, audit, webhooks, usage):
        app.include_router(module.router, responses=KEYED)  # all behind KeyAuth
    app.router.routes.append(metrics_route(scrape))  # 404 unless served here (metrics.py)
    openapi.install(app, twins)
    app.add_middleware(InFlightLimit, limit=max_requests_in_flight)  # inside the edge
    app.add_middleware(TokenGuard)  # inside the edge: its 401 has the request id
    app.add_middleware(
        EdgeMiddleware, max_body_bytes=max_body_bytes, trusted_proxies=trusted_proxies
    )
    if services is not None:  # None: an app built only for its OpenAPI document
        # outside the edge: every answer is observed once, the edge's own 413/422 included
        app.add_middleware(RequestMetrics, metrics=services.metrics, routes=lambda: app.routes)
    if cors_origins:  # outermost, so every answer carries CORS headers, errors included
        app.add_middleware(Cors, origins=cors_origins)
    return app
