"""A server span for each HTTP request, outermost (before the edge), continuing the client's
W3C `traceparent`. Named by the route template once routing has matched (`GET
/projects/{project_id}`), so spans group by route and never carry ids or secrets; query strings
are not recorded. Hand-written rather than opentelemetry-instrumentation-asgi: that names spans
by the raw path before routing, and adds per-message spans rdev's streams do not want."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROPAGATOR = TraceContextTextMapPropagator()


def _carrier(scope: Scope) -> dict[str, str]:
    out = {}
    for name, value in scope.get("headers", ()):
        if name in (b"traceparent", b"tracestate"):
            out[name.decode()] = value.decode("latin-1")
    return out


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, provider: Any) -> None:
        self.app = app
        self._tracer = provider.get_tracer("rdev.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        ctx = _PROPAGATOR.extract(_carrier(scope))
        with self._tracer.start_as_current_span(
            method, context=ctx, kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
        ) as span:  # fmt: skip
            status = 500

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_traced)
            finally:
                _finish(span, scope, method, status)


def _template(scope: Scope) -> str | None:
    """The matched route's path template. FastAPI's router does not record the plain Starlette
    routes it matches (the lean reads, deps.lean_get): those are found again here."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            if candidate.matches(scope)[0] is Match.FULL:
                route = candidate
                break
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else None


def _finish(span: trace.Span, scope: Scope, method: str, status: int) -> None:
    template = _template(scope)
    if template:
        span.update_name(f"{method} {template}")
        span.set_attribute("http.route", template)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
