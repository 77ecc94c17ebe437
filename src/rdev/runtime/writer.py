"""One command's event writer: assigns sequence numbers, holds the output cap (which decides
what output is stored: outputcap.py), and writes with group commit (persist, then publish).
The first event goes out at once; events that arrive while a write is in flight are written
together by the next one, so a quiet command is not delayed and a fast one costs one write per
batch, not per line. While the database is away the writes wait it out and output is held
within a budget (see runtime/outage.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Any

from rdev.domain.models import Event, EventType
from rdev.ports import EventLog
from rdev.runtime.outage import DEFAULT_BUFFER_BYTES, OutageBuffer
from rdev.runtime.output import Line
from rdev.runtime.outputcap import OutputCap
from rdev.runtime.streams import StreamHub

_OUTPUT = EventType.OUTPUT  # enum attribute access is slow in the per-line loop
MAX_BATCH = 2000  # events per write
MAX_PENDING = 4000  # past this the producer waits for the log (backpressure, bounded memory)


class EventWriter:
    def __init__(
        self,
        command_id: str,
        *,
        last_seq: int,
        log: EventLog,
        hub: StreamHub,
        cap: OutputCap,
        outage_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        self.command_id = command_id
        self.seq = last_seq
        self._log = log
        self._hub = hub
        self.cap = cap
        self._pending: list[Event] = []
        self._writing: asyncio.Task[None] | None = None
        self._progress: asyncio.Future[None] | None = None  # resolved as each batch is written
        self._outage = OutageBuffer(outage_buffer_bytes)

    @property
    def output_bytes(self) -> int:
        return self.cap.total_bytes

    @property
    def truncated(self) -> bool:
        return self.cap.reached

    def event(self, type_: EventType, data: dict[str, Any]) -> Event:
        self.seq += 1
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return Event(self.command_id, self.seq, type_, data, raw)

    async def add(self, type_: EventType, data: dict[str, Any]) -> None:
        self._enqueue(self.event(type_, data))
        await self.backpressure()

    def _enqueue(self, event: Event) -> None:
        if self._outage.active:
            self._close_gap()
        self._pending.append(event)
        self._kick()

    def _kick(self) -> None:
        """Start a write when none is running; one that is running takes the rest itself."""
        if self._writing is None or self._writing.done():
            if self._writing is not None:
                self._writing.result()  # surface a failed write instead of losing events
            self._writing = asyncio.create_task(self._write_all())

    def output_lines(self, stream: str, lines: Iterable[tuple[str, bool, int]]) -> None:
        """Output events for (text, complete, size) lines the cap has let through. Hand-built
        JSON and one hand-off to the writer per chunk: this runs once per line of output."""
        if self._outage.active:
            lines = self._through_outage(lines)
        tail = f',"stream":"{stream}"}}'
        made: list[Event] = []
        seq = self.seq
        for line, complete, _ in lines:
            seq += 1
            raw = '{"line":' + encode_basestring(line) + tail
            if complete:
                data: dict[str, Any] = {"line": line, "stream": stream}
            else:
                data = {"line": line, "stream": stream, "partial": True}
                raw = raw[:-1] + ',"partial":true}'
            made.append(Event(self.command_id, seq, _OUTPUT, data, raw))
        if made:
            self.seq = seq
            self._pending.extend(made)
            self._kick()

    def message(self, obj: dict[str, Any]) -> None:
        if self._outage.active and not self._admitted(_size(obj)):
            return
        self._enqueue(self.event(EventType.MESSAGE, obj))

    async def backpressure(self) -> None:
        """Wait while too much is pending, so a slow log bounds memory instead of growing it
        (to MAX_PENDING plus the batch being written plus one chunk). The wait ends as soon as
        a batch is written and the rest is below the limit: the pipes are read again while the
        next batch is written, so the command and the log overlap instead of taking turns."""
        while len(self._pending) >= MAX_PENDING and not self._outage.down:
            writing = self._writing
            if writing is None or writing.done():
                return
            if self._progress is None or self._progress.done():
                self._progress = asyncio.get_running_loop().create_future()
            await self._outage.settle(writing, self._progress)

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            if not await self._outage.append(self._log, batch):
                self._pending.clear()  # the log was taken over: the command was ended elsewhere
                return
            await self._hub.publish(batch)
            if self._progress is not None and not self._progress.done():
                self._progress.set_result(None)
            if self._outage.active:
                self._close_gap()
            await asyncio.sleep(0)  # an inline (SQLite) append never yields: let readers run
        self._outage.drained()

    def _admitted(self, size: int) -> bool:
        """Whether output of `size` bytes is kept: within the budget while the log is down;
        always once it is back (after the gap, if any, is recorded)."""
        if self._outage.down:
            return self._outage.admit(size)
        self._close_gap()
        return True

    def _through_outage(self, lines: Iterable[Line]) -> list[Line]:
        """The lines kept (see `_admitted`); the cap has already counted every one."""
        return [line for line in lines if self._admitted(line[2])]

    def _close_gap(self) -> None:
        """Record the lines dropped during an outage as one `truncated` event, in their place."""
        gap = self._outage.gap()
        if gap is not None:
            self._pending.append(self.event(EventType.TRUNCATED, gap))
            self._kick()

    async def flush(self) -> None:
        """Wait until everything added so far is durable and published."""
        while self._pending or (self._writing is not None and not self._writing.done()):
            if self._writing is None or self._writing.done():
                self._writing = asyncio.create_task(self._write_all())
            await asyncio.shield(self._writing)
        if self._writing is not None:
            self._writing.result()


def _size(obj: dict[str, Any]) -> int:
    """A message's size in bytes as stored (only measured while the database is away)."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
