"""Where SQL runs. A store operation is a plain function of a synchronous SQLAlchemy
`Connection`; `Database.read` and `Database.write` run one as a single transaction (on
PostgreSQL, reads and one-statement writes run in autocommit: see below).

- **SQLite** (the embedded default): the standard `sqlite3` module, run inline on the event
  loop. A statement on a local WAL database takes microseconds, less than one hand-off to a
  worker thread, and an inline operation cannot interleave with another coroutine, so this
  process's writers never wait on each other. The inline connection never waits for a lock
  held by another process (`rdev keys create`, say): it gives up at once, and the operation is
  rolled back and run again in a worker thread that waits up to 30 s. Operations that may touch
  many rows, migrations and WAL checkpoints (which fsync) run in worker threads too.
- **PostgreSQL**: SQLAlchemy's asyncio engine over psycopg; the same functions run through
  `AsyncConnection.run_sync`. Round trips are what an operation costs here (each one also
  waits for the event loop), so: a pooled connection is pinged before use only when it has been
  idle for a second or more (one used a moment ago is alive; one idle through a server restart
  is not); reads, and a write that is one statement (`one_statement=True`: an event batch),
  run without BEGIN and COMMIT/ROLLBACK. The pool's connections stay in autocommit, and a
  transaction is begun and ended by statements, as on SQLite: switching a connection to
  autocommit and back for each read cost more than the read (bench: a primary-key read
  0.49 -> 0.40 ms warm, 1.9 -> 1.3 ms after 20 ms idle). An operation that fails because the
  server cannot be reached (refused, connection lost, pool timeout) raises the domain's
  `DatabaseUnavailable`, so the core can tell an outage, which it waits out, from a failed
  statement, which it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from rdev.domain.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_270_001  # pg advisory lock id: one replica migrates at a time
CLAIM_LOCK = 7_270_002  # pg advisory lock id: queue claims are serialised across replicas
QUEUE_LOCK = 7_270_003  # pg advisory lock class (with the project's hash): one enqueue at a time
# A PostgreSQL advisory transaction lock's key: one bigint, or two integers.
AdvisoryLock = tuple[int] | tuple[int, int]
_BUSY_TIMEOUT_MS = 30_000  # how long a worker thread waits for another process's lock
_CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints while writes go on
_CONNECT_TIMEOUT = 5  # seconds: an unreachable server is an outage, not a hung request
_PING_AFTER_IDLE = 1.0  # seconds: a pooled connection idle this long is pinged before use
# SQLSTATEs that mean "the server is not there" rather than "this statement failed": class 08
# (connection exception), and admin/crash shutdown or "cannot connect now" (a server starting).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")

T = TypeVar("T")
Op = Callable[[Connection], T]


class Database:
    """Runs store operations; see the module docstring for how each database does it."""

    is_sqlite: bool

    def engines(self) -> list[Engine]:
        """The engines statements run on (for tracing's statement spans)."""
        raise NotImplementedError

    async def read(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def write(
        self,
        op: Op[T],
        *,
        slow: bool = False,
        one_statement: bool = False,
        locks: Sequence[AdvisoryLock] = (),
    ) -> T:
        """`slow`: the operation may touch many rows (on SQLite it then runs in a thread).
        `one_statement`: it issues exactly one statement, atomic by itself (on PostgreSQL it
        then runs in autocommit: one round trip instead of three). `locks`: advisory locks
        the transaction takes, in order, before the operation runs (PostgreSQL: sent with its
        BEGIN, one round trip; SQLite serialises every write anyway)."""
        raise NotImplementedError

    async def migrate(self) -> None:
        """Bring the schema to head."""
        raise NotImplementedError

    async def ping(self) -> None:
        try:
            await self.read(lambda conn: conn.execute(text("SELECT 1")))
        except (SQLAlchemyError, OSError) as e:
            raise _unavailable(e) from e

    async def close(self) -> None:
        raise NotImplementedError


def project_lock(project_id: str) -> AdvisoryLock:
    """The advisory lock that serialises one project's enqueues (a CRC-32 of its id, in the
    signed range of PostgreSQL's integer)."""
    key = zlib.crc32(project_id.encode())
    return (QUEUE_LOCK, key - (1 << 32) if key >= 1 << 31 else key)


def _begin(locks: Sequence[AdvisoryLock]) -> str:
    """BEGIN and the locks as one query (the simple protocol runs several statements in one
    round trip when there are no parameters: the keys are integers written in)."""
    taken = [
        f"SELECT pg_advisory_xact_lock({', '.join(str(int(k)) for k in lock)})" for lock in locks
    ]
    return "; ".join(["BEGIN", *taken])


def open_database(url: str, *, pool_size: int = 10) -> Database:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        return SqliteDatabase(path)
    return PostgresDatabase(url, pool_size=pool_size)


def _upgrade(conn: Connection) -> None:
    # alembic is imported here: it costs a second at start-up and only migrations need it
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def unreachable(error: BaseException) -> bool:
    """Whether a database error means the server could not be reached (an outage) rather than
    that a statement failed. psycopg reports a refused or lost connection without a SQLSTATE."""
    if isinstance(error, PoolTimeout | OSError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    state = getattr(error.orig, "sqlstate", None)
    return state is None or state.startswith(_UNREACHABLE_STATES)


def _unavailable(error: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable("database unreachable", details={"reason": type(error).__name__})


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection at checkout only if it has been idle `idle_seconds`; a failed
    ping has the pool replace it (SQLAlchemy's pessimistic disconnect handling, made lazy)."""
    sync = engine.sync_engine

    @event.listens_for(sync, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # just connected, or used a moment ago
        try:
            sync.dialect.do_ping(dbapi_conn)
        except Exception as e:
            raise DisconnectionError("a pooled connection failed its ping") from e


class PostgresDatabase(Database):
    is_sqlite = False

    def __init__(
        self, url: str, *, pool_size: int, ping_after_idle: float = _PING_AFTER_IDLE
    ) -> None:
        self._url = url
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=10,
            # the most recently used connection first: a hot one, rarely idle long enough to
            # need the ping (bench.throughput on PostgreSQL: 0.79 of bare SSE FIFO, 0.94-1.03 LIFO)
            pool_use_lifo=True,
            # transactions are begun explicitly (see the module docstring and _pg_transaction);
            # one left open by a failure is rolled back when its connection returns to the pool
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": _CONNECT_TIMEOUT},
        )
        _ping_when_idle(self.engine, ping_after_idle)

    def engines(self) -> list[Engine]:
        return [self.engine.sync_engine]

    async def read(self, op: Op[T]) -> T:
        """Without a transaction: at READ COMMITTED, PostgreSQL's default, each statement sees
        its own snapshot inside a transaction too, so a read-only operation gains nothing from
        one but a BEGIN and a ROLLBACK round trip."""
        return await self._run(op)

    async def write(
        self,
        op: Op[T],
        *,
        slow: bool = False,
        one_statement: bool = False,
        locks: Sequence[AdvisoryLock] = (),
    ) -> T:
        """A write whose connection is lost at commit may or may not have been stored: callers
        that retry after DatabaseUnavailable make their writes idempotent (see events.append)."""
        if one_statement and not locks:
            return await self._run(op)
        return await self._run(partial(_pg_transaction, op=op, begin=_begin(locks)))

    async def _run(self, op: Op[T]) -> T:
        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(op)
        except (SQLAlchemyError, OSError) as e:
            if unreachable(e):
                raise _unavailable(e) from e
            raise

    async def migrate(self) -> None:
        """In one transaction of a connection of its own (DDL too is transactional here); an
        advisory lock makes concurrent starts of several replicas safe."""
        engine = create_async_engine(
            self._url, poolclass=NullPool, connect_args={"connect_timeout": _CONNECT_TIMEOUT}
        )
        try:
            async with engine.begin() as conn:
                lock = text("SELECT pg_advisory_xact_lock(:k)")
                await conn.execute(lock, {"k": _MIGRATION_LOCK})
                await conn.run_sync(_upgrade)
        except (SQLAlchemyError, OSError) as e:
            if unreachable(e):
                raise _unavailable(e) from e
            raise
        finally:
            await engine.dispose()

    async def close(self) -> None:
        await self.engine.dispose()


def _in_memory(path: str) -> bool:
    return path in ("", ":memory:")


def _sqlite_engine(path: str, *, busy_timeout_ms: int, inline: bool) -> Engine:
    memory = _in_memory(path)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        poolclass=StaticPool if inline or memory else None,
    )

    def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly (see _transaction)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={busy_timeout_ms}",
            "foreign_keys=ON",
            # the inline connection never checkpoints (a checkpoint fsyncs): a thread does
            f"wal_autocheckpoint={0 if inline and not memory else 1000}",
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    event.listen(engine, "connect", on_connect)
    return engine


def _transaction(conn: Connection, op: Op[T], begin: str) -> T:
    try:
        conn.exec_driver_sql(begin)
        result = op(conn)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return result


def _pg_transaction(conn: Connection, op: Op[T], begin: str) -> T:
    """`op` in a transaction on a connection in autocommit, begun by `begin`. A failed ROLLBACK
    (the connection is gone) leaves the rest to the pool, which rolls back or discards the
    connection."""
    try:
        conn.exec_driver_sql(begin)
    except BaseException:
        with contextlib.suppress(SQLAlchemyError, OSError):
            conn.exec_driver_sql("ROLLBACK")  # (BEGIN ran, and a lock was refused)
        raise
    try:
        result = op(conn)
    except BaseException:
        with contextlib.suppress(SQLAlchemyError, OSError):
            conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")
    return result


def _in_new_connection(engine: Engine, op: Op[T], begin: str) -> T:
    with engine.connect() as conn:
        return _transaction(conn, op, begin)


def _locked_elsewhere(error: OperationalError) -> bool:
    code = getattr(error.orig, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteDatabase(Database):
    is_sqlite = True

    def __init__(self, path: str) -> None:
        # an in-memory database exists only on its one connection: no worker threads then
        memory = _in_memory(path)
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._inline = _sqlite_engine(path, busy_timeout_ms=0, inline=True)
        self._conn: Connection | None = None  # the inline connection, kept open
        self._threaded = (
            self._inline
            if memory
            else _sqlite_engine(path, busy_timeout_ms=_BUSY_TIMEOUT_MS, inline=False)
        )
        self._write_lock = asyncio.Lock()  # this process's writers, when one is in a thread
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpoints = not memory

    def engines(self) -> list[Engine]:
        return list(dict.fromkeys([self._inline, self._threaded]))

    def _inline_conn(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._inline.connect()
        return self._conn

    async def read(self, op: Op[T]) -> T:
        try:
            return _transaction(self._inline_conn(), op, "BEGIN")
        except OperationalError as e:
            if not _locked_elsewhere(e):
                raise
        return await asyncio.to_thread(_in_new_connection, self._threaded, op, "BEGIN")

    async def write(
        self,
        op: Op[T],
        *,
        slow: bool = False,
        one_statement: bool = False,
        locks: Sequence[AdvisoryLock] = (),
    ) -> T:
        async with self._write_lock:
            if slow:
                result = await self._in_thread(op)
            else:
                try:
                    result = _transaction(self._inline_conn(), op, "BEGIN IMMEDIATE")
                except OperationalError as e:
                    if not _locked_elsewhere(e):
                        raise
                    result = await self._in_thread(op)
        self._maybe_checkpoint()
        return result

    async def _in_thread(self, op: Op[T]) -> T:
        return await asyncio.to_thread(_in_new_connection, self._threaded, op, "BEGIN IMMEDIATE")

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if not self._checkpoints or now - self._last_checkpoint < _CHECKPOINT_EVERY:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._last_checkpoint = now
        self._checkpointing = asyncio.create_task(asyncio.to_thread(self._checkpoint))

    def _checkpoint(self) -> None:
        with self._threaded.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    async def migrate(self) -> None:
        await self._in_thread(_upgrade)

    async def close(self) -> None:
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        if self._checkpoints:
            await asyncio.to_thread(self._checkpoint)
        if self._conn is not None:
            self._conn.close()
        self._inline.dispose()
        self._threaded.dispose()


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes and stores aware ones without their offset, so values
    go in and come out as aware UTC; everything in rdev is aware UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
