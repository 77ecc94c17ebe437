"""The per-command event log: gap-free sequence numbers, written in batches (one row per batch,
one `type<TAB>json` line per event), read back in order from any sequence number."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from rdev.adapters.sql.db import Database
from rdev.adapters.sql.tables import events
from rdev.domain.errors import Conflict
from rdev.domain.models import Event, EventType
from rdev.runtime.outputcap import gap_line

_ROWS_PER_READ = 32
_OUTPUT_PAGE = 5000
_NAMES = {t: t.value for t in EventType}  # .value on an enum member is slow in hot loops
_TYPES = {t.value: t for t in EventType}


def encoded(event: Event) -> str:
    if event.encoded is not None:
        return event.encoded
    return json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))


def _body(batch: Sequence[Event]) -> str:
    # JSON never holds a raw newline, so one line per event is unambiguous
    return "\n".join(f"{_NAMES[e.type]}\t{encoded(e)}" for e in batch)


_INSERT = insert(events)
_LAST_ROW = (
    select(events.c.seq_end, events.c.body)
    .where(events.c.command_id == bindparam("b_command"))
    .order_by(events.c.seq_start.desc())
    .limit(1)
)
_PAGE = (
    select(events.c.seq_start, events.c.body)
    .where(events.c.command_id == bindparam("b_command"), events.c.seq_end > bindparam("b_after"))
    .order_by(events.c.seq_start)
    .limit(_ROWS_PER_READ)
)


def insert_events(conn: Connection, batch: Sequence[Event]) -> None:
    if batch:
        row = {
            "command_id": batch[0].command_id,
            "seq_start": batch[0].seq,
            "seq_end": batch[-1].seq,
            "body": _body(batch),
            "created_at": datetime.now(UTC),
        }
        conn.execute(_INSERT, row)


def _decode(
    command_id: str, seq_start: int, body: str, after: int, limit: int, parse: bool
) -> list[Event]:
    """Up to `limit` events of one row after `after`, without touching the lines before it."""
    lines = body.split("\n")
    skip = max(0, after + 1 - seq_start)
    out = []
    for seq, line in enumerate(lines[skip : skip + limit], seq_start + skip):
        type_, _, raw = line.partition("\t")
        out.append(Event(command_id, seq, _TYPES[type_], json.loads(raw) if parse else {}, raw))
    return out


def _read(conn: Connection, command_id: str, after: int, limit: int, parse: bool) -> list[Event]:
    out: list[Event] = []
    while True:
        result = conn.execute(_PAGE, {"b_command": command_id, "b_after": after})
        rows = 0
        for row in result:  # rows are fetched as they are read: stop at the limit
            rows += 1
            out += _decode(command_id, row.seq_start, row.body, after, limit - len(out), parse)
            if len(out) >= limit:
                result.close()
                return out
        if rows < _ROWS_PER_READ or not out:
            return out
        after = out[-1].seq


class SqlEventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, batch: Sequence[Event]) -> None:
        """Idempotent: a batch already stored as it is (an earlier attempt whose commit was
        acknowledged by nobody, the connection having dropped) counts as written. Other events
        in its place raise Conflict: another writer (the sweeper) has taken the log over."""
        if not batch:
            return
        try:
            await self._db.write(lambda conn: insert_events(conn, batch))
        except IntegrityError as e:
            stored = await self._db.read(
                lambda conn: conn.execute(
                    select(events.c.seq_end, events.c.body).where(
                        events.c.command_id == batch[0].command_id,
                        events.c.seq_start == batch[0].seq,
                    )
                ).first()
            )
            if stored is not None and tuple(stored) == (batch[-1].seq, _body(batch)):
                return
            raise Conflict(
                "these event sequence numbers are already taken",
                details={"command_id": batch[0].command_id, "seq": batch[0].seq},
            ) from e

    async def read(
        self, command_id: str, *, after: int, limit: int, decode: bool = True
    ) -> list[Event]:
        """Events after `after` in order: `limit` of them, or fewer only at the end of the log."""
        return await self._db.read(lambda conn: _read(conn, command_id, after, limit, decode))

    async def last_seq(self, command_id: str) -> int:
        q = select(func.max(events.c.seq_end)).where(events.c.command_id == command_id)
        return await self._db.read(lambda conn: int(conn.execute(q).scalar() or 0))

    async def last_event(self, command_id: str) -> Event | None:
        def last(conn: Connection) -> Event | None:
            row = conn.execute(_LAST_ROW, {"b_command": command_id}).first()
            if row is None:
                return None
            type_, _, raw = row.body.rpartition("\n")[2].partition("\t")
            return Event(command_id, row.seq_end, _TYPES[type_], {}, raw)

        return await self._db.read(last)

    async def read_output(self, command_id: str) -> AsyncIterator[str]:
        """The command's output text in order (lines with their newlines restored), with one
        marker line where the output cap dropped some, page by page so memory stays flat."""
        after = 0
        partial = False  # the last text yielded did not end its line
        while page := await self.read(command_id, after=after, limit=_OUTPUT_PAGE):
            for e in page:
                if e.type is EventType.OUTPUT:
                    partial = bool(e.data.get("partial"))
                    yield e.data["line"] if partial else e.data["line"] + "\n"
                elif e.type is EventType.TRUNCATED and (marker := gap_line(e.data)):
                    yield "\n" + marker if partial else marker
                    partial = False
            if len(page) < _OUTPUT_PAGE:
                return
            after = page[-1].seq

    async def prune(self, before: datetime) -> int:
        q = delete(events).where(events.c.created_at < before)
        return await self._db.write(lambda conn: int(conn.execute(q).rowcount or 0), slow=True)
