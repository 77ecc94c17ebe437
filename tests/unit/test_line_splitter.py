"""The line splitter: newline framing across chunks, long lines cut at a UTF-8 character
boundary, invalid UTF-8 replaced, valid UTF-8 round-tripping byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdev.runtime.output import LineSplitter


def split_all(chunks: list[bytes], max_line: int = 16) -> list[tuple[str, bool, int]]:
    s = LineSplitter(max_line)
    out = [line for chunk in chunks for line in s.feed(chunk)]
    return out + s.flush()


def test_lines_are_framed_by_newlines_across_chunks() -> None:
    assert split_all([b"ab", b"c\nd", b"\n\n", b"tail"]) == [
        ("abc", True, 4),
        ("d", True, 2),
        ("", True, 1),
        ("tail", False, 4),
    ]


def test_nothing_is_returned_before_a_newline_and_pending_holds_it() -> None:
    s = LineSplitter(16)
    assert s.feed(b"par") == []
    assert s.pending == b"par"
    assert s.take_pending() == b"par"
    assert s.flush() == []


def test_a_long_line_is_cut_and_only_its_last_piece_is_complete() -> None:
    assert split_all([b"a" * 40 + b"\n"]) == [
        ("a" * 16, False, 16),
        ("a" * 16, False, 16),
        ("a" * 8, True, 9),
    ]


def test_a_long_unfinished_line_is_cut_as_it_arrives() -> None:
    s = LineSplitter(16)
    assert s.feed(b"b" * 20) == [("b" * 16, False, 16)]
    assert s.pending == b"b" * 4


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_cuts_never_split_a_multibyte_character(char: str) -> None:
    data = ("x" * 15 + char * 10 + "\n").encode()
    lines = split_all([data])
    assert "\ufffd" not in "".join(t for t, _, _ in lines)
    assert all(size <= 16 for _, _, size in lines[:-1])
    assert "".join(t for t, _, _ in lines) == "x" * 15 + char * 10


def test_invalid_utf8_is_replaced() -> None:
    assert split_all([b"ok\xff\xfe\n"]) == [("ok\ufffd\ufffd", True, 5)]


@settings(max_examples=60, deadline=None)
@given(st.text(), st.lists(st.integers(min_value=0, max_value=64), max_size=8))
def test_valid_utf8_round_trips_however_it_is_chunked(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    lines = split_all(chunks)
    rebuilt = "".join(t + ("\n" if complete else "") for t, complete, _ in lines)
    assert rebuilt == text
    assert sum(size for _, _, size in lines) == len(data)
