"""One command's event writer: assigns sequence numbers, enforces the output cap, and writes in
batches (persist, then publish) so a fast command costs one transaction per batch, not per line."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rdev.domain.models import Event, EventType
from rdev.ports import EventLog
from rdev.runtime.streams import StreamHub

BATCH_EVENTS = 500
FLUSH_SECONDS = 0.02


class EventWriter:
    def __init__(
        self,
        command_id: str,
        *,
        last_seq: int,
        log: EventLog,
        hub: StreamHub,
        max_output_bytes: int,
    ) -> None:
        self.command_id = command_id
        self.seq = last_seq
        self._log = log
        self._hub = hub
        self._max_output = max_output_bytes
        self.output_bytes = 0
        self.truncated = False
        self._pending: list[Event] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None

    def event(self, type_: EventType, data: dict[str, Any]) -> Event:
        self.seq += 1
        return Event(self.command_id, self.seq, type_, data)

    async def add(self, type_: EventType, data: dict[str, Any]) -> None:
        self._pending.append(self.event(type_, data))
        if len(self._pending) >= BATCH_EVENTS:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_soon)

    async def output(self, line: str, stream: str, *, complete: bool) -> None:
        size = len(line.encode("utf-8", "replace")) + (1 if complete else 0)
        self.output_bytes += size
        if self.truncated:
            return
        if self.output_bytes > self._max_output:
            self.truncated = True
            await self.add(EventType.TRUNCATED, {"limit_bytes": self._max_output})
            return
        data: dict[str, Any] = {"line": line, "stream": stream}
        if not complete:
            data["partial"] = True
        await self.add(EventType.OUTPUT, data)

    async def message(self, obj: dict[str, Any], raw_size: int) -> None:
        self.output_bytes += raw_size
        if self.truncated:
            return
        if self.output_bytes > self._max_output:
            self.truncated = True
            await self.add(EventType.TRUNCATED, {"limit_bytes": self._max_output})
            return
        await self.add(EventType.MESSAGE, obj)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch, self._pending = self._pending, []
            if batch:
                await self._log.append(batch)
                await self._hub.publish(batch)

    async def close(self) -> None:
        await self.flush()
        if self._flush_task is not None:
            with contextlib.suppress(Exception):
                await self._flush_task
