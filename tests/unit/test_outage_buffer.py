"""The event writer while its log is down, against an EventLog twin that fails on demand: output
is held within the budget and written in order when the log returns; past the budget lines are
dropped and recorded as one `truncated` gap event in their place; nothing is ever written
twice or out of order, and a log taken over by another writer is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest

from rdev.adapters.bus.memory import InProcessBus
from rdev.domain.errors import Conflict, DatabaseUnavailable
from rdev.domain.models import Event, EventType
from rdev.runtime.outage import OutageBuffer, persist
from rdev.runtime.outputcap import OutputCap
from rdev.runtime.streams import StreamHub
from rdev.runtime.writer import MAX_BATCH, MAX_PENDING, EventWriter
from tests.support import eventually

CMD = "cmd_unit"
LINE = "x" * 99  # 100 bytes with its newline


class FlakyLog:
    """An in-memory EventLog that raises DatabaseUnavailable while `down`, or Conflict once
    `taken` (another writer owns the log); with a `gate`, an append waits for it first."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.down = False
        self.taken = False
        self.failures = 0
        self.gate: asyncio.Event | None = None

    async def append(self, events: Sequence[Event]) -> None:
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            self.failures += 1
            raise DatabaseUnavailable("database unreachable")
        if self.taken:
            raise Conflict("taken")
        assert not self.events or events[0].seq == self.events[-1].seq + 1, "out of order"
        self.events.extend(events)

    async def read(
        self, command_id: str, *, after: int, limit: int, decode: bool = True
    ) -> list[Event]:
        if self.down:
            raise DatabaseUnavailable("database unreachable")
        return [e for e in self.events if e.seq > after][:limit]

    async def last_seq(self, command_id: str) -> int:
        return self.events[-1].seq if self.events else 0

    async def read_output(self, command_id: str) -> AsyncIterator[str]:
        for e in self.events:
            yield e.data.get("line", "")

    async def prune(self, before: datetime) -> int:
        return 0


def _writer(log: FlakyLog, *, buffer_bytes: int = 1 << 20) -> EventWriter:
    hub = StreamHub(log, InProcessBus(), replica="unit")
    return EventWriter(
        CMD, last_seq=0, log=log, hub=hub,
        cap=OutputCap(max_bytes=1 << 30, max_events=1 << 30),
        outage_buffer_bytes=buffer_bytes,
    )  # fmt: skip


def _lines(start: int, count: int) -> list[tuple[str, bool, int]]:
    return [(f"{n:03d}{LINE[3:]}", True, 100) for n in range(start, start + count)]


async def _go_down(log: FlakyLog, writer: EventWriter) -> None:
    """Take the log down and let the writer find out (a failed append)."""
    log.down = True
    await writer.add(EventType.STATUS, {"status": "running"})
    await eventually(lambda: log.failures > 0)


def _check_log(log: FlakyLog) -> None:
    assert [e.seq for e in log.events] == list(range(1, len(log.events) + 1))


def _outputs(log: FlakyLog) -> list[int]:
    return [int(e.data["line"][:3]) for e in log.events if e.type is EventType.OUTPUT]


def _gaps(log: FlakyLog) -> list[tuple[int, dict[str, object]]]:
    return [(e.seq, e.data) for e in log.events if e.type is EventType.TRUNCATED]


async def test_output_while_the_log_is_down_is_held_and_written_in_order_when_it_returns() -> None:
    log = FlakyLog()
    writer = _writer(log)
    await _go_down(log, writer)
    for n in range(0, 100, 10):
        writer.output_lines("stdout", _lines(n, 10))
        await writer.backpressure()
    assert log.events == []
    log.down = False
    await writer.flush()
    _check_log(log)
    assert log.events[0].type is EventType.STATUS
    assert _outputs(log) == list(range(100))
    assert _gaps(log) == []


async def test_output_past_the_budget_is_dropped_and_recorded_as_one_gap_in_its_place() -> None:
    log = FlakyLog()
    writer = _writer(log, buffer_bytes=1000)  # ten lines
    await _go_down(log, writer)
    writer.output_lines("stdout", _lines(0, 30))
    writer.output_lines("stderr", _lines(30, 5))
    log.down = False
    await writer.flush()
    writer.output_lines("stdout", _lines(35, 5))  # after the outage: kept
    await writer.flush()
    _check_log(log)
    assert _outputs(log) == [*range(10), *range(35, 40)]
    [(seq, gap)] = _gaps(log)
    assert gap == {
        "reason": "database_unavailable",
        "dropped_lines": 25,
        "dropped_bytes": 2500,
        "buffer_bytes": 1000,
    }
    assert log.events[seq - 2].data["line"].startswith("009")  # right after the last one held
    assert log.events[seq].data["line"].startswith("035")  # and before the first one after


async def test_a_gap_is_recorded_when_the_log_returns_even_if_the_command_prints_no_more() -> None:
    log = FlakyLog()
    writer = _writer(log, buffer_bytes=250)
    await _go_down(log, writer)
    writer.output_lines("stdout", _lines(0, 4))
    log.down = False
    await eventually(lambda: any(e.type is EventType.TRUNCATED for e in log.events), timeout=10)
    _check_log(log)
    assert _outputs(log) == [0, 1]
    assert _gaps(log)[0][1]["dropped_lines"] == 2


@pytest.mark.parametrize(
    ("limit", "sizes", "kept"),
    [
        (300, [100, 100, 100], [True, True, True]),  # exactly full is within the budget
        (300, [100, 100, 101], [True, True, False]),
        (300, [301], [False]),  # one line larger than the whole budget
        (300, [400, 10], [False, False]),  # after a drop nothing is kept: one gap, one place
        (300, [200, 200, 50], [True, False, False]),
        (300, [0, 0, 300, 0], [True, True, True, True]),  # empty lines cost nothing
        (0, [0, 1], [True, False]),
    ],
)
def test_the_budget_policy(limit: int, sizes: list[int], kept: list[bool]) -> None:
    buffer = OutageBuffer(limit)
    assert [buffer.admit(size) for size in sizes] == kept
    dropped = [size for size, k in zip(sizes, kept, strict=True) if not k]
    assert (buffer.dropped_lines, buffer.dropped_bytes) == (len(dropped), sum(dropped))
    assert buffer.held <= limit


async def test_each_outage_gets_its_own_gap_and_a_fresh_budget() -> None:
    log = FlakyLog()
    writer = _writer(log, buffer_bytes=200)
    for round_ in range(3):
        await _go_down(log, writer)
        log.failures = 0
        writer.output_lines("stdout", _lines(round_ * 10, 5))
        log.down = False
        await writer.flush()
    _check_log(log)
    assert _outputs(log) == [0, 1, 10, 11, 20, 21]
    assert [g["dropped_lines"] for _s, g in _gaps(log)] == [3, 3, 3]


async def test_claude_messages_count_against_the_budget_too() -> None:
    log = FlakyLog()
    writer = _writer(log, buffer_bytes=250)
    await _go_down(log, writer)
    for n in range(5):  # each message is 100 bytes as stored
        writer.message({"type": "assistant", "n": n, "pad": "x" * (100 - 35)})
    log.down = False
    await writer.flush()
    _check_log(log)
    assert [e.data["n"] for e in log.events if e.type is EventType.MESSAGE] == [0, 1]
    assert _gaps(log)[0][1]["dropped_lines"] == 3


async def test_the_producer_is_not_held_back_while_the_log_is_down() -> None:
    """Backpressure waits for a slow log, but not for one that is down: a producer that waited
    would stop reading the process's pipes and stall it; the budget bounds memory instead."""
    log = FlakyLog()
    writer = _writer(log, buffer_bytes=1 << 30)
    await _go_down(log, writer)
    writer.output_lines("stdout", [("y", True, 2)] * (MAX_PENDING + 10))
    await asyncio.wait_for(writer.backpressure(), timeout=2)
    log.down = False
    await writer.flush()
    _check_log(log)
    assert len(log.events) == 1 + MAX_PENDING + 10


async def test_a_producer_already_waiting_is_released_when_the_log_goes_down() -> None:
    log = FlakyLog()
    writer = _writer(log, buffer_bytes=1 << 30)
    log.gate = gate = asyncio.Event()  # a slow log: the producer waits for it
    writer.output_lines("stdout", [("y", True, 2)] * (MAX_PENDING + MAX_BATCH + 10))
    waiting = asyncio.create_task(writer.backpressure())
    await asyncio.sleep(0)
    assert not waiting.done()
    log.down = True
    gate.set()
    await asyncio.wait_for(waiting, timeout=2)
    log.down = False
    await writer.flush()
    _check_log(log)


async def test_a_log_taken_over_by_another_writer_is_left_alone() -> None:
    log = FlakyLog()
    writer = _writer(log)
    writer.output_lines("stdout", _lines(0, 3))
    await writer.flush()
    log.taken = True
    writer.output_lines("stdout", _lines(3, 3))
    await writer.flush()
    log.taken = False  # even if later appends would fit, none is made after a Conflict
    writer.output_lines("stdout", _lines(6, 3))
    await writer.flush()
    assert _outputs(log) == [0, 1, 2]


async def test_persist_retries_only_while_the_database_is_unavailable() -> None:
    calls: list[str] = []

    async def flaky() -> str:
        calls.append("x")
        if len(calls) < 3:
            raise DatabaseUnavailable("down")
        return "ok"

    noticed: list[int] = []
    assert await persist(flaky, on_unavailable=lambda: noticed.append(1)) == "ok"
    assert (len(calls), len(noticed)) == (3, 2)

    async def broken() -> None:
        calls.append("y")
        raise Conflict("not an outage")

    with pytest.raises(Conflict):
        await persist(broken)
    assert calls.count("y") == 1


async def test_a_stream_whose_log_read_fails_stays_open_and_reads_again_later() -> None:
    """A reader catching up when the database goes away gets heartbeats (None), not an error,
    and then every event, in order, once the log is back."""
    log = FlakyLog()
    writer = _writer(log)
    writer.output_lines("stdout", _lines(0, 5))
    await writer.flush()
    hub = StreamHub(log, InProcessBus(), replica="unit")
    sub = hub.subscribe(CMD, after=0)
    log.down = True
    assert await sub.next_batch(0.05) is None
    assert await sub.next_batch(0.05) is None
    log.down = False
    got: list[Event] = []
    while len(got) < 5:
        batch = await sub.next_batch(0.05)
        got += batch or []
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    sub.close()


async def test_a_poke_has_readers_read_the_log_again() -> None:
    log = FlakyLog()
    hub = StreamHub(log, InProcessBus(), replica="unit")
    sub = hub.subscribe(CMD, after=0)
    assert await sub.next_batch(0.05) == []  # caught up: the log is empty
    writer = _writer(log)  # its own hub: this one hears of the events only through a poke
    writer.output_lines("stdout", _lines(0, 2))
    await writer.flush()
    waiting = asyncio.create_task(sub.next_batch(30))
    await asyncio.sleep(0)
    hub.poke(CMD)
    assert await asyncio.wait_for(waiting, timeout=2) == []
    assert [e.seq for e in await sub.next_batch(0.05) or []] == [1, 2]
    sub.close()


class GatedLog(FlakyLog):
    """Each append waits for its own permit: the test lets batches through one at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.permits: asyncio.Queue[None] = asyncio.Queue()
        self.appends = 0

    async def append(self, events: Sequence[Event]) -> None:
        self.appends += 1
        await self.permits.get()
        await super().append(events)


async def test_the_producer_resumes_once_a_batch_is_written_not_once_all_are() -> None:
    """A producer past MAX_PENDING waits for the log, but only until the pending events fall
    below it: waiting for everything pending to be written stopped reading the pipes for
    several round trips per cycle, so the command and the log took turns instead of overlapping
    (on PostgreSQL, a quarter of the throughput)."""
    log = GatedLog()
    writer = _writer(log)
    writer.output_lines("stdout", _lines(0, MAX_PENDING + MAX_BATCH))
    waiting = asyncio.create_task(writer.backpressure())
    await eventually(lambda: log.appends == 1)
    assert not waiting.done()
    log.permits.put_nowait(None)  # the first batch is written; the rest still waits
    await asyncio.wait_for(waiting, timeout=5)
    assert log.appends == 2 and len(log.events) == MAX_BATCH
    for _ in range(4):
        log.permits.put_nowait(None)
    await writer.flush()
    _check_log(log)
    assert len(log.events) == MAX_PENDING + MAX_BATCH


async def test_a_producer_under_the_limit_never_waits() -> None:
    log = GatedLog()
    writer = _writer(log)
    writer.output_lines("stdout", _lines(0, MAX_PENDING - 1))
    await asyncio.wait_for(writer.backpressure(), timeout=5)
    log.permits.put_nowait(None)
    log.permits.put_nowait(None)
    await writer.flush()
    assert len(log.events) == MAX_PENDING - 1
