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
_OUTPUT_PAGE = 5000  # events per read of GET /commands/{id}/output, and per chunk of its body
_OUTPUT = EventType.OUTPUT
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
_PAGE = (
    select(events.c.seq_start, events.c.body)
    .where(
        events.c.command_id == bindparam("b_command"),
        events.c.seq_end > bindparam("b_after"),
        # only the rows that hold the page's events: psycopg receives every row selected
        events.c.seq_start <= bindparam("b_upto"),
    )
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
    upto = after + limit  # sequence numbers are gap-free: the page is (after, after + limit]
    while True:
        result = conn.execute(_PAGE, {"b_command": command_id, "b_after": after, "b_upto": upto})
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


def _output_text(page: Sequence[Event], partial: bool) -> tuple[str, bool]:
    """The text of a page of undecoded events, and whether it ends inside a line. Each run of
    output events is decoded by one json.loads of a JSON array of their stored text."""
    parts: list[str] = []
    run: list[str] = []
    for e in page:
        if e.type is _OUTPUT:
            run.append(e.encoded or "{}")
        elif e.type is EventType.TRUNCATED:
            partial = _lines(run, parts, partial)
            run = []
            if marker := gap_line(json.loads(e.encoded or "{}")):
                parts.append("\n" + marker if partial else marker)
                partial = False
    partial = _lines(run, parts, partial)
    return "".join(parts), partial


def _lines(raw: list[str], into: list[str], partial: bool) -> bool:
    if not raw:
        return partial
    datas = json.loads("[" + ",".join(raw) + "]")
    into += [d["line"] if d.get("partial") else d["line"] + "\n" for d in datas]
    return bool(datas[-1].get("partial"))


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
            await self._db.write(lambda conn: insert_events(conn, batch), one_statement=True)
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

    async def read_output(self, command_id: str) -> AsyncIterator[str]:
        """The command's output text in order (lines with their newlines restored), with one
        marker line where the output cap dropped some: one chunk per page of the log, so memory
        stays flat and a response sends thousands of lines at a time, not one."""
        after = 0
        partial = False  # the last text yielded did not end its line
        while page := await self.read(command_id, after=after, limit=_OUTPUT_PAGE, decode=False):
            text, partial = _output_text(page, partial)
            if text:
                yield text
            if len(page) < _OUTPUT_PAGE:
                return
            after = page[-1].seq

    async def prune(self, before: datetime) -> int:
        q = delete(events).where(events.c.created_at < before)
        return await self._db.write(lambda conn: int(conn.execute(q).rowcount or 0), slow=True)
