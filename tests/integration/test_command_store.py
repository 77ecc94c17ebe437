"""The SQL command store's queue on SQLite and PostgreSQL: the cap and positions assigned in one
atomic step, the idempotency race, and claims that give every project with a free slot its
turn however many commands other projects have queued."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rdev.bootstrap import Store, build_store
from rdev.config import Settings
from rdev.domain.errors import QueueFull
from rdev.domain.models import (
    AuditEntry,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    OutputLimitAction,
    Priority,
)
from rdev.ports import AuditFilter, CommandFilter, StartNow

T0 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
_ids = itertools.count(1)


def make_command(
    project: str = "p",
    *,
    at: datetime = T0,
    priority: Priority = Priority.NORMAL,
    key_id: str | None = None,
    idempotency_key: str | None = None,
) -> Command:
    return Command(
        id=f"cmd_{next(_ids):024d}",
        project_id=project,
        kind=CommandKind.SHELL,
        argv=("true",),
        status=CommandStatus.QUEUED,
        priority=priority,
        created_at=at,
        timeout_seconds=60,
        key_id=key_id,
        idempotency_key=idempotency_key,
        request_hash="h" if idempotency_key else None,
    )


def first_event_of(cmd: Command):  # type: ignore[no-untyped-def]
    return lambda position: Event(
        cmd.id, 1, EventType.STATUS, {"status": "queued", "queue_position": position}
    )


async def enqueue(store: Store, cmd: Command, max_queue: int = 100):  # type: ignore[no-untyped-def]
    return await store.commands.enqueue(cmd, first_event_of(cmd), max_queue=max_queue)


async def seed(store: Store, cmd: Command) -> None:
    await store.commands.add(cmd, first_event_of(cmd)(None))


async def claim(store: Store, slots: int, limits: dict[str, int], owner: str = "r1") -> list[str]:
    claimed = await store.commands.claim(
        owner=owner, lease_until=T0 + timedelta(hours=1), now=T0, slots=slots,
        project_limit=lambda p: limits.get(p, 0),
    )  # fmt: skip
    return [c.id for c in claimed]


# the cap and positions


async def test_the_cap_holds_under_fifty_concurrent_enqueues(store: Store) -> None:
    commands = [make_command(at=T0 + timedelta(microseconds=50 - i)) for i in range(50)]
    results = await asyncio.gather(
        *(enqueue(store, c, max_queue=10) for c in commands), return_exceptions=True
    )
    assert Counter(type(r).__name__ for r in results) == {"Enqueued": 10, "QueueFull": 40}
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert sorted(r.position for r in accepted) == list(range(1, 11))
    assert await store.commands.count_queued("p") == 10
    by_position = [r.command.id for r in sorted(accepted, key=lambda r: r.position)]
    assert await claim(store, 10, {"p": 10}) == by_position  # claims follow the positions


async def test_positions_are_distinct_even_when_the_clock_repeats_or_goes_back(
    store: Store,
) -> None:
    stamps = [T0, T0, T0, T0 - timedelta(seconds=5), T0 + timedelta(microseconds=1)]
    results = [await enqueue(store, make_command(at=at)) for at in stamps]
    assert [r.position for r in results] == [1, 2, 3, 4, 5]
    assert [r.events[0].data["queue_position"] for r in results] == [1, 2, 3, 4, 5]
    created = [r.command.created_at for r in results]
    assert created == sorted(created) and len(set(created)) == 5
    for r in results:  # what was returned is what was stored
        assert await store.commands.queue_position(r.command) == r.position
    assert await claim(store, 5, {"p": 5}) == [r.command.id for r in results]


async def test_higher_priority_joins_ahead_and_the_cap_counts_every_priority(
    store: Store,
) -> None:
    normal = [await enqueue(store, make_command(), max_queue=4) for _ in range(2)]
    low = await enqueue(store, make_command(priority=Priority.LOW), max_queue=4)
    high = await enqueue(store, make_command(priority=Priority.HIGH), max_queue=4)
    assert [r.position for r in normal] + [low.position, high.position] == [1, 2, 3, 1]
    with pytest.raises(QueueFull):
        await enqueue(store, make_command(priority=Priority.HIGH), max_queue=4)
    other = await enqueue(store, make_command("q"), max_queue=4)  # caps are per project
    assert other.position == 1
    expected = [high.command.id, normal[0].command.id, normal[1].command.id, low.command.id]
    assert await claim(store, 10, {"p": 10, "q": 0}) == expected


async def test_claimed_and_cancelled_commands_free_their_place(store: Store) -> None:
    first = [await enqueue(store, make_command(), max_queue=2) for _ in range(2)]
    with pytest.raises(QueueFull):
        await enqueue(store, make_command(), max_queue=2)
    assert await claim(store, 1, {"p": 1}) == [first[0].command.id]
    third = await enqueue(store, make_command(), max_queue=2)
    assert third.position == 2
    final = [Event(first[1].command.id, 2, EventType.COMPLETE, {"status": "cancelled"})]
    assert await store.commands.cancel_queued(first[1].command.id, at=T0, final=final)
    assert (await enqueue(store, make_command(), max_queue=2)).position == 2


# the idempotency race


async def test_concurrent_enqueues_with_one_idempotency_key_create_one_command(
    store: Store,
) -> None:
    commands = [make_command(key_id="key000000001", idempotency_key="k1") for _ in range(20)]
    results = await asyncio.gather(*(enqueue(store, c, max_queue=5) for c in commands))
    assert sum(r.created for r in results) == 1
    winner = next(r for r in results if r.created)
    assert {r.command.id for r in results} == {winner.command.id}
    assert all(r.events == () for r in results if not r.created)
    assert await store.commands.count_queued("p") == 1


async def test_an_idempotent_replay_is_answered_even_when_the_queue_is_full(store: Store) -> None:
    mine = await enqueue(store, make_command(key_id="key000000001", idempotency_key="k1"), 2)
    await enqueue(store, make_command(), max_queue=2)
    again = await enqueue(store, make_command(key_id="key000000001", idempotency_key="k1"), 2)
    assert (again.created, again.command.id) == (False, mine.command.id)
    with pytest.raises(QueueFull):
        await enqueue(store, make_command(key_id="key000000001", idempotency_key="k2"), 2)


async def test_one_idempotency_key_used_for_two_projects_at_once_creates_one_command(
    store: Store,
) -> None:
    """Two projects take two locks: the unique constraint settles it."""
    commands = [
        make_command(project, key_id="key000000001", idempotency_key="k1")
        for project in ("a", "b") * 5
    ]
    results = await asyncio.gather(*(enqueue(store, c) for c in commands))
    assert sum(r.created for r in results) == 1
    assert len({r.command.id for r in results}) == 1


# claims across projects


async def test_a_project_below_its_limit_gets_its_turn_behind_a_thousand_queued_elsewhere(
    store: Store,
) -> None:
    limits = {f"busy{i}": 1 for i in range(4)} | {"idle": 2}
    for i in range(4):  # each busy project runs its one command ...
        await seed(store, make_command(f"busy{i}", at=T0 - timedelta(hours=1)))
    assert len(await claim(store, 4, limits)) == 4
    for n in range(1000):  # ... and has 250 more waiting, all older than idle's
        await seed(store, make_command(f"busy{n % 4}", at=T0 + timedelta(microseconds=n)))
    late = make_command("idle", at=T0 + timedelta(hours=1), priority=Priority.LOW)
    await seed(store, late)
    assert await claim(store, 3, limits) == [late.id]
    assert await claim(store, 3, limits) == []


async def test_claims_take_priority_then_arrival_across_projects_within_each_limit(
    store: Store,
) -> None:
    order = [
        ("a", Priority.NORMAL, 0), ("a", Priority.NORMAL, 1), ("a", Priority.HIGH, 2),
        ("b", Priority.LOW, 3), ("b", Priority.NORMAL, 4), ("c", Priority.NORMAL, 5),
    ]  # fmt: skip
    cmds = {}
    for project, priority, n in order:
        cmds[n] = make_command(project, at=T0 + timedelta(seconds=n), priority=priority)
        await seed(store, cmds[n])
    limits = {"a": 2, "b": 1, "c": 1}
    got = await claim(store, 10, limits)
    assert got == [cmds[2].id, cmds[0].id, cmds[4].id, cmds[5].id]
    assert await claim(store, 10, limits) == []
    assert await claim(store, 1, limits | {"b": 2}) == [cmds[3].id]


async def test_two_stores_claiming_at_once_never_exceed_a_project_limit(db_url: str) -> None:
    """Two replicas' stores on one database: the limit holds across them."""
    stores = [build_store(Settings(database_url=db_url)) for _ in range(2)]
    await stores[0].db.migrate()
    try:
        project = f"shared{next(_ids)}"
        for n in range(30):
            await seed(stores[0], make_command(project, at=T0 + timedelta(microseconds=n)))
        rounds = await asyncio.gather(
            *(claim(stores[i % 2], 3, {project: 4}, owner=f"r{i % 2}") for i in range(10))
        )
        assert sum(len(r) for r in rounds) == 4
        assert len({cid for r in rounds for cid in r}) == 4
    finally:
        for s in stores:
            await s.close()


# the start path: what is written with what (each commit is a WAL flush on PostgreSQL)


async def test_a_claim_writes_each_commands_running_status_in_the_same_transaction(
    store: Store,
) -> None:
    a, b = make_command("p"), make_command("q")
    for cmd in (a, b):
        await enqueue(store, cmd)
    assert sorted(await claim(store, slots=5, limits={"p": 1, "q": 1})) == sorted([a.id, b.id])
    for cmd in (a, b):
        events = await store.events.read(cmd.id, after=0, limit=10)
        assert [(e.seq, e.type, e.data.get("status")) for e in events] == [
            (1, EventType.STATUS, "queued"),
            (2, EventType.STATUS, "running"),
        ]


async def test_a_commands_submit_audit_entry_is_written_with_it_or_not_at_all(
    store: Store,
) -> None:
    def entry(cmd: Command) -> AuditEntry:
        return AuditEntry(
            id=None, at=T0, action="command.submit", actor_key_id="key000000001",
            target=cmd.id, client_ip="127.0.0.1", request_id="req", outcome="ok",
            details={"project": cmd.project_id}, project=cmd.project_id,
        )  # fmt: skip

    kept = make_command()
    await store.commands.enqueue(kept, first_event_of(kept), max_queue=1, audit=entry(kept))
    refused = make_command()
    with pytest.raises(QueueFull):
        await store.commands.enqueue(
            refused, first_event_of(refused), max_queue=1, audit=entry(refused)
        )
    page = await store.audit_log.list(AuditFilter(action="command.submit", limit=10))
    assert [e.target for e in page.items] == [kept.id]


# starting at submission: a command that can start at once is stored running by the submission's
# own transaction (one transaction fewer before its first output), under the same limits


def start_now(limit: int | None, owner: str = "r1") -> StartNow:
    return StartNow(owner=owner, now=T0, lease_until=T0 + timedelta(hours=1), project_limit=limit)


async def submit(store: Store, cmd: Command, limit: int | None, owner: str = "r1"):  # type: ignore[no-untyped-def]
    return await store.commands.enqueue(
        cmd, first_event_of(cmd), max_queue=100, start=start_now(limit, owner)
    )


async def test_a_command_that_can_start_at_once_is_stored_running_with_both_events(
    store: Store,
) -> None:
    cmd = make_command()
    got = await submit(store, cmd, limit=2)
    assert (got.created, got.started, got.position) == (True, True, 1)
    assert (got.command.status, got.command.lease_owner) == (CommandStatus.RUNNING, "r1")
    stored = await store.commands.get(cmd.id)
    assert stored is not None
    assert (stored.status, stored.started_at, stored.lease_owner, stored.lease_expires_at) == (
        CommandStatus.RUNNING, T0, "r1", T0 + timedelta(hours=1),
    )  # fmt: skip
    events = await store.events.read(cmd.id, after=0, limit=10)
    assert [(e.seq, e.data) for e in events] == [
        (1, {"status": "queued", "queue_position": 1}),
        (2, {"status": "running"}),
    ]
    assert list(got.events) == events
    assert await claim(store, 10, {"p": 2}) == []  # nothing left to claim
    assert await store.commands.leased_to("r1") == [stored]


@pytest.mark.parametrize(
    ("running", "queued", "limit", "priority", "starts"),
    [
        (0, 0, 1, Priority.NORMAL, True),
        (1, 0, 2, Priority.NORMAL, True),
        (1, 0, 1, Priority.NORMAL, False),  # at its limit
        (3, 0, 2, Priority.NORMAL, False),  # over it (the limit was lowered)
        (0, 0, 0, Priority.NORMAL, False),  # a limit of 0: nothing runs
        (0, 0, None, Priority.NORMAL, False),  # no limit known: the project takes nothing now
        (0, 1, 5, Priority.NORMAL, False),  # one of its rank queued ahead: it waits its turn
        (0, 1, 5, Priority.LOW, False),
        (0, 1, 5, Priority.HIGH, True),  # ahead of everything queued: the next claim's pick
    ],
)
async def test_a_command_starts_at_once_only_when_the_next_claim_would_take_it(
    store: Store,
    running: int,
    queued: int,
    limit: int | None,
    priority: Priority,
    starts: bool,
) -> None:
    for _ in range(running):
        await seed(store, make_command())
    if running:
        assert len(await claim(store, running, {"p": running})) == running
    for _ in range(queued):
        await enqueue(store, make_command())
    cmd = make_command(priority=priority)
    got = await submit(store, cmd, limit)
    assert got.started is starts
    assert got.position == (1 if priority is Priority.HIGH else queued + 1)
    stored = await store.commands.get(cmd.id)
    assert stored is not None
    assert stored.status is (CommandStatus.RUNNING if starts else CommandStatus.QUEUED)
    assert [e.seq for e in await store.events.read(cmd.id, after=0, limit=10)] == (
        [1, 2] if starts else [1]
    )


async def test_other_projects_neither_block_nor_are_blocked_by_a_start_at_once(
    store: Store,
) -> None:
    busy = [await submit(store, make_command("busy"), limit=1) for _ in range(3)]
    assert [r.started for r in busy] == [True, False, False]
    free = await submit(store, make_command("free"), limit=1)
    assert free.started
    assert await claim(store, 10, {"busy": 1, "free": 1}) == []


async def test_submissions_and_claims_of_two_replicas_at_once_never_exceed_a_limit(
    db_url: str,
) -> None:
    """Two replicas' stores on one database: 50 submissions that may each start at once, mixed
    with claims, from both. The project's limit holds across all of them, every command is
    either running or queued at a distinct position, and claims take the queue in order."""
    stores = [build_store(Settings(database_url=db_url)) for _ in range(2)]
    await stores[0].db.migrate()
    try:
        project, limit = f"burst{next(_ids)}", 3
        cmds = [make_command(project) for _ in range(50)]
        results = await asyncio.gather(
            *(submit(stores[i % 2], c, limit, owner=f"r{i % 2}") for i, c in enumerate(cmds)),
            *(claim(stores[i % 2], 2, {project: limit}, owner=f"r{i % 2}") for i in range(6)),
        )
        submitted = results[:50]
        claimed = [cid for r in results[50:] for cid in r]  # type: ignore[union-attr]
        started = [r.command.id for r in submitted if r.started]  # type: ignore[union-attr]
        assert len(started) + len(claimed) == limit
        queued = [r for r in submitted if not r.started]  # type: ignore[union-attr]
        assert sorted(r.position for r in queued) == list(range(1, len(queued) + 1))
        running = await stores[0].commands.page(
            CommandFilter(project_id=project, status=CommandStatus.RUNNING, limit=100)
        )
        assert sorted(x.id for x in running.items) == sorted(started + claimed)
        waiting = await stores[1].commands.page(
            CommandFilter(project_id=project, status=CommandStatus.QUEUED, limit=100)
        )
        by_position = sorted(queued, key=lambda r: r.position)
        assert {x.id for x in waiting.items} == {r.command.id for r in by_position}
        # none left the queue yet, so each position stands, and claims follow them
        for r in by_position[:5]:
            assert await stores[0].commands.queue_position(r.command) == r.position
        assert await claim(stores[1], 5, {project: limit + 5}) == [
            r.command.id for r in by_position[:5]
        ]
    finally:
        for s in stores:
            await s.close()


async def test_a_submission_stores_every_field_on_both_databases(store: Store) -> None:
    """On PostgreSQL the row is inserted by a statement built once with bound columns: what was
    submitted is what is read back, its audit entry included."""
    cmd = replace(
        make_command(key_id="key000000001", idempotency_key="k-fields"),
        argv=("sh", "-c", "echo 'ü' \"$X\""),
        cwd="sub/dir",
        env={"X": "1", "Y": "ü"},
        timeout_seconds=77,
        priority=Priority.HIGH,
        on_output_limit=OutputLimitAction.KILL,
    )
    entry = AuditEntry(
        id=None, at=T0, action="command.submit", actor_key_id="key000000001", target=cmd.id,
        client_ip="127.0.0.1", request_id="req-1", outcome="ok",
        details={"argv": list(cmd.argv), "n": 1}, project=cmd.project_id,
    )  # fmt: skip
    got = await store.commands.enqueue(cmd, first_event_of(cmd), max_queue=5, audit=entry)
    stored = await store.commands.get(cmd.id)
    assert stored == got.command == replace(cmd, status=CommandStatus.QUEUED)
    page = await store.audit_log.list(AuditFilter(action="command.submit", limit=10))
    assert [(e.target, e.details, e.request_id) for e in page.items] == [
        (cmd.id, {"argv": list(cmd.argv), "n": 1}, "req-1")
    ]


def test_a_row_and_its_prebuilt_statement_cannot_drift_apart() -> None:
    from rdev.adapters.sql.commands import _COMMAND_COLUMNS, _prefixed

    row = dict.fromkeys(_COMMAND_COLUMNS)
    assert set(_prefixed("c_", row, _COMMAND_COLUMNS)) == {"c_" + n for n in _COMMAND_COLUMNS}
    with pytest.raises(AssertionError):
        _prefixed("c_", row | {"new_column": 1}, _COMMAND_COLUMNS)
