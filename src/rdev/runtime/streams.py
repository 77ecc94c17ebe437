"""The stream hub: events are persisted, then published. A reader replays from the log, then
tails live events, de-duplicating by sequence number, so reconnecting (to any replica) never
loses or repeats an event.

A subscription buffers at most `buffer_events` live events (plus one writer batch); past that it
is marked slow and the reader ends with SLOW_CONSUMER (it resumes from the log). While a reader
is catching up from the log it buffers nothing at all: it is only told to read again.

A log read that fails because the database is away does not end the stream: the reader waits a
heartbeat (or until events are published again) and reads again, so an open stream survives an
outage and delivers what was written meanwhile once the database is back.

Where a resumed stream may start is decided against the log (`StreamHub.resume`): an id the
log cannot have produced is refused, and a client that has `complete` is told there is no more,
so every stream either ends with `complete` or is refused, and none waits for events that will
never come."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from rdev.domain.errors import DatabaseUnavailable, InvalidEventId
from rdev.domain.lifecycle import is_terminal
from rdev.domain.models import Command, Event, EventType
from rdev.ports import Bus, EventLog

EVENTS_TOPIC = "events"
_PAGE = 1000


class SlowConsumer(Exception):
    pass


class HubClosed(Exception):
    """The replica is shutting down; readers should reconnect (to another replica)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a command's stream starts."""

    after: int = 0  # replay the log after this sequence number, then tail
    ended: bool = False  # the client already has `complete`: there is nothing to send
    final: Event | None = None  # the log was pruned: this `complete` is all that is left


class Alarms:
    """Resolves waiting futures when their time is up, rounded up to the next RESOLUTION tick:
    one loop timer per tick that has waiters rather than one per waiter, so ten thousand idle
    streams share a few hundred timers."""

    RESOLUTION = 0.05

    def __init__(self) -> None:
        self._ticks: dict[int, set[asyncio.Future[None]]] = {}

    def add(self, waiter: asyncio.Future[None], seconds: float) -> int:
        """Resolve `waiter` (with None) in `seconds` (to RESOLUTION later); returns its tick."""
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + seconds) / self.RESOLUTION)
        waiters = self._ticks.get(tick)
        if waiters is None:
            waiters = self._ticks[tick] = set()
            loop.call_at(tick * self.RESOLUTION, self._ring, tick)
        waiters.add(waiter)
        return tick

    def discard(self, tick: int, waiter: asyncio.Future[None]) -> None:
        waiters = self._ticks.get(tick)
        if waiters is not None:
            waiters.discard(waiter)

    def _ring(self, tick: int) -> None:
        for waiter in self._ticks.pop(tick, ()):
            if not waiter.done():
                waiter.set_result(None)


def _retrieved(task: asyncio.Task[list[Event]]) -> None:
    """A prefetch whose stream closed before reading it: its error was nobody's to hear."""
    if not task.cancelled():
        task.exception()


class Subscription:
    """One reader's place in one command's events. Ten thousand idle readers are ten thousand of
    these, so it stays small: a list for the buffer and no asyncio.Event (a deque each); the
    reader's future exists only while it waits."""

    __slots__ = (
        "_hub",
        "_prefetch",
        "_waiter",
        "buffer",
        "catching_up",
        "command_id",
        "dirty",
        "last",
        "limit",
        "overflowed",
    )

    def __init__(self, hub: StreamHub, command_id: str, after: int, limit: int) -> None:
        self._hub = hub
        self._waiter: asyncio.Future[None] | None = None
        self._prefetch: asyncio.Task[list[Event]] | None = None
        self.command_id = command_id
        self.last = after
        self.limit = limit
        self.buffer: list[Event] = []
        self.catching_up = True
        self.dirty = False
        self.overflowed = False

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer(self, events: Sequence[Event]) -> None:
        if self.catching_up:
            self.dirty = True
        elif len(self.buffer) >= self.limit:
            # A full buffer the reader has not taken: it is the reader that is slow, not the
            # batch that is large (so the bound is `limit` events plus one batch).
            self.overflowed = True
            self.buffer.clear()
        else:
            self.buffer.extend(events)
        self.wake()

    def poke(self) -> None:
        self.dirty = True
        self.wake()

    def prefetch(self) -> None:
        """Begin the first read of the log now, alongside whatever the caller awaits next
        (the command's own read, for a new stream): one round trip fewer before its first
        events. Anything published after this point marks the subscription dirty as usual."""
        if self._prefetch is None and self.catching_up:
            self.dirty = False
            self._prefetch = asyncio.get_running_loop().create_task(self._read_log())
            self._prefetch.add_done_callback(_retrieved)

    async def _read_log(self) -> list[Event]:
        events = await self._hub.log.read(
            self.command_id, after=self.last, limit=_PAGE, decode=False
        )
        if events:
            self.last = events[-1].seq
        return events

    async def next_batch(self, wait_seconds: float) -> list[Event] | None:
        """The next events in order; [] when there is nothing yet and None on timeout."""
        if self._hub.closing:
            raise HubClosed
        if self.overflowed:
            raise SlowConsumer
        if self.catching_up or self.dirty:
            prefetched, self._prefetch = self._prefetch, None
            if prefetched is None:
                self.dirty = False  # (a prefetch cleared it when it began to read)
            try:
                events = await (self._read_log() if prefetched is None else prefetched)
            except DatabaseUnavailable:
                self.dirty = True  # read again next time
                await self._wait(wait_seconds)
                return None  # a heartbeat: the stream stays open
            head = self._hub.head(self.command_id)  # 0: nothing published since we joined
            if (head and self.last >= head) or (len(events) < _PAGE and not self.dirty):
                # read up to everything published (or to the log's end with nothing published
                # meanwhile): from here on, live events alone are complete
                self.catching_up = False
                self.dirty = False
                self.buffer.clear()  # anything here is already in the log we just read
            return events
        if not self.buffer:
            await self._wait(wait_seconds)
            quiet = not (self.buffer or self.dirty or self.overflowed or self._hub.closing)
            return None if quiet else []
        out = [e for e in self.buffer if e.seq > self.last]
        self.buffer.clear()
        if out and out[0].seq != self.last + 1:
            self.dirty = True  # a gap: the log has what we missed
            return []
        if out:
            self.last = out[-1].seq
        return out

    async def _wait(self, seconds: float) -> None:
        """Until woken (events, a poke, shutdown) or `seconds` have passed."""
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        # an alarm rather than wait_for or a timer each: no extra task or timer per idle stream
        tick = self._hub.alarms.add(waiter, seconds)
        try:
            await waiter
        finally:
            self._hub.alarms.discard(tick, waiter)
            self._waiter = None

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.cancel()
            self._prefetch = None
        self._hub._remove(self)


class StreamHub:
    def __init__(self, log: EventLog, bus: Bus, *, replica: str, buffer_events: int = 1000) -> None:
        self.log = log
        self._bus = bus
        self._replica = replica
        self._buffer_events = buffer_events
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._heads: dict[str, int] = {}
        self.alarms = Alarms()
        self.closing = False
        bus.subscribe(EVENTS_TOPIC, self._on_remote)

    def readers(self, command_id: str) -> int:
        """How many streams here follow a command."""
        return len(self._subs.get(command_id, ()))

    def head(self, command_id: str) -> int:
        """The last sequence number published here for a command that has readers (0: none)."""
        return self._heads.get(command_id, 0)

    async def publish(self, events: Sequence[Event]) -> None:
        """Call only after `events` are durable."""
        if not events:
            return
        command_id = events[0].command_id
        if command_id in self._subs:
            self._heads[command_id] = events[-1].seq
        for sub in self._subs.get(command_id, ()):
            sub.offer(events)
        await self._bus.publish(EVENTS_TOPIC, f"{self._replica} {command_id} {events[-1].seq}")

    def poke(self, command_id: str) -> None:
        """Have this replica's readers of a command re-read its log (its events were stored
        but not published here)."""
        for sub in self._subs.get(command_id, ()):
            sub.poke()

    def shutdown(self) -> None:
        """End every open stream (each reader gets a retry hint and resumes elsewhere)."""
        self.closing = True
        for subs in self._subs.values():
            for sub in subs:
                sub.wake()

    async def resume(self, command: Command, after: int | None) -> Resume:
        """Check a resume point against the log. `after` is the sequence number the client has
        (None: it has `complete`). Events are durable before they are published, so an event
        any reader on any replica has seen is in the log: a point past the log's last event
        was never sent and is refused, whether the command runs or has finished. The decision
        reads the log's last event, not the command's status, so a command finishing meanwhile
        cannot leave a stream waiting after its `complete`."""
        if after == 0 and not is_terminal(command.status):
            return Resume()  # a fresh stream of a live command: nothing to check
        last = await self.log.last_event(command.id)
        if last is None:  # a pruned log: only the command's row is left
            if not is_terminal(command.status):
                return Resume() if after == 0 else _ahead(after, 0)
            return Resume(ended=True) if after is None else Resume(final=_complete(command))
        done = last.type is EventType.COMPLETE
        if not done and is_terminal(command.status):
            # a finished command whose log has lost its end (pruned in part, or written before
            # the terminal events were transactional): end with a `complete` from its row
            # rather than wait for one that will never come
            return Resume(ended=True) if after is None else Resume(final=_complete(command))
        if after is None:
            return Resume(ended=True) if done else _ahead(after, last.seq)
        if after > last.seq:
            _ahead(after, last.seq)
        return Resume(ended=True) if done and after == last.seq else Resume(after=after)

    def subscribe(self, command_id: str, *, after: int) -> Subscription:
        sub = Subscription(self, command_id, after, self._buffer_events)
        self._subs[command_id].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.command_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.command_id]
                self._heads.pop(sub.command_id, None)

    def _on_remote(self, payload: str) -> None:
        if payload == "*":
            for subs in self._subs.values():
                for sub in subs:
                    sub.poke()
            return
        replica, command_id, _seq = payload.split(" ", 2)
        if replica == self._replica:
            return
        for sub in self._subs.get(command_id, ()):
            sub.poke()


def _ahead(after: int | None, last_seq: int) -> NoReturn:
    raise InvalidEventId(
        "Last-Event-ID is ahead of this stream's events",
        details={"after": "final" if after is None else after, "last_seq": last_seq},
    )


def _complete(command: Command) -> Event:
    """The `complete` event of a finished command whose log is gone, from its row."""
    data = {
        "status": command.status.value,
        "exit_code": command.exit_code,
        "duration_ms": command.duration_ms or 0,
    }
    return Event(command.id, 0, EventType.COMPLETE, data)
