"""The event log on SQLite and PostgreSQL: batches in, exact pages out, and the migration that
turned one-row-per-event into one-row-per-batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from rdev.adapters.sql.store import Store, build_store
from rdev.config import Settings
from rdev.domain.models import Event, EventType
from tests.support import at_revision


def _events(cid: str, first: int, n: int) -> list[Event]:
    return [
        Event(cid, s, EventType.OUTPUT, {"line": f"l{s}", "stream": "stdout"})
        for s in range(first, first + n)
    ]


async def test_reads_return_full_pages_across_many_small_batches(store: Store) -> None:
    for seq in range(1, 101):
        await store.events.append(_events("cmd_a", seq, 1))
    await store.events.append(_events("cmd_a", 101, 400))
    page = await store.events.read("cmd_a", after=0, limit=50)
    assert [e.seq for e in page] == list(range(1, 51))
    page = await store.events.read("cmd_a", after=90, limit=50)
    assert [e.seq for e in page] == list(range(91, 141))
    tail = await store.events.read("cmd_a", after=480, limit=50)
    assert [e.seq for e in tail] == list(range(481, 501))
    assert await store.events.read("cmd_a", after=500, limit=50) == []
    assert await store.events.last_seq("cmd_a") == 500
    assert tail[-1].data == {"line": "l500", "stream": "stdout"}


async def test_every_page_boundary_inside_and_across_batches(store: Store) -> None:
    sizes = [1, 7, 40, 3, 64, 1, 25] * 6  # 846 events in 42 rows of mixed sizes
    seq = 1
    for n in sizes:
        await store.events.append(_events("cmd_p", seq, n))
        seq += n
    total = seq - 1
    for after in range(0, total + 1, 7):
        for limit in (1, 2, 5, 33, 200):
            page = await store.events.read("cmd_p", after=after, limit=limit, decode=False)
            assert [e.seq for e in page] == list(range(after + 1, min(total, after + limit) + 1))
    whole = await store.events.read("cmd_p", after=0, limit=1000)
    assert [e.data["line"] for e in whole] == [f"l{s}" for s in range(1, total + 1)]


async def test_output_text_is_rebuilt_in_order(store: Store) -> None:
    events = [
        *_events("cmd_b", 1, 3),
        Event(
            "cmd_b",
            4,
            EventType.OUTPUT,
            {"line": "no newline", "stream": "stderr", "partial": True},
        ),
    ]
    await store.events.append(events)
    text_out = "".join([chunk async for chunk in store.events.read_output("cmd_b")])
    assert text_out == "l1\nl2\nl3\nno newline"


async def test_migration_0002_keeps_existing_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with at_revision(f"sqlite:///{path}", "0001") as conn:
        for seq, line in ((1, "first"), (2, "second")):
            conn.execute(
                text("INSERT INTO events (command_id, seq, type, data, created_at) "
                     "VALUES ('cmd_old', :s, 'output', :d, '2026-11-01 00:00:00')"),
                {"s": seq, "d": f'{{"line":"{line}","stream":"stdout"}}'},
            )  # fmt: skip
    store = build_store(Settings(database_url=f"sqlite:///{path}"))
    try:
        await store.db.migrate()
        got = await store.events.read("cmd_old", after=0, limit=10)
        assert [(e.seq, e.data["line"]) for e in got] == [(1, "first"), (2, "second")]
    finally:
        await store.close()


async def test_output_text_marks_where_the_cap_dropped_output(store: Store) -> None:
    end = {"phase": "end", "action": "truncate", "dropped_bytes": 5000, "dropped_lines": 700,
           "tail_bytes": 3, "tail_lines": 1}  # fmt: skip
    limit = {"phase": "limit", "limit_bytes": 1024, "limit_events": 100, "action": "truncate",
             "tail_bytes": 102, "tail_events": 10}  # fmt: skip
    await store.events.append(
        [
            *_events("cmd_t", 1, 2),
            Event(
                "cmd_t", 3, EventType.OUTPUT, {"line": "cut", "stream": "stdout", "partial": True}
            ),
            Event("cmd_t", 4, EventType.TRUNCATED, limit),
            Event("cmd_t", 5, EventType.TRUNCATED, end),
            Event("cmd_t", 6, EventType.OUTPUT, {"line": "l6", "stream": "stderr"}),
        ]
    )
    text_out = "".join([chunk async for chunk in store.events.read_output("cmd_t")])
    assert text_out == (
        "l1\nl2\ncut\n[rdev: output cap reached; 5,000 bytes (700 lines) dropped here; "
        "the first and the last part kept]\nl6\n"
    )


def _line_events(cid: str, lines: list[tuple[str, str, bool]], first: int = 1) -> list[Event]:
    out = []
    for seq, (line, stream, partial) in enumerate(lines, first):
        data: dict[str, object] = {"line": line, "stream": stream}
        if partial:
            data["partial"] = True
        out.append(Event(cid, seq, EventType.OUTPUT, data))
    return out


# PostgreSQL only: SQLite steps rows one at a time, so unfetched rows cost nothing there
@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_page_fetches_only_the_rows_it_needs(store: Store) -> None:
    """A client-side cursor (psycopg's) receives every row a query selects, so a page must
    select only the rows that hold its events, not the next 32 batches of up to 2000 each."""
    for first in range(1, 40_001, 2000):
        await store.events.append(_events("cmd_r", first, 2000))
    fetched: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            fetched.append(cursor.rowcount)

    engine = store.db.engine.sync_engine  # type: ignore[attr-defined]
    event.listen(engine, "after_cursor_execute", count)
    try:
        for after, limit, rows in ((0, 1000, 1), (0, 2000, 1), (1500, 5000, 4), (39_990, 100, 1)):
            fetched.clear()
            page = await store.events.read("cmd_r", after=after, limit=limit, decode=False)
            assert [e.seq for e in page] == list(range(after + 1, min(40_000, after + limit) + 1))
            assert sum(fetched) == rows, (after, limit, fetched)
    finally:
        event.remove(engine, "after_cursor_execute", count)


async def test_output_text_comes_a_page_at_a_time_not_a_line_at_a_time(store: Store) -> None:
    """Each chunk is one body message of the HTTP response: one per line made a 1,000,000-line
    output cost 1,000,000 sends."""
    for first in range(1, 12_001, 1000):
        await store.events.append(_events("cmd_c", first, 1000))
    chunks = [chunk async for chunk in store.events.read_output("cmd_c")]
    assert "".join(chunks) == "".join(f"l{s}\n" for s in range(1, 12_001))
    assert len(chunks) <= 4


@pytest.mark.parametrize("batch", [1, 3, 1000])
async def test_output_text_keeps_every_character_of_every_line(store: Store, batch: int) -> None:
    lines = [
        ("plain", "stdout", False),
        ("", "stdout", False),
        ('quotes " and \\ backslashes \\n not a newline', "stderr", False),
        ("tab\there, cr\r, nul \x00 and \x1b[31mescapes\x1b[0m", "stdout", False),
        ("unicode: é ß 漢字 🙂 \u2028 \u2029", "stdout", False),
        ("half a line", "stdout", True),
        (" and its rest", "stdout", False),
        ("surrogate-safe \ud7ff \ue000", "stderr", False),
        ("x" * 70_000, "stdout", False),
        ("ends partial", "stderr", True),
    ] * 7
    events = _line_events("cmd_u", lines)
    events.insert(3, Event("cmd_u", 0, EventType.MESSAGE, {"type": "note", "text": "not output"}))
    events.insert(9, Event("cmd_u", 0, EventType.STATUS, {"status": "running"}))
    events = [Event("cmd_u", s, e.type, e.data) for s, e in enumerate(events, 1)]
    seq = len(events)
    events.append(Event("cmd_u", seq + 1, EventType.COMPLETE, {"status": "succeeded"}))
    for start in range(0, len(events), batch):
        await store.events.append(events[start : start + batch])
    want = "".join(line if partial else line + "\n" for line, _, partial in lines)
    text_out = "".join([chunk async for chunk in store.events.read_output("cmd_u")])
    assert text_out == want


async def test_output_of_an_unknown_or_empty_command_is_empty(store: Store) -> None:
    assert [chunk async for chunk in store.events.read_output("cmd_none")] == []
    await store.events.append([Event("cmd_s", 1, EventType.STATUS, {"status": "running"})])
    assert "".join([chunk async for chunk in store.events.read_output("cmd_s")]) == ""


@pytest.mark.parametrize(
    ("raws", "want"),
    [
        # stored as the writer stores them: no escapes (read without JSON decoding)
        (['{"line":"a","stream":"stdout"}', '{"line":"b é 🙂","stream":"stderr"}'], "a\nb é 🙂\n"),
        # a partial line, then the rest of it
        (['{"line":"a","stream":"stdout","partial":true}', '{"line":"b","stream":"stdout"}'],
         "ab\n"),
        # other key orders and spacing (older rows, other writers) are decoded as JSON
        (['{"stream":"stdout","line":"k"}', '{"line": "s", "stream": "stdout"}'], "k\ns\n"),
        # escapes that look like the storage format
        (['{"line":"output\\t{\\"line\\":\\"x\\",\\"stream\\":\\"stdout\\"}","stream":"stdout"}'],
         'output\t{"line":"x","stream":"stdout"}\n'),
        (['{"line":"\\\\","stream":"stdout"}', '{"line":"\\n","stream":"stdout"}'], "\\\n\n\n"),
        (['{"line":"x","stream":"other"}'], "x\n"),
    ],
)  # fmt: skip
async def test_output_text_of_stored_rows_in_any_encoding(
    store: Store, raws: list[str], want: str
) -> None:
    events = [Event("cmd_e", s, EventType.OUTPUT, {}, raw) for s, raw in enumerate(raws, 1)]
    await store.events.append(events)
    await store.events.append([Event("cmd_e", len(raws) + 1, EventType.OUTPUT, {}, raws[0])])
    first = json.loads(raws[0])
    tail = first["line"] if first.get("partial") else first["line"] + "\n"
    text_out = "".join([chunk async for chunk in store.events.read_output("cmd_e")])
    assert text_out == want + tail


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_event_batches_are_stored_with_lz4_where_postgresql_has_it(store: Store) -> None:
    has_lz4 = await store.db.read(
        lambda c: c.execute(
            text(
                "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                "AND 'lz4' = ANY(enumvals)"
            )
        ).first()
    )
    await store.events.append(_events("cmd_z", 1, 2000))
    method = await store.db.read(
        lambda c: c.execute(
            text("SELECT pg_column_compression(body) FROM events WHERE command_id = 'cmd_z'")
        ).scalar()
    )
    # where the server has no lz4 the migration leaves PostgreSQL's default, pglz
    assert method == ("lz4" if has_lz4 is not None else "pglz")
    page = await store.events.read("cmd_z", after=1990, limit=20)
    assert [e.data["line"] for e in page] == [f"l{s}" for s in range(1991, 2001)]
