"""Statement spans from the SQL engines (adapters/otel/sql.py) on SQLite and PostgreSQL: one per
statement, inside the caller's span, with the statement's text but not its values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rdev.adapters.otel import sql
from rdev.adapters.sql.store import build_store
from rdev.config import Settings
from rdev.domain.models import ApiKey, Scope


@pytest.mark.parametrize(
    "system", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_each_statement_is_a_span_inside_the_callers(
    system: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/t.db"
        if system == "sqlite"
        else request.getfixturevalue("own_pg_url")
    )
    store = build_store(Settings(database_url=url))
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        await store.db.migrate()
        for engine in store.db.engines():
            sql.instrument(engine, provider, system)
        secret = "f" * 64
        with provider.get_tracer("t").start_as_current_span("caller") as caller:
            await store.keys.add(
                ApiKey(id="trkey0000001", name="n", secret_hash=secret,
                       scopes=frozenset({Scope.ADMIN}), created_at=datetime.now(UTC))
            )  # fmt: skip
            assert await store.keys.get("trkey0000001") is not None
    finally:
        await store.close()
        provider.shutdown()
    statements = [s for s in spans.get_finished_spans() if s.name.startswith("db ")]
    names = {s.name for s in statements}
    assert {"db INSERT", "db SELECT"} <= names
    ours = [s for s in statements if s.parent and s.parent.span_id == caller.context.span_id]
    assert {s.name for s in ours} >= {"db INSERT", "db SELECT"}
    for span in ours:
        assert span.attributes is not None and span.attributes["db.system.name"] == system
        assert secret not in str(span.attributes["db.query.text"])  # values are bound
