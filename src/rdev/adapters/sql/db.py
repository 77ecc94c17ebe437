"""Engines for SQLite and PostgreSQL, migrations at start-up, and the readiness ping."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from rdev.domain.errors import Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_270_001  # pg advisory lock id: one replica migrates at a time
CLAIM_LOCK = 7_270_002  # pg advisory lock id: queue claims are serialised across replicas


_sqlite_writers: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite (one writer at a time, one process) writers queue on an
    asyncio lock instead of meeting in SQLite's busy handler, which sleeps in whole
    milliseconds; on PostgreSQL this is just engine.begin()."""
    if not is_sqlite(engine):
        async with engine.begin() as conn:
            yield conn
        return
    lock = _sqlite_writers.setdefault(engine, asyncio.Lock())
    async with lock, engine.begin() as conn:
        yield conn


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=10
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _upgrade(conn: Connection) -> None:
    # alembic is imported here: it costs a second at start-up and only migrations need it
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to head. On PostgreSQL an advisory lock makes concurrent starts safe."""
    async with engine.begin() as conn:
        if not is_sqlite(engine):
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


async def ping(engine: AsyncEngine) -> None:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as e:
        raise Unavailable("database unreachable", details={"reason": type(e).__name__}) from e


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes and stores aware ones without their offset, so values
    go in and come out as aware UTC; everything in rdev is aware UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
