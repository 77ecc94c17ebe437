"""The command store's contract, run against the SQL store on SQLite and PostgreSQL and against
its in-memory twin (tests/fakes.py), so the twin the unit tests rely on behaves as the real one:
idempotent submission under a race, queue positions and claim order when arrival times tie,
claims across projects, and the conditional moves out of `queued` and `running`.

(Claim/queue concurrency across replicas is tested in test_sql_stores.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from rdev.adapters.sql.store import build_store
from rdev.adapters.sql.tables import metadata
from rdev.config import Settings
from rdev.domain.errors import Conflict
from rdev.domain.lifecycle import CLAIMED_LAST_SEQ, terminal_events
from rdev.domain.models import Command, CommandKind, CommandStatus, Event, EventType, Priority
from rdev.ports import CommandFilter, CommandStore, EventLog, Finish
from tests.fakes import MemoryCommandStore, MemoryEventLog

T0 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
LEASE = T0 + timedelta(minutes=5)


@dataclass
class Stores:
    commands: CommandStore
    events: EventLog


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "memory":
        log = MemoryEventLog()
        yield Stores(MemoryCommandStore(log), log)
        return
    url = (
        f"sqlite:///{tmp_path / 'rdev.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = build_store(Settings(database_url=url))
    await store.db.migrate()
    if not store.db.is_sqlite:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        await store.db.write(lambda conn: conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY")))
    try:
        yield Stores(store.commands, store.events)
    finally:
        await store.close()


def make(
    cid: str,
    *,
    project: str = "demo",
    priority: Priority = Priority.NORMAL,
    created_at: datetime = T0,
    key_id: str | None = "key000000001",
    idempotency_key: str | None = None,
) -> Command:
    return Command(
        id=cid,
        project_id=project,
        kind=CommandKind.SHELL,
        argv=("true",),
        status=CommandStatus.QUEUED,
        priority=priority,
        created_at=created_at,
        timeout_seconds=60,
        key_id=key_id,
        idempotency_key=idempotency_key,
        request_hash="h" * 64 if idempotency_key else None,
    )


def first(cid: str) -> Event:
    return Event(cid, 1, EventType.STATUS, {"status": "queued"})


async def add(s: Stores, cmd: Command) -> Command:
    return await s.commands.add(cmd, first(cmd.id))


async def claim(s: Stores, *, slots: int, limits: dict[str, int] | None = None) -> list[str]:
    got = await s.commands.claim(
        owner="r1",
        lease_until=LEASE,
        now=T0,
        slots=slots,
        project_limit=lambda p: (limits or {}).get(p, 100),
    )
    return [c.id for c in got]


# idempotency


async def test_concurrent_submissions_with_one_idempotency_key_make_one_command(
    stores: Stores,
) -> None:
    racers = [make(f"cmd_race{i:02d}", idempotency_key="same-key") for i in range(8)]
    results = await asyncio.gather(*(add(stores, c) for c in racers))
    winners = {r.id for r in results}
    assert len(winners) == 1
    (winner,) = winners
    assert winner in {c.id for c in racers}
    page = await stores.commands.page(CommandFilter(project_id="demo"))
    assert [c.id for c in page.items] == [winner]
    assert await stores.events.last_seq(winner) == 1  # one first event, not one per racer
    for loser in {c.id for c in racers} - winners:
        assert await stores.commands.get(loser) is None
        assert await stores.events.last_seq(loser) == 0


async def test_an_idempotency_key_belongs_to_one_api_key(stores: Stores) -> None:
    a = await add(stores, make("cmd_a", key_id="key00000000a", idempotency_key="k"))
    b = await add(stores, make("cmd_b", key_id="key00000000b", idempotency_key="k"))
    assert (a.id, b.id) == ("cmd_a", "cmd_b")
    found = await stores.commands.find_idempotent("key00000000b", "k")
    assert found is not None and found.id == "cmd_b"
    assert await stores.commands.find_idempotent("key00000000c", "k") is None


async def test_a_repeated_idempotency_key_returns_the_first_command_even_once_it_ran(
    stores: Stores,
) -> None:
    await add(stores, make("cmd_first", idempotency_key="k"))
    assert await claim(stores, slots=1) == ["cmd_first"]
    again = await add(stores, make("cmd_second", idempotency_key="k"))
    assert again.id == "cmd_first"
    assert again.status is CommandStatus.RUNNING


async def test_without_an_idempotency_key_every_submission_is_new(stores: Stores) -> None:
    got = await asyncio.gather(*(add(stores, make(f"cmd_n{i}")) for i in range(5)))
    assert sorted(c.id for c in got) == [f"cmd_n{i}" for i in range(5)]
    assert await stores.commands.count_queued("demo") == 5


# positions and ties


async def test_arrival_ties_are_broken_by_id_in_positions_and_in_claims(stores: Stores) -> None:
    ids = ["cmd_c", "cmd_a", "cmd_d", "cmd_b"]  # added out of id order, same instant
    for cid in ids:
        await add(stores, make(cid))
    positions = {cid: await stores.commands.queue_position(make(cid)) for cid in ids}
    assert positions == {"cmd_a": 1, "cmd_b": 2, "cmd_c": 3, "cmd_d": 4}
    claimed = [(await claim(stores, slots=1))[0] for _ in ids]
    assert claimed == ["cmd_a", "cmd_b", "cmd_c", "cmd_d"]


async def test_priority_goes_before_arrival_and_ties_within_a_rank_by_id(stores: Stores) -> None:
    later = T0 + timedelta(seconds=1)
    await add(stores, make("cmd_n1", created_at=T0))
    await add(stores, make("cmd_l0", priority=Priority.LOW, created_at=T0 - timedelta(hours=1)))
    await add(stores, make("cmd_h2", priority=Priority.HIGH, created_at=later))
    await add(stores, make("cmd_h1", priority=Priority.HIGH, created_at=later))
    await add(stores, make("cmd_n0", created_at=T0))
    order = ["cmd_h1", "cmd_h2", "cmd_n0", "cmd_n1", "cmd_l0"]
    for i, cid in enumerate(order, 1):
        cmd = await stores.commands.get(cid)
        assert cmd is not None
        assert await stores.commands.queue_position(cmd) == i, cid
    assert await claim(stores, slots=5) == order


async def test_position_of_a_command_about_to_be_queued_counts_ties_with_smaller_ids(
    stores: Stores,
) -> None:
    for cid in ("cmd_b", "cmd_d"):
        await add(stores, make(cid))
    assert await stores.commands.queue_position(make("cmd_a")) == 1
    assert await stores.commands.queue_position(make("cmd_c")) == 2
    assert await stores.commands.queue_position(make("cmd_e")) == 3
    assert await stores.commands.queue_position(make("cmd_z", priority=Priority.HIGH)) == 1
    other = make("cmd_0", project="other")
    assert await stores.commands.queue_position(other) == 1  # positions are per project


async def test_only_queued_commands_have_a_position(stores: Stores) -> None:
    await add(stores, make("cmd_a"))
    await add(stores, make("cmd_b"))
    await claim(stores, slots=1)
    running = await stores.commands.get("cmd_a")
    waiting = await stores.commands.get("cmd_b")
    assert running is not None and waiting is not None
    assert await stores.commands.queue_position(running) is None
    assert await stores.commands.queue_position(waiting) == 1  # moved up


# claims across projects


async def test_a_full_project_does_not_hold_up_the_projects_queued_behind_it(
    stores: Stores,
) -> None:
    for i in range(3):
        await add(stores, make(f"cmd_a{i}", project="alpha", created_at=T0))
    await add(stores, make("cmd_b0", project="beta", created_at=T0 + timedelta(seconds=1)))
    limits = {"alpha": 1, "beta": 1}
    assert await claim(stores, slots=10, limits=limits) == ["cmd_a0", "cmd_b0"]
    assert await claim(stores, slots=10, limits=limits) == []  # both projects are full
    await stores.commands.finish("cmd_a0", Finish(CommandStatus.SUCCEEDED, T0, exit_code=0), [])
    assert await claim(stores, slots=10, limits=limits) == ["cmd_a1"]


async def test_claims_respect_the_replica_slots_across_projects(stores: Stores) -> None:
    for p in ("p1", "p2", "p3"):
        await add(stores, make(f"cmd_{p}", project=p))
    assert len(await claim(stores, slots=2)) == 2
    assert len(await claim(stores, slots=0)) == 0
    assert len(await claim(stores, slots=2)) == 1
    assert await claim(stores, slots=2) == []


# conditional moves


async def test_a_command_is_finished_once_and_its_events_are_written_once(
    stores: Stores,
) -> None:
    await add(stores, make("cmd_a"))
    await claim(stores, slots=1)

    def final(status: CommandStatus) -> list[Event]:
        return terminal_events(
            "cmd_a", last_seq=CLAIMED_LAST_SEQ, status=status, exit_code=None, duration_ms=5
        )

    done = Finish(CommandStatus.SUCCEEDED, T0, exit_code=0)
    lost = Finish(CommandStatus.LOST, T0, error="lease expired")
    results = await asyncio.gather(
        stores.commands.finish("cmd_a", done, final(CommandStatus.SUCCEEDED)),
        stores.commands.finish("cmd_a", lost, final(CommandStatus.LOST)),
    )
    assert sorted(results) == [False, True]
    cmd = await stores.commands.get("cmd_a")
    assert cmd is not None
    winner = CommandStatus.SUCCEEDED if results[0] else CommandStatus.LOST
    assert cmd.status is winner and cmd.lease_owner is None
    events = await stores.events.read("cmd_a", after=0, limit=100)
    assert [e.seq for e in events] == [1, 2, 3, 4]  # queued, running, the winner's two
    assert events[-1].data["status"] == winner.value


async def test_cancel_of_a_queued_command_and_its_claim_exclude_each_other(
    stores: Stores,
) -> None:
    await add(stores, make("cmd_a"))
    await add(stores, make("cmd_b"))
    final = terminal_events(
        "cmd_a", last_seq=1, status=CommandStatus.CANCELLED, exit_code=None, duration_ms=0
    )
    assert await stores.commands.cancel_queued("cmd_a", at=T0, final=final)
    assert not await stores.commands.cancel_queued("cmd_a", at=T0, final=final)
    assert await claim(stores, slots=5) == ["cmd_b"]
    final_b = terminal_events(
        "cmd_b", last_seq=1, status=CommandStatus.CANCELLED, exit_code=None, duration_ms=0
    )
    assert not await stores.commands.cancel_queued("cmd_b", at=T0, final=final_b)
    assert await stores.events.last_seq("cmd_b") == CLAIMED_LAST_SEQ  # its claim's, not those
    assert not await stores.commands.finish(
        "cmd_a", Finish(CommandStatus.FAILED, T0), []
    )  # cancelled is terminal


async def test_event_sequence_numbers_are_taken_once(stores: Stores) -> None:
    await add(stores, make("cmd_a"))
    batch = [Event("cmd_a", 2, EventType.OUTPUT, {"line": "x", "stream": "stdout"})]
    await stores.events.append(batch)
    await stores.events.append(batch)  # the same batch again: an attempt whose answer was lost
    other = [Event("cmd_a", 2, EventType.OUTPUT, {"line": "y", "stream": "stdout"})]
    with pytest.raises(Conflict):
        await stores.events.append(other)
    assert [e.data for e in await stores.events.read("cmd_a", after=1, limit=10)] == [batch[0].data]


async def test_renewal_names_the_commands_to_stop(stores: Stores) -> None:
    for cid in ("cmd_a", "cmd_b", "cmd_c"):
        await add(stores, make(cid))
    await claim(stores, slots=3)
    await stores.commands.request_cancel("cmd_b")
    await stores.commands.finish("cmd_c", Finish(CommandStatus.LOST, T0), [])
    later = LEASE + timedelta(minutes=5)
    to_stop = await stores.commands.renew_leases(
        owner="r1", command_ids=["cmd_a", "cmd_b", "cmd_c"], until=later
    )
    assert sorted(to_stop) == ["cmd_b", "cmd_c"]
    assert await stores.commands.renew_leases(owner="r2", command_ids=["cmd_a"], until=later) == [
        "cmd_a"
    ]  # not r2's
    assert [c.id for c in await stores.commands.expired_leases(LEASE + timedelta(minutes=1))] == []
    expired = await stores.commands.expired_leases(later + timedelta(seconds=1))
    assert sorted(c.id for c in expired) == ["cmd_a", "cmd_b"]


async def test_leased_to_names_an_owners_running_commands_whatever_their_lease(
    stores: Stores,
) -> None:
    for cid in ("cmd_a", "cmd_b", "cmd_c"):
        await add(stores, make(cid))
    await claim(stores, slots=3)  # claimed by r1
    await stores.commands.finish("cmd_c", Finish(CommandStatus.LOST, T0), [])
    far = LEASE + timedelta(days=365 * 50)
    await stores.commands.renew_leases(owner="r1", command_ids=["cmd_a"], until=far)
    assert sorted(c.id for c in await stores.commands.leased_to("r1")) == ["cmd_a", "cmd_b"]
    assert await stores.commands.leased_to("r2") == []
