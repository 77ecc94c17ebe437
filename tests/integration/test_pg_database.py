"""How PostgresDatabase spends round trips, against a real server: reads and one-statement
writes hold no transaction (no BEGIN, no COMMIT/ROLLBACK), other writes stay transactions, and
a pooled connection is pinged before use only after it has been idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from rdev.adapters.sql.db import CLAIM_LOCK, PostgresDatabase, project_lock
from rdev.domain.errors import DatabaseUnavailable


def _dsn(pg_url: str) -> str:
    return "postgresql://" + pg_url.split("://", 1)[1]


def _status(conn: Connection) -> TransactionStatus:
    driver = conn.connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    status: TransactionStatus = driver.info.transaction_status
    return status


def _select_then_status(conn: Connection) -> TransactionStatus:
    conn.execute(text("SELECT 1"))
    return _status(conn)


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[PostgresDatabase]:
    db = PostgresDatabase(pg_url, pool_size=2)
    await db.write(lambda c: c.execute(text("CREATE TABLE IF NOT EXISTS t_rt (n int)")))
    await db.write(lambda c: c.execute(text("TRUNCATE t_rt")))
    try:
        yield db
    finally:
        await db.close()


async def test_a_read_holds_no_transaction(database: PostgresDatabase) -> None:
    assert await database.read(_select_then_status) is TransactionStatus.IDLE


async def test_a_one_statement_write_holds_no_transaction(database: PostgresDatabase) -> None:
    def insert(conn: Connection) -> TransactionStatus:
        conn.execute(text("INSERT INTO t_rt VALUES (1)"))
        return _status(conn)

    assert await database.write(insert, one_statement=True) is TransactionStatus.IDLE
    rows = await database.read(lambda c: c.execute(text("SELECT n FROM t_rt")).all())
    assert [tuple(r) for r in rows] == [(1,)]


async def test_other_writes_stay_one_transaction(database: PostgresDatabase) -> None:
    def insert_then_fail(conn: Connection) -> None:
        assert _select_then_status(conn) is TransactionStatus.INTRANS
        conn.execute(text("INSERT INTO t_rt VALUES (2)"))
        raise RuntimeError("after the insert")

    with pytest.raises(RuntimeError):
        await database.write(insert_then_fail)
    assert await database.read(lambda c: c.execute(text("SELECT count(*) FROM t_rt")).scalar()) == 0


async def test_a_failed_statement_rolls_its_transaction_back_and_leaves_the_connection_clean(
    pg_url: str,
) -> None:
    """The pool's one connection is used again at once: the failed transaction is gone."""
    db = PostgresDatabase(pg_url, pool_size=1)
    try:
        await db.write(lambda c: c.execute(text("CREATE TABLE IF NOT EXISTS t_uq (n int UNIQUE)")))
        await db.write(lambda c: c.execute(text("TRUNCATE t_uq")))

        def insert_twice(conn: Connection) -> None:
            conn.execute(text("INSERT INTO t_uq VALUES (1)"))
            conn.execute(text("INSERT INTO t_uq VALUES (1)"))

        with pytest.raises(IntegrityError):
            await db.write(insert_twice)
        assert await db.read(_select_then_status) is TransactionStatus.IDLE
        await db.write(lambda c: c.execute(text("INSERT INTO t_uq VALUES (2)")))
        rows = await db.read(lambda c: c.execute(text("SELECT n FROM t_uq")).all())
        assert [tuple(r) for r in rows] == [(2,)]
    finally:
        await db.close()


async def test_a_writes_advisory_locks_are_taken_with_its_begin_and_held_to_its_end(
    pg_url: str,
) -> None:
    """Another session cannot take them while the operation runs, and can once it is over;
    a project's lock key is a signed 32-bit integer whatever the id."""
    db = PostgresDatabase(pg_url, pool_size=1)
    locks = [project_lock("p-\u00e9\u00e9"), (CLAIM_LOCK,)]
    for lock in [*locks, project_lock(""), project_lock("x" * 200)]:
        assert all(-(2**31) <= k < 2**31 for k in lock[1:])

    async def others_can_take(lock: tuple[int, ...]) -> bool:
        async with await psycopg.AsyncConnection.connect(_dsn(pg_url), autocommit=True) as other:
            keys = ", ".join(str(k) for k in lock)
            cur = await other.execute(f"SELECT pg_try_advisory_lock({keys})")
            row = await cur.fetchone()
            assert row is not None
            if row[0]:
                await other.execute(f"SELECT pg_advisory_unlock({keys})")
            return bool(row[0])

    try:

        def held(conn: Connection) -> TransactionStatus:
            conn.execute(text("SELECT pg_sleep(0.3)"))
            return _status(conn)

        task = asyncio.create_task(db.write(held, locks=locks))
        await asyncio.sleep(0.15)  # inside the operation
        assert [await others_can_take(lock) for lock in locks] == [False, False]
        assert await task is TransactionStatus.INTRANS
        assert [await others_can_take(lock) for lock in locks] == [True, True]
    finally:
        await db.close()


async def test_migrations_run_on_a_connection_of_their_own(pg_url: str) -> None:
    """Migrating needs a real transaction (the advisory lock is held to its end): it does not
    borrow one of the pool's connections, which stay in autocommit."""
    db = PostgresDatabase(pg_url, pool_size=1)
    try:
        await db.migrate()
        await db.migrate()  # at head already: nothing to do, no error
        assert await db.read(_select_then_status) is TransactionStatus.IDLE
        revision = await db.read(
            lambda c: c.execute(text("SELECT version_num FROM alembic_version")).scalar()
        )
        assert revision
    finally:
        await db.close()


async def _end_sessions(pg_url: str) -> int:
    """End every other session on the test database (what a server restart does to a pool)."""
    async with await psycopg.AsyncConnection.connect(_dsn(pg_url), autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("op", ["read", "write", "one_statement"])
async def test_an_idle_connection_whose_session_ended_is_replaced_before_use(
    pg_url: str, op: str
) -> None:
    db = PostgresDatabase(pg_url, pool_size=1, ping_after_idle=0.0)
    try:
        await db.read(_select_then_status)
        assert await _end_sessions(pg_url) >= 1
        if op == "read":
            await db.read(_select_then_status)
        else:
            await db.write(_select_then_status, one_statement=op == "one_statement")
    finally:
        await db.close()


async def test_a_connection_used_a_moment_ago_is_not_pinged(pg_url: str) -> None:
    """The price of pinging only idle connections: a session ended within the idle window
    fails one operation as an outage (which callers wait out); the pool then replaces it."""
    db = PostgresDatabase(pg_url, pool_size=1, ping_after_idle=3600.0)
    try:
        await db.read(_select_then_status)
        assert await _end_sessions(pg_url) >= 1
        with pytest.raises(DatabaseUnavailable):
            await db.read(_select_then_status)
        assert await db.read(_select_then_status) is TransactionStatus.IDLE
    finally:
        await db.close()
