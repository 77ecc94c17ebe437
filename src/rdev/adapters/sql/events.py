"""The per-command event log: gap-free sequence numbers, written in batches (one row per batch,
one `type<TAB>json` line per event), read back in order from any sequence number."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from rdev.adapters.sql.db import Database
from rdev.adapters.sql.tables import events
from rdev.domain.errors import Conflict
from rdev.domain.models import Event, EventType
from rdev.runtime.outputcap import gap_line

_ROWS_PER_READ = 32
_OUTPUT_SPAN = 20_000  # about this many events (whole rows) per read of GET output: one chunk
# A row of complete output lines whose JSON holds no escape (the common case): the text of each
# line is the JSON string as stored, so no JSON decoding is needed. Anything else is decoded.
_PLAIN_ROW = re.compile(r'(?:output\t\{"line":"[^"\\\n]*","stream":"std(?:out|err)"\}(?:\n|\Z))+')
_PLAIN_LINE = re.compile(r'output\t\{"line":"([^"\\\n]*)","stream"')
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
    .where(
        events.c.command_id == bindparam("b_command"),
        events.c.seq_end > bindparam("b_after"),
        # only the rows that hold the page's events: psycopg receives every row selected
        events.c.seq_start <= bindparam("b_upto"),
    )
    .order_by(events.c.seq_start)
    .limit(_ROWS_PER_READ)
)


_OUTPUT_ROWS = (
    select(events.c.seq_end, events.c.body)
    .where(
        events.c.command_id == bindparam("b_command"),
        events.c.seq_end > bindparam("b_after"),
        events.c.seq_start <= bindparam("b_upto"),
    )
    .order_by(events.c.seq_start)
)


def events_row(batch: Sequence[Event]) -> dict[str, Any]:
    """The row that stores a non-empty batch of one command's consecutive events."""
    return {
        "command_id": batch[0].command_id,
        "seq_start": batch[0].seq,
        "seq_end": batch[-1].seq,
        "body": _body(batch),
        "created_at": datetime.now(UTC),
    }


def insert_events(conn: Connection, batch: Sequence[Event]) -> None:
    if batch:
        conn.execute(_INSERT, events_row(batch))


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


def _output_rows(conn: Connection, *, id_: str, after: int) -> list[tuple[int, str]]:
    """Whole rows after `after` (always a row's end), about _OUTPUT_SPAN events of them."""
    params = {"b_command": id_, "b_after": after, "b_upto": after + _OUTPUT_SPAN}
    return [(row.seq_end, row.body) for row in conn.execute(_OUTPUT_ROWS, params)]


def _row_text(body: str, partial: bool, into: list[str]) -> bool:
    """Append the text of one stored row to `into`; whether it ends inside a line."""
    if "\\" not in body and _PLAIN_ROW.fullmatch(body):
        into.append("\n".join(_PLAIN_LINE.findall(body)))
        into.append("\n")
        return False
    run: list[str] = []
    for line in body.split("\n"):
        type_, _, raw = line.partition("\t")
        if type_ == "output":
            run.append(raw)
        elif type_ == "truncated":
            partial = _lines(run, into, partial)
            run = []
            if marker := gap_line(json.loads(raw)):
                into.append("\n" + marker if partial else marker)
                partial = False
    return _lines(run, into, partial)


def _lines(raw: list[str], into: list[str], partial: bool) -> bool:
    """Decode a run of output events with one json.loads of a JSON array of their text."""
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
        marker line where the output cap dropped some. One chunk per read of whole rows, so
        memory stays flat and a response sends thousands of lines at a time, not one."""
        after = 0
        partial = False  # the text so far does not end its line
        while rows := await self._db.read(
            functools.partial(_output_rows, after=after, id_=command_id)
        ):
            parts: list[str] = []
            for _seq_end, body in rows:
                partial = _row_text(body, partial, parts)
            if text := "".join(parts):
                yield text
            after = rows[-1][0]

    async def prune(self, before: datetime) -> int:
        q = delete(events).where(events.c.created_at < before)
        return await self._db.write(lambda conn: int(conn.execute(q).rowcount or 0), slow=True)
