"""The key store, the audit log and migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect as sa_inspect

from rdev.bootstrap import Store, build_store
from rdev.config import Settings
from rdev.domain.errors import InvalidInput
from rdev.domain.models import ApiKey, AuditEntry, Scope
from rdev.ports import AuditFilter
from tests.support import PG_ADMIN_URL, pg_reachable

T0 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def make_key(key_id: str = "abcdef012345", **fields: object) -> ApiKey:
    values: dict[str, object] = {
        "id": key_id,
        "name": "k",
        "secret_hash": "0" * 64,
        "scopes": frozenset({Scope.PROJECTS_READ, Scope.AUDIT_READ}),
        "created_at": T0,
    }
    values.update(fields)
    return ApiKey(**values)  # type: ignore[arg-type]


def assert_aware_utc(value: datetime | None, expected: datetime) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    assert value == expected


# keys


async def test_key_round_trip(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    key = make_key(
        projects=frozenset({"demo", "other"}),
        allowed_ips=("10.0.0.0/8", "2001:db8::/32"),
        expires_at=(T0 + timedelta(days=1)).astimezone(plus_two),
        created_by="creator00001",
    )
    await store.keys.add(key)
    got = await store.keys.get(key.id)
    assert got is not None
    assert got.name == "k"
    assert got.secret_hash == "0" * 64
    assert got.scopes == {Scope.PROJECTS_READ, Scope.AUDIT_READ}
    assert got.projects == {"demo", "other"}
    assert got.allowed_ips == ("10.0.0.0/8", "2001:db8::/32")
    assert got.created_by == "creator00001"
    assert got.revoked_at is None and got.last_used_at is None
    assert_aware_utc(got.created_at, T0)
    assert_aware_utc(got.expires_at, T0 + timedelta(days=1))


async def test_get_unknown_key_is_none(store: Store) -> None:
    assert await store.keys.get("nobody000000") is None


async def test_list_keys_newest_first(store: Store) -> None:
    for i in range(3):
        await store.keys.add(make_key(f"key{i:09d}", created_at=T0 + timedelta(minutes=i)))
    assert [k.id for k in await store.keys.list()] == [
        "key000000002",
        "key000000001",
        "key000000000",
    ]


async def test_revoke_touch_and_set_secret_hash(store: Store) -> None:
    await store.keys.add(make_key())
    await store.keys.add(make_key("untouched000"))
    await store.keys.revoke("abcdef012345", T0 + timedelta(hours=1))
    await store.keys.touch("abcdef012345", T0 + timedelta(hours=2))
    await store.keys.set_secret_hash("abcdef012345", "f" * 64)
    got = await store.keys.get("abcdef012345")
    assert got is not None
    assert_aware_utc(got.revoked_at, T0 + timedelta(hours=1))
    assert_aware_utc(got.last_used_at, T0 + timedelta(hours=2))
    assert got.secret_hash == "f" * 64
    other = await store.keys.get("untouched000")
    assert other is not None
    assert (other.revoked_at, other.last_used_at, other.secret_hash) == (None, None, "0" * 64)


# audit


def entry(action: str, at: datetime, key_id: str | None = None, **details: object) -> AuditEntry:
    return AuditEntry(
        id=None,
        at=at,
        action=action,
        actor_key_id=key_id,
        target="t",
        client_ip="10.1.2.3",
        request_id="req-1",
        outcome="ok",
        details=dict(details),
    )


async def test_audit_append_and_list_newest_first(store: Store) -> None:
    await store.audit_log.append(entry("key.create", T0, "k1", scopes=["admin"], n=1))
    await store.audit_log.append(entry("key.revoke", T0 + timedelta(seconds=1), "k1"))
    page = await store.audit_log.list(AuditFilter())
    assert [e.action for e in page.items] == ["key.revoke", "key.create"]
    assert page.next_cursor is None
    first = page.items[1]
    assert first.id is not None and page.items[0].id is not None
    assert page.items[0].id > first.id
    assert_aware_utc(first.at, T0)
    assert (first.actor_key_id, first.target, first.client_ip, first.request_id) == (
        "k1",
        "t",
        "10.1.2.3",
        "req-1",
    )
    assert first.details == {"scopes": ["admin"], "n": 1}


async def test_audit_filters(store: Store) -> None:
    for i in range(6):
        action = "auth.failure" if i % 2 else "key.create"
        await store.audit_log.append(entry(action, T0 + timedelta(minutes=i), f"k{i % 3}"))

    async def ids(**flt: object) -> list[int | None]:
        return [e.id for e in (await store.audit_log.list(AuditFilter(**flt))).items]  # type: ignore[arg-type]

    every = await ids()
    assert len(every) == 6
    by_minute = list(reversed(every))  # index = minute
    assert await ids(action="auth.failure") == [by_minute[5], by_minute[3], by_minute[1]]
    assert await ids(key_id="k0") == [by_minute[3], by_minute[0]]
    assert await ids(since=T0 + timedelta(minutes=2)) == by_minute[2:][::-1]
    assert await ids(until=T0 + timedelta(minutes=2)) == by_minute[:2][::-1]
    assert await ids(
        since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=4), action="key.create"
    ) == [by_minute[2]]
    # an aware bound in another zone means the same instant
    plus_five = timezone(timedelta(hours=5))
    assert await ids(since=(T0 + timedelta(minutes=4)).astimezone(plus_five)) == [
        by_minute[5],
        by_minute[4],
    ]
    assert await ids(action="nothing") == []


async def test_audit_cursor_pagination_has_no_gaps_or_duplicates(store: Store) -> None:
    for i in range(23):
        await store.audit_log.append(entry("x", T0 + timedelta(seconds=i), n=i))
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.audit_log.list(AuditFilter(limit=5, cursor=cursor))
        pages += 1
        seen.extend(e.details["n"] for e in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 5
    assert seen == list(range(22, -1, -1))


async def test_audit_exact_page_has_no_next_cursor(store: Store) -> None:
    for i in range(4):
        await store.audit_log.append(entry("x", T0, n=i))
    page = await store.audit_log.list(AuditFilter(limit=4))
    assert len(page.items) == 4
    assert page.next_cursor is None


async def test_audit_bad_cursor_is_invalid_input(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.audit_log.list(AuditFilter(cursor="abc"))


# migrations


async def test_migrations_are_idempotent(store: Store) -> None:
    await store.db.migrate()
    await store.db.migrate()
    tables = await store.db.read(lambda conn: sa_inspect(conn).get_table_names())
    assert {"api_keys", "audit_log", "commands", "events"} <= set(tables)
    await store.keys.add(make_key())
    assert await store.keys.get("abcdef012345") is not None


async def test_ping_works(store: Store) -> None:
    await store.db.ping()


@pytest.mark.postgres
async def test_concurrent_migrations_on_a_fresh_postgres_database_both_succeed() -> None:
    reason = pg_reachable()
    if reason is not None:
        pytest.skip(f"PostgreSQL is not reachable ({reason})")
    name = f"rdev_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    stores = [build_store(Settings(database_url=f"{base}/{name}")) for _ in range(2)]
    try:
        await asyncio.gather(*(s.db.migrate() for s in stores))
        await stores[0].keys.add(make_key())
        assert await stores[1].keys.get("abcdef012345") is not None
    finally:
        for s in stores:
            await s.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# SQLite: another process holding the write lock


async def test_sqlite_write_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rdev.db"
    store = build_store(Settings(database_url=f"sqlite:///{path}"))
    await store.db.migrate()
    other = sqlite3.connect(path, isolation_level=None)  # as `rdev keys create` would be
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    try:
        add = asyncio.create_task(store.keys.add(make_key()))
        await asyncio.sleep(0.3)
        assert not add.done()  # waiting for the other writer, in a worker thread ...
        assert ticks >= 10  # ... while the event loop runs on
        other.execute("COMMIT")
        await asyncio.wait_for(add, 5)
        assert await store.keys.get("abcdef012345") is not None
        # reads never wait for a writer (WAL), and the inline path is back
        other.execute("BEGIN IMMEDIATE")
        assert await asyncio.wait_for(store.keys.get("abcdef012345"), 1) is not None
        other.execute("ROLLBACK")
    finally:
        tick_task.cancel()
        other.close()
        await store.close()
