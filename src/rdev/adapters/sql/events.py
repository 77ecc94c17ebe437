"""The per-command event log: gap-free sequence numbers, written in batches, read in order."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rdev.adapters.sql.tables import events
from rdev.domain.models import Event, EventType

_OUTPUT_PAGE = 2000


def event_rows(batch: Sequence[Event]) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {
            "command_id": e.command_id,
            "seq": e.seq,
            "type": e.type.value,
            "data": json.dumps(e.data, ensure_ascii=False, separators=(",", ":")),
            "created_at": now,
        }
        for e in batch
    ]


async def insert_events(conn: AsyncConnection, batch: Sequence[Event]) -> None:
    if batch:
        await conn.execute(insert(events), event_rows(batch))


class SqlEventLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, batch: Sequence[Event]) -> None:
        async with self._engine.begin() as conn:
            await insert_events(conn, batch)

    async def read(self, command_id: str, *, after: int, limit: int) -> list[Event]:
        q = (
            select(events.c.seq, events.c.type, events.c.data)
            .where(events.c.command_id == command_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(q)
            return [Event(command_id, r.seq, EventType(r.type), json.loads(r.data)) for r in rows]

    async def last_seq(self, command_id: str) -> int:
        q = select(func.max(events.c.seq)).where(events.c.command_id == command_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(q)).scalar() or 0)

    async def read_output(self, command_id: str) -> AsyncIterator[str]:
        """The command's output text in order (lines with their newlines restored), paged so
        memory stays flat."""
        after = 0
        while True:
            page = await self.read(command_id, after=after, limit=_OUTPUT_PAGE)
            for e in page:
                if e.type is EventType.OUTPUT:
                    yield e.data["line"] if e.data.get("partial") else e.data["line"] + "\n"
            if len(page) < _OUTPUT_PAGE:
                return
            after = page[-1].seq

    async def prune(self, before: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(events).where(events.c.created_at < before))
            return int(result.rowcount or 0)
