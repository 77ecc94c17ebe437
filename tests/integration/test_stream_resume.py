"""Where a resumed stream may start (StreamHub.resume), against the real event log on SQLite and
PostgreSQL. The policy: a point the log cannot have produced is refused; a client that has
`complete` is told there is nothing more; otherwise the stream replays after the point. The log
decides, not the command's row, which may be stale by the time the log is read."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rdev.adapters.bus.memory import InProcessBus
from rdev.bootstrap import Store
from rdev.domain.errors import InvalidEventId
from rdev.domain.models import Command, CommandKind, CommandStatus, Event, EventType, Priority
from rdev.runtime.streams import Resume, StreamHub

T0 = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
_ids = itertools.count(1)
TERMINAL = [s for s in CommandStatus if s not in (CommandStatus.QUEUED, CommandStatus.RUNNING)]


def command(status: CommandStatus = CommandStatus.RUNNING) -> Command:
    return Command(
        id=f"cmd_{next(_ids):012d}resume000000",
        project_id="p",
        kind=CommandKind.SHELL,
        argv=("true",),
        status=status,
        priority=Priority.NORMAL,
        created_at=T0,
        timeout_seconds=60,
        started_at=T0,
        finished_at=T0 + timedelta(milliseconds=1500),
        exit_code=7,
    )


async def write(store: Store, cmd: Command, events: int, *, complete: bool) -> int:
    """`events` numbered events, the last a `complete` when asked; returns the last seq."""
    batch = [Event(cmd.id, n, EventType.OUTPUT, {"line": str(n)}) for n in range(1, events)]
    last = EventType.COMPLETE if complete else EventType.OUTPUT
    batch.append(Event(cmd.id, events, last, {"status": "failed"}))
    for part in (batch[:2], batch[2:]):  # two rows, as the writer's batches would be
        if part:
            await store.events.append(part)
    return events


def hub(store: Store) -> StreamHub:
    return StreamHub(store.events, InProcessBus(), replica="r")


async def test_a_running_command_resumes_anywhere_in_its_log_and_nowhere_past_it(
    store: Store,
) -> None:
    cmd = command()
    last = await write(store, cmd, 5, complete=False)
    h = hub(store)
    for after in range(last + 1):
        assert await h.resume(cmd, after) == Resume(after=after)
    for after in (last + 1, last + 2, 10**12 - 1, None):
        with pytest.raises(InvalidEventId) as err:
            await h.resume(cmd, after)
        assert err.value.details["last_seq"] == last


@pytest.mark.parametrize("row", [CommandStatus.RUNNING, *TERMINAL])
async def test_a_log_that_ends_with_complete_ends_the_stream_whatever_the_row_says(
    store: Store, row: CommandStatus
) -> None:
    """A row read as running before the command finished is stale: the log has `complete`."""
    cmd = command(row)
    last = await write(store, cmd, 6, complete=True)
    h = hub(store)
    for after in range(last):
        assert await h.resume(cmd, after) == Resume(after=after)
    assert await h.resume(cmd, last) == Resume(ended=True)
    assert await h.resume(cmd, None) == Resume(ended=True)
    for after in (last + 1, 9999):
        with pytest.raises(InvalidEventId):
            await h.resume(cmd, after)


@pytest.mark.parametrize("status", TERMINAL)
async def test_a_finished_command_with_a_pruned_log_ends_with_a_complete_from_its_row(
    store: Store, status: CommandStatus
) -> None:
    cmd = command(status)
    h = hub(store)
    for after in (0, 1, 5, 10**6):
        start = await h.resume(cmd, after)
        assert start.final is not None and not start.ended
        assert start.final.type is EventType.COMPLETE
        assert start.final.data == {"status": status.value, "exit_code": 7, "duration_ms": 1500}
    assert await h.resume(cmd, None) == Resume(ended=True)
    never_started = replace(cmd, started_at=None)
    final = (await h.resume(never_started, 0)).final
    assert final is not None and final.data["duration_ms"] == 0


async def test_a_live_command_without_events_only_starts_from_the_beginning(store: Store) -> None:
    cmd = command(CommandStatus.QUEUED)
    h = hub(store)
    assert await h.resume(cmd, 0) == Resume()
    for after in (1, None):
        with pytest.raises(InvalidEventId):
            await h.resume(cmd, after)
