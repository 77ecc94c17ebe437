"""The output cap's policy, without a server: head and tail budgets for bytes and events, the
accounting of what is dropped, chunking that changes nothing, both streams' last words, kill
mode, and the marker line of the output endpoint."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rdev.domain.models import OutputLimitAction
from rdev.ports import StreamName
from rdev.runtime.output import Line
from rdev.runtime.outputcap import OutputCap, TailLine, gap_line

KILL = OutputLimitAction.KILL


def _run(
    cap: OutputCap, chunks: list[tuple[StreamName, bytes]]
) -> tuple[list[TailLine], dict[str, object] | None, dict[str, object] | None, list[TailLine]]:
    """Feed everything; (head lines, limit event, end event, tail lines)."""
    head: list[TailLine] = []
    limit = None
    for stream, data in chunks:
        head += [(stream, line) for line in cap.feed(stream, data)]
        limit = limit or cap.limit_event()
    head += cap.flush()
    limit = limit or cap.limit_event()
    if not cap.reached:
        return head, None, None, []
    end, tail = cap.tail()
    return head, limit, end, tail


def _texts(lines: list[TailLine]) -> list[str]:
    return [line[0] for _, line in lines]


def _chunked(
    data: bytes, size: int, stream: StreamName = "stdout"
) -> list[tuple[StreamName, bytes]]:
    return [(stream, data[i : i + size]) for i in range(0, len(data), size)]


def test_output_within_the_head_budget_is_all_kept_and_nothing_is_announced() -> None:
    cap = OutputCap(max_bytes=1000, max_events=100)
    head, limit, end, tail = _run(
        cap, [("stdout", b"a\nb\n"), ("stderr", b"oops\n"), ("stdout", b"c")]
    )
    assert [(s, line) for s, line in head] == [
        ("stdout", ("a", True, 2)),
        ("stdout", ("b", True, 2)),
        ("stderr", ("oops", True, 5)),
        ("stdout", ("c", False, 1)),
    ]
    assert (limit, end, tail) == (None, None, [])
    assert cap.total_bytes == 10 and not cap.reached


def test_bytes_bind_head_is_90_percent_tail_10_percent_and_the_rest_is_accounted() -> None:
    lines = [f"{i:09d}".encode() + b"\n" for i in range(1000)]  # 10 bytes each
    cap = OutputCap(max_bytes=1000, max_events=100_000)
    head, limit, end, tail = _run(cap, _chunked(b"".join(lines), 64))
    assert _texts(head) == [f"{i:09d}" for i in range(90)]
    assert limit == {
        "phase": "limit", "limit_bytes": 1000, "limit_events": 100_000, "action": "truncate",
        "tail_bytes": 100, "tail_events": 10_000,
    }  # fmt: skip
    assert _texts(tail) == [f"{i:09d}" for i in range(990, 1000)]
    assert end == {
        "phase": "end", "action": "truncate", "dropped_bytes": 9000, "dropped_lines": 900,
        "tail_bytes": 100, "tail_lines": 10,
    }  # fmt: skip
    assert cap.total_bytes == 10_000


def test_events_bind_for_short_lines() -> None:
    cap = OutputCap(max_bytes=10 * 1024 * 1024, max_events=100)
    head, _, end, tail = _run(cap, _chunked(b"y\n" * 100_000, 65536))
    assert len(head) == 90 and len(tail) == 10
    assert end is not None
    assert end["dropped_lines"] == 100_000 - 100 and end["dropped_bytes"] == 2 * (100_000 - 100)


def test_output_between_the_head_budget_and_the_cap_loses_nothing() -> None:
    cap = OutputCap(max_bytes=1000, max_events=100)
    data = b"".join(f"{i:04d}\n".encode() for i in range(95))
    head, limit, end, tail = _run(cap, _chunked(data, 7))
    assert limit is not None and limit["phase"] == "limit"
    assert _texts(head) + _texts(tail) == [f"{i:04d}" for i in range(95)]
    assert end == {
        "phase": "end", "action": "truncate", "dropped_bytes": 0, "dropped_lines": 0,
        "tail_bytes": 25, "tail_lines": 5,
    }  # fmt: skip
    assert gap_line(end) is None


def _reference(
    lines: list[bytes], max_bytes: int, max_events: int
) -> tuple[list[bytes], list[bytes], int, int]:
    """The policy spelled out on whole lines: head, tail, dropped bytes, dropped newlines."""
    head_b, head_e = max_bytes - max_bytes // 10, max_events - max_events // 10
    n, used = 0, 0
    while n < len(lines) and used + len(lines[n]) <= head_b and n + 1 <= head_e:
        used += len(lines[n])
        n += 1
    rest = lines[n:]
    k, kept = 0, 0
    while k < len(rest) and kept + len(rest[-1 - k]) <= max_bytes // 10 and k < max_events // 10:
        kept += len(rest[-1 - k])
        k += 1
    tail = rest[len(rest) - k :]
    dropped = rest[: len(rest) - k]
    return lines[:n], tail, sum(map(len, dropped)), sum(x.count(b"\n") for x in dropped)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=300
    ),
    last=st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=50),
    max_events=st.integers(min_value=20, max_value=400),
)
def test_any_chunking_gives_the_same_head_tail_and_accounting(
    lines: list[bytes], last: bytes, cuts: list[int], max_events: int
) -> None:
    whole = [*lines, last] if last else lines
    data = b"".join(whole)
    chunks: list[tuple[StreamName, bytes]] = []
    pos, i = 0, 0
    while pos < len(data):
        size = cuts[i % len(cuts)]
        chunks.append(("stdout", data[pos : pos + size]))
        pos, i = pos + size, i + 1
    cap = OutputCap(max_bytes=2000, max_events=max_events)
    head, _, end, tail = _run(cap, chunks)
    want_head, want_tail, dropped, dropped_lines = _reference(whole, 2000, max_events)
    raw = [line[0].encode("utf-8", "replace") for _, line in head]
    assert [line[2] for _, line in head] == [len(x) for x in want_head]
    assert len(raw) == len(want_head)
    if end is None:
        assert want_tail == [] and len(want_head) == len(whole)
        return
    assert [line[2] for _, line in tail] == [len(x) for x in want_tail]
    assert end["dropped_bytes"] == dropped and end["dropped_lines"] == dropped_lines
    stored = sum(line[2] for _, line in head + tail)
    assert stored + dropped == len(data) == cap.total_bytes
    assert stored <= 2000 and len(head) + len(tail) <= max_events


def test_stderr_keeps_its_last_words_however_much_stdout_follows() -> None:
    cap = OutputCap(max_bytes=10_000, max_events=1000)
    chunks: list[tuple[StreamName, bytes]] = [("stdout", b"x" * 99 + b"\n")] * 100
    chunks.append(("stderr", b"error: it broke\n"))  # read before the rest of stdout
    chunks += [("stdout", b"x" * 99 + b"\n")] * 500
    _, _, end, tail = _run(cap, chunks)
    assert ("stderr", ("error: it broke", True, 16)) in tail
    assert end is not None and end["tail_bytes"] <= 1000


def test_a_single_stream_may_use_the_whole_tail() -> None:
    cap = OutputCap(max_bytes=10_000, max_events=1000)
    _, _, end, tail = _run(cap, [("stdout", b"x" * 99 + b"\n")] * 600)
    assert end is not None and end["tail_bytes"] == 1000 and len(tail) == 10


def test_the_two_tails_are_merged_in_arrival_order() -> None:
    cap = OutputCap(max_bytes=1000, max_events=1000)
    chunks: list[tuple[StreamName, bytes]] = [("stdout", b"h" * 89 + b"\n")] * 10  # the head
    chunks += [("stdout", b"o1\n"), ("stderr", b"e1\n"), ("stdout", b"o2\n"), ("stderr", b"e2")]
    _, _, _, tail = _run(cap, chunks)
    assert [(s, line[0]) for s, line in tail] == [
        ("stdout", "o1"), ("stderr", "e1"), ("stdout", "o2"), ("stderr", "e2"),
    ]  # fmt: skip


def test_past_the_limit_memory_is_bounded_by_the_tail_budget() -> None:
    cap = OutputCap(max_bytes=100_000, max_events=1_000_000)
    block = b"y\n" * 32768
    head = len(cap.feed("stdout", block)) + len(cap.feed("stdout", block))
    assert head == 45_000 and cap.reached  # 90 % of 100,000 bytes
    for _ in range(798):  # 50 MiB in all, none of it split past the limit
        assert cap.feed("stdout", block) == []
    ring = cap._rings["stdout"]
    assert ring.size <= 10_000 + len(block)
    end, tail = cap.tail()
    assert end["tail_bytes"] <= 10_000 and len(tail) == 5000
    assert end["dropped_bytes"] + end["tail_bytes"] + cap.head_bytes == 800 * len(block)


def test_many_tiny_chunks_do_not_grow_the_ring_past_its_bound() -> None:
    cap = OutputCap(max_bytes=1_000_000, max_events=100)
    _run(cap, [("stdout", b"y\n")] * 90)
    for _ in range(10_000):  # the streams alternate, so no two chunks can be joined
        cap.feed("stdout", b"y")
        cap.feed("stderr", b"\n")
    assert all(len(ring.chunks) <= 1024 for ring in cap._rings.values())
    for _ in range(10_000):  # one stream's chunks in a row are joined
        cap.feed("stdout", b"y")
    assert len(cap._rings["stdout"].chunks) <= 1024 + 10_000 // 4096 + 1


def test_a_chunk_larger_than_the_tail_keeps_its_own_end() -> None:
    cap = OutputCap(max_bytes=1000, max_events=1000)
    big = b"".join(f"{i:04d}\n".encode() for i in range(2000))
    head, _, end, tail = _run(cap, [("stdout", big)])
    assert _texts(head) == [f"{i:04d}" for i in range(180)]
    assert _texts(tail) == [f"{i:04d}" for i in range(1980, 2000)]
    assert end is not None and end["dropped_lines"] == 2000 - 200


def test_long_lines_and_invalid_utf8_in_the_tail_are_cut_and_replaced() -> None:
    cap = OutputCap(max_bytes=2_000_000, max_events=1000, max_line=1000)
    _, _, _, tail = _run(cap, [("stdout", b"a" * 1_900_000), ("stdout", b"\n\xff\xfebad\n")])
    assert tail[-1] == ("stdout", ("\ufffd\ufffdbad", True, 6))
    assert all(line[2] <= 1000 for _, line in tail)


def test_limit_reached_by_the_unfinished_last_line() -> None:
    cap = OutputCap(max_bytes=1000, max_events=1000)
    head, limit, end, tail = _run(cap, [("stdout", b"a" * 899 + b"\n" + b"b" * 200)])
    assert _texts(head) == ["a" * 899]
    assert limit is not None and end is not None
    assert end["dropped_bytes"] == 200 and tail == []


def test_the_limit_event_is_given_once() -> None:
    cap = OutputCap(max_bytes=1000, max_events=10)
    cap.feed("stdout", b"x\n" * 50)
    assert cap.limit_event() is not None
    cap.feed("stdout", b"x\n" * 50)
    assert cap.limit_event() is None


def test_kill_mode_keeps_the_whole_cap_as_head_and_no_tail() -> None:
    cap = OutputCap(max_bytes=1000, max_events=100, action=KILL)
    head, limit, end, tail = _run(cap, _chunked(b"y\n" * 1000, 100))
    assert len(head) == 100 and tail == []
    assert limit is not None and limit["action"] == "kill" and limit["tail_events"] == 0
    assert end == {
        "phase": "end", "action": "kill", "dropped_bytes": 1800, "dropped_lines": 900,
        "tail_bytes": 0, "tail_lines": 0,
    }  # fmt: skip
    assert cap.kills
    assert gap_line(end) == (
        "[rdev: output cap reached; the command was stopped; 1,800 bytes (900 lines) after it "
        "not kept]\n"
    )


def test_gap_line_names_what_is_missing_only_where_something_is() -> None:
    end = {"phase": "end", "action": "truncate", "dropped_bytes": 12345, "dropped_lines": 678}
    assert gap_line(end) == (
        "[rdev: output cap reached; 12,345 bytes (678 lines) dropped here; "
        "the first and the last part kept]\n"
    )
    assert gap_line({**end, "dropped_bytes": 0, "dropped_lines": 0}) is None
    assert gap_line({"phase": "limit", "limit_bytes": 1}) is None
    assert gap_line({"limit_bytes": 1}) is None  # a `truncated` event from before phases


def test_line_sizes_count_the_bytes_as_written() -> None:
    line: Line = ("é", True, 3)
    cap = OutputCap(max_bytes=1024, max_events=100)
    assert cap.feed("stdout", "é\n".encode()) == [line]
    assert cap.head_bytes == 3


def test_a_tail_of_lines_written_a_byte_at_a_time_keeps_its_last_lines() -> None:
    # found by the property test above: a line spread over many small chunks (a program that
    # writes a character at a time) pushed the line before it out of the ring
    cap = OutputCap(max_bytes=2000, max_events=20)  # a tail of 200 bytes and 2 lines
    data = b"\n" * 30 + b"last\n"
    _, _, end, tail = _run(cap, _chunked(data, 1))
    assert [line[0] for _, line in tail] == ["", "last"]
    assert end is not None and end["dropped_lines"] == 30 - 18 - 1


def test_byte_sized_chunks_of_two_streams_keep_their_arrival_order_in_the_tail() -> None:
    cap = OutputCap(max_bytes=1000, max_events=100)  # tail: 100 bytes, 10 lines
    chunks: list[tuple[StreamName, bytes]] = [("stdout", b"x" * 99 + b"\n")] * 10
    for out, err in zip(b"out one\nout two\n", b"err one\nerr two\n", strict=True):
        chunks += [("stdout", bytes([out])), ("stderr", bytes([err]))]
    _, _, _, tail = _run(cap, chunks)
    assert [(s, line[0]) for s, line in tail] == [
        ("stdout", "out one"),
        ("stderr", "err one"),
        ("stdout", "out two"),
        ("stderr", "err two"),
    ]
