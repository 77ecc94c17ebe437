"""The SQL adapter in an outage: which database errors mean "unreachable" (the policy), real
PostgreSQL cut and restored behind a proxy, an event append that is safe to retry, and lease
renewal that tells a replica which of its commands were ended by another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors as pg
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from rdev.adapters.sql.db import unreachable
from rdev.adapters.sql.store import Store, build_store
from rdev.config import Settings
from rdev.domain.errors import Conflict, DatabaseUnavailable
from rdev.domain.lifecycle import CLAIMED_LAST_SEQ
from rdev.domain.models import Command, CommandKind, CommandStatus, Event, EventType, Priority
from rdev.ports import Finish
from tests.pgproxy import TcpProxy, proxied_database
from tests.support import PG_ADMIN_URL


def _wrapped(cls: type[DBAPIError], orig: BaseException, invalidated: bool = False) -> DBAPIError:
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


UNREACHABLE = [
    _wrapped(OperationalError, psycopg.OperationalError("connection failed: refused")),
    _wrapped(OperationalError, psycopg.OperationalError("consuming input failed")),
    _wrapped(OperationalError, pg.AdminShutdown("terminating connection")),
    _wrapped(OperationalError, pg.CrashShutdown("crash")),
    _wrapped(OperationalError, pg.CannotConnectNow("the database system is starting up")),
    _wrapped(OperationalError, pg.ConnectionFailure("connection failure")),
    _wrapped(OperationalError, pg.ConnectionException("connection exception")),
    _wrapped(OperationalError, pg.SqlclientUnableToEstablishSqlconnection("no")),
    _wrapped(InterfaceError, psycopg.InterfaceError("the connection is closed")),
    _wrapped(ProgrammingError, pg.SyntaxError("x"), invalidated=True),  # the pool says so
    PoolTimeout("QueuePool limit reached, connection timed out"),
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
]
FAILED_STATEMENTS = [
    _wrapped(OperationalError, pg.SerializationFailure("could not serialize")),
    _wrapped(OperationalError, pg.DeadlockDetected("deadlock")),
    _wrapped(OperationalError, pg.QueryCanceled("canceling statement due to statement timeout")),
    _wrapped(OperationalError, pg.LockNotAvailable("could not obtain lock")),
    _wrapped(OperationalError, pg.DiskFull("no space")),
    _wrapped(OperationalError, pg.OutOfMemory("oom")),
    _wrapped(IntegrityError, pg.UniqueViolation("duplicate key")),
    _wrapped(ProgrammingError, pg.UndefinedTable("no such table")),
    _wrapped(DBAPIError, pg.InvalidTextRepresentation("bad input")),
    ValueError("not a database error"),
    RuntimeError("boom"),
]


@pytest.mark.parametrize("error", UNREACHABLE, ids=lambda e: type(e).__name__)
def test_errors_that_mean_the_server_cannot_be_reached(error: BaseException) -> None:
    assert unreachable(error)


@pytest.mark.parametrize("error", FAILED_STATEMENTS, ids=lambda e: type(e).__name__)
def test_errors_of_a_statement_are_not_an_outage(error: BaseException) -> None:
    assert not unreachable(error)


@pytest.fixture
async def through_proxy() -> AsyncIterator[tuple[Store, TcpProxy]]:
    from tests.conftest import _require_postgres

    _require_postgres()
    async with proxied_database(PG_ADMIN_URL) as (url, proxy):
        store = build_store(Settings(database_url=url))
        await store.db.migrate()
        try:
            yield store, proxy
        finally:
            await store.close()


def _command(n: int = 1) -> tuple[Command, Event]:
    cmd = Command(
        id=f"cmd_0000000000{n:02d}outage000001", project_id="demo", kind=CommandKind.SHELL,
        argv=("true",), status=CommandStatus.QUEUED, priority=Priority.NORMAL,
        created_at=datetime.now(UTC), timeout_seconds=60,
    )  # fmt: skip
    return cmd, Event(cmd.id, 1, EventType.STATUS, {"status": "queued"})


@pytest.mark.postgres
async def test_reads_and_writes_raise_database_unavailable_while_cut_and_work_after(
    through_proxy: tuple[Store, TcpProxy],
) -> None:
    store, proxy = through_proxy
    cmd, first = _command()
    await store.commands.add(cmd, first)  # the pool now holds a live connection
    await proxy.cut()
    with pytest.raises(DatabaseUnavailable) as read_error:
        await store.commands.get(cmd.id)
    assert read_error.value.code == "DATABASE_UNAVAILABLE"
    with pytest.raises(DatabaseUnavailable):
        await store.events.append([Event(cmd.id, 2, EventType.STATUS, {"status": "x"})])
    with pytest.raises(DatabaseUnavailable):
        await store.db.ping()
    with pytest.raises(DatabaseUnavailable):
        await store.keys.list()
    await proxy.restore()
    assert (await store.commands.get(cmd.id)) is not None
    await store.db.ping()


async def test_an_event_batch_written_again_is_stored_once(store: Store) -> None:
    """A retried append whose first attempt was committed (its answer lost) is a success, not a
    duplicate; different events at those sequence numbers are a Conflict."""
    cmd, first = _command(2)
    await store.commands.add(cmd, first)
    batch = [
        Event(cmd.id, n, EventType.OUTPUT, {"line": f"l{n}", "stream": "stdout"}) for n in (2, 3)
    ]
    await store.events.append(batch)
    await store.events.append(batch)  # the retry
    events = await store.events.read(cmd.id, after=0, limit=100)
    assert [e.seq for e in events] == [1, 2, 3]
    other = [Event(cmd.id, 2, EventType.STATUS, {"status": "lost"})]
    with pytest.raises(Conflict):
        await store.events.append(other)
    longer = [*batch, Event(cmd.id, 4, EventType.OUTPUT, {"line": "l4", "stream": "stdout"})]
    with pytest.raises(Conflict):
        await store.events.append(longer)
    assert [e.seq for e in await store.events.read(cmd.id, after=0, limit=100)] == [1, 2, 3]


async def test_renewal_names_the_commands_another_replica_ended(store: Store) -> None:
    now = datetime.now(UTC)
    mine, other, cancelled, swept = (_command(n) for n in (3, 4, 5, 6))
    for cmd, first in (mine, other, cancelled, swept):
        await store.commands.add(cmd, first)
    claimed = await store.commands.claim(
        owner="a", lease_until=now + timedelta(seconds=30), now=now, slots=4,
        project_limit=lambda _p: 10,
    )  # fmt: skip
    assert len(claimed) == 4
    await store.commands.request_cancel(cancelled[0].id)
    final = [Event(swept[0].id, CLAIMED_LAST_SEQ + 1, EventType.STATUS, {"status": "lost"})]
    lost = Finish(status=CommandStatus.LOST, finished_at=now, error="lease expired")
    assert await store.commands.finish(swept[0].id, lost, final)
    ids = [c[0].id for c in (mine, other, cancelled, swept)]
    to_stop = await store.commands.renew_leases(
        owner="a", command_ids=ids, until=now + timedelta(seconds=60)
    )
    assert sorted(to_stop) == sorted([cancelled[0].id, swept[0].id])
    # another owner's renewal of the same ids: none of them is its to run
    assert sorted(
        await store.commands.renew_leases(owner="b", command_ids=ids, until=now)
    ) == sorted(ids)
    assert (await store.commands.get(mine[0].id)).lease_owner == "a"  # type: ignore[union-attr]
