"""Bytes from a process into lines for events: split on newline, cut lines over 64 KiB at a
UTF-8 character boundary, replace invalid UTF-8. Valid UTF-8 round-trips byte for byte."""

from __future__ import annotations

from collections.abc import Iterator

MAX_LINE_BYTES = 64 * 1024


def _char_boundary(data: bytes | bytearray, cut: int) -> int:
    """Move `cut` back so it does not fall inside a multi-byte UTF-8 character."""
    for back in range(4):
        pos = cut - back
        if pos <= 0:
            break
        if (data[pos] & 0xC0) != 0x80:
            return pos
    return cut


class LineSplitter:
    """Feed chunks, get lines; `complete` is False for a cut or final piece."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line

    def feed(self, data: bytes) -> Iterator[tuple[str, bool, int]]:
        """(text, complete, size in bytes including the newline) for each line or piece."""
        self._buf += data
        start = 0
        buf = self._buf
        while True:
            nl = buf.find(b"\n", start, start + self._max + 1)
            if nl != -1:
                yield buf[start:nl].decode("utf-8", "replace"), True, nl + 1 - start
                start = nl + 1
            elif len(buf) - start > self._max:
                cut = _char_boundary(buf, start + self._max)
                yield buf[start:cut].decode("utf-8", "replace"), False, cut - start
                start = cut
            else:
                break
        del buf[:start]

    def flush(self) -> Iterator[tuple[str, bool, int]]:
        if self._buf:
            yield self._buf.decode("utf-8", "replace"), False, len(self._buf)
            self._buf.clear()
