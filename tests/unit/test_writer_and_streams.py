"""The event writer (sequence numbers, group commit, persist before publish) and stream
subscriptions (replay then tail, de-duplication, gaps re-read from the log, slow consumers,
shutdown), against the twin log on virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from rdev.adapters.bus.memory import InProcessBus
from rdev.domain.errors import DatabaseUnavailable
from rdev.domain.models import Event, EventType, OutputLimitAction
from rdev.runtime.outputcap import OutputCap
from rdev.runtime.streams import HubClosed, SlowConsumer, StreamHub, Subscription
from rdev.runtime.writer import EventWriter
from tests.fakes import MemoryEventLog, VirtualTimeLoop, run_virtual

CMD = "cmd_w"


class SlowLog(MemoryEventLog):
    """Each append takes 10 ms (virtual): writes overlap with new events, as with a database."""

    async def append(self, events: Sequence[Event]) -> None:
        await asyncio.sleep(0.01)
        await super().append(events)


def writer(log: MemoryEventLog, hub: StreamHub, last_seq: int = 0) -> EventWriter:
    cap = OutputCap(max_bytes=10**9, max_events=10**9, action=OutputLimitAction.TRUNCATE)
    return EventWriter(CMD, last_seq=last_seq, log=log, hub=hub, cap=cap)


def out(line: str) -> tuple[str, bool, int]:
    return (line, True, len(line) + 1)


def test_events_get_gap_free_numbers_and_writes_are_grouped() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = SlowLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        w = writer(log, hub)
        await w.add(EventType.STATUS, {"status": "running"})
        for i in range(100):
            w.output_lines("stdout", [out(f"line {i}")])
        w.message({"type": "assistant"})
        await w.flush()
        events = log.events[CMD]
        assert [e.seq for e in events] == list(range(1, 103))
        assert events[1].data == {"line": "line 0", "stream": "stdout"}
        assert events[-1].type is EventType.MESSAGE
        assert log.appends <= 3  # the first event at once, the rest together
        for e in events:
            assert e.encoded is not None

    run_virtual(main)


def test_readers_see_an_event_only_once_it_is_in_the_log() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = SlowLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        sub = hub.subscribe(CMD, after=0)
        assert await sub.next_batch(1) == []  # caught up with an empty log
        w = writer(log, hub)
        w.output_lines("stdout", [out("a"), out("b")])
        batch: list[Event] | None = []
        while not batch:  # [] is a wake-up: read again
            batch = await sub.next_batch(5)
            # whatever a reader is given is in the log already (persisted, then published)
            assert batch is None or len(log.events.get(CMD, [])) >= len(batch)
        assert [e.seq for e in batch] == [1, 2]
        await w.flush()
        sub.close()

    run_virtual(main)


def test_a_late_reader_replays_the_log_then_follows_live_without_repeats() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = MemoryEventLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        w = writer(log, hub)
        w.output_lines("stdout", [out(str(i)) for i in range(5)])
        await w.flush()
        sub = hub.subscribe(CMD, after=2)
        got: list[int] = []
        replay = await sub.next_batch(1)
        assert replay is not None
        got += [e.seq for e in replay]
        w.output_lines("stdout", [out("5"), out("6")])
        await w.flush()
        while len(got) < 7 - 2:
            batch = await sub.next_batch(1)
            got += [e.seq for e in batch or []]
        assert got == [3, 4, 5, 6, 7]
        sub.close()
        assert hub.readers(CMD) == 0

    run_virtual(main)


def test_a_gap_in_live_events_is_filled_from_the_log() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = MemoryEventLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        sub = hub.subscribe(CMD, after=0)
        assert await sub.next_batch(1) == []
        first = [Event(CMD, 1, EventType.OUTPUT, {"line": "1", "stream": "stdout"})]
        second = [Event(CMD, 2, EventType.OUTPUT, {"line": "2", "stream": "stdout"})]
        await log.append(first)  # stored, but published by another replica: not seen here
        await log.append(second)
        await hub.publish(second)
        assert await sub.next_batch(1) == []  # the gap is noticed ...
        batch = await sub.next_batch(1)  # ... and read from the log
        assert batch is not None and [e.seq for e in batch] == [1, 2]
        sub.close()

    run_virtual(main)


def test_a_reader_that_falls_behind_is_ended_as_slow() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = MemoryEventLog()
        hub = StreamHub(log, InProcessBus(), replica="r1", buffer_events=3)
        sub = hub.subscribe(CMD, after=0)
        assert await sub.next_batch(1) == []
        for seq in range(1, 6):
            batch = [Event(CMD, seq, EventType.OUTPUT, {"line": "x", "stream": "stdout"})]
            await log.append(batch)
            await hub.publish(batch)
        with pytest.raises(SlowConsumer):
            await sub.next_batch(1)
        sub.close()

    run_virtual(main)


def test_an_idle_reader_gets_a_heartbeat_and_shutdown_ends_it() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = MemoryEventLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        sub = hub.subscribe(CMD, after=0)
        assert await sub.next_batch(1) == []
        started = loop.time()
        assert await sub.next_batch(15) is None  # nothing for 15 s: a heartbeat
        assert 15 <= loop.time() - started < 15.2
        waiting = loop.create_task(sub.next_batch(60))
        await asyncio.sleep(0)
        hub.shutdown()
        assert await waiting == []
        with pytest.raises(HubClosed):
            await sub.next_batch(60)
        assert loop.time() - started < 16  # at once, not after a minute

    run_virtual(main)


class SlowReadLog(MemoryEventLog):
    """Each read takes 10 ms (virtual) and answers from the log as it was when it began."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.fail_reads = 0

    async def read(
        self, command_id: str, *, after: int, limit: int, decode: bool = True
    ) -> list[Event]:
        self.reads += 1
        snapshot = list(self.events.get(command_id, []))
        await asyncio.sleep(0.01)
        if self.fail_reads:
            self.fail_reads -= 1
            raise DatabaseUnavailable("database unreachable")
        return snapshot[after:][:limit]


def _line(seq: int) -> Event:
    return Event(CMD, seq, EventType.OUTPUT, {"line": str(seq), "stream": "stdout"})


async def _collect(sub: Subscription, upto: int) -> list[int]:
    got: list[int] = []
    for _ in range(20):  # (a lost event would otherwise be waited for forever)
        batch = await sub.next_batch(1)
        got += [e.seq for e in batch or []]
        if got and got[-1] >= upto:
            break
    return got


@pytest.mark.parametrize("published", ["during the read", "after the read, before next_batch"])
def test_a_prefetched_first_read_misses_nothing_published_around_it(published: str) -> None:
    """A new stream reads the log's first page while the command is read: an event stored and
    published meanwhile (only marked, not buffered, while the reader catches up) still arrives,
    in order, once."""

    async def main(loop: VirtualTimeLoop) -> None:
        log = SlowReadLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        await log.append([_line(1)])
        sub = hub.subscribe(CMD, after=0)
        sub.prefetch()
        await asyncio.sleep(0.005 if published == "during the read" else 0.02)
        await log.append([_line(2)])
        await hub.publish([_line(2)])
        await asyncio.sleep(0.02)  # the caller's own read
        assert await _collect(sub, 2) == [1, 2]
        await log.append([_line(3)])
        await hub.publish([_line(3)])
        assert await _collect(sub, 3) == [3]  # live from here
        sub.close()

    run_virtual(main)


def test_a_prefetch_is_read_once_and_a_closed_stream_cancels_its_own() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = SlowReadLog()
        hub = StreamHub(log, InProcessBus(), replica="r1")
        await log.append([_line(1)])
        sub = hub.subscribe(CMD, after=0)
        sub.prefetch()
        sub.prefetch()  # a second call starts no second read
        assert await _collect(sub, 1) == [1]
        assert log.reads == 1
        sub.close()
        gone = hub.subscribe(CMD, after=0)
        gone.prefetch()
        gone.close()  # the caller was refused (not its command): the read is dropped
        await asyncio.sleep(0.05)
        assert hub.readers(CMD) == 0 and log.reads == 1  # cancelled before it began

    run_virtual(main)


def test_a_prefetch_that_fails_is_a_heartbeat_then_read_again() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        log = SlowReadLog()
        log.fail_reads = 1
        hub = StreamHub(log, InProcessBus(), replica="r1")
        await log.append([_line(1)])
        sub = hub.subscribe(CMD, after=0)
        sub.prefetch()
        assert await sub.next_batch(0.5) is None  # the database was away: the stream stays
        assert await _collect(sub, 1) == [1]
        sub.close()
        closed = hub.subscribe(CMD, after=0)
        log.fail_reads = 1
        closed.prefetch()
        await asyncio.sleep(0.05)  # fails with nobody reading it: no "never retrieved" error
        closed.close()

    run_virtual(main)
