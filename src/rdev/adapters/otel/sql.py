"""A span for each database statement, from SQLAlchemy's engine events (what
opentelemetry-instrumentation-sqlalchemy does, in 30 lines and no extra dependency). The
statement's text is recorded (parameters are bound, never in it); its values are not."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine, event

_KEY = "rdev.otel.spans"


def instrument(engine: Engine, provider: Any, system: str) -> None:
    tracer = provider.get_tracer("rdev.sql")

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = tracer.start_span(
            f"db {verb}",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": system, "db.query.text": statement[:2000]},
        )
        conn.info.setdefault(_KEY, []).append(span)

    def after(conn: Any, *_args: Any) -> None:
        spans = conn.info.get(_KEY)
        if spans:
            spans.pop().end()

    def failed(ctx: Any) -> None:
        spans = ctx.connection.info.get(_KEY) if ctx.connection is not None else None
        if spans:
            span: trace.Span = spans.pop()
            span.set_status(Status(StatusCode.ERROR, type(ctx.original_exception).__name__))
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
