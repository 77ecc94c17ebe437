"""Bytes from a process into lines for events: split on newline, cut lines over 64 KiB at a
UTF-8 character boundary, replace invalid UTF-8. Valid UTF-8 round-trips byte for byte."""

from __future__ import annotations

MAX_LINE_BYTES = 64 * 1024

Line = tuple[str, bool, int]  # text, ended by a newline, size in bytes including the newline


def _char_boundary(data: bytes, cut: int) -> int:
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
        self._rest = b""
        self._max = max_line

    def feed(self, data: bytes) -> list[Line]:
        pieces = (self._rest + data).split(b"\n") if self._rest else data.split(b"\n")
        rest = pieces.pop()  # after the last newline: not a line yet
        out: list[Line] = []
        for piece in pieces:
            if len(piece) > self._max:
                self._cut(piece, out)
                out[-1] = (out[-1][0], True, out[-1][2] + 1)
            else:
                out.append((piece.decode("utf-8", "replace"), True, len(piece) + 1))
        while len(rest) > self._max:
            rest = self._cut_one(rest, out)
        self._rest = rest
        return out

    @property
    def pending(self) -> bytes:
        """Bytes of an unfinished line held back from earlier chunks."""
        return self._rest

    def take_pending(self) -> bytes:
        """Hand over the unfinished line's bytes as they are, forgetting them."""
        rest, self._rest = self._rest, b""
        return rest

    def flush(self) -> list[Line]:
        rest, self._rest = self._rest, b""
        return [(rest.decode("utf-8", "replace"), False, len(rest))] if rest else []

    def _cut(self, piece: bytes, out: list[Line]) -> None:
        while len(piece) > self._max:
            piece = self._cut_one(piece, out)
        out.append((piece.decode("utf-8", "replace"), False, len(piece)))

    def _cut_one(self, data: bytes, out: list[Line]) -> bytes:
        cut = _char_boundary(data, self._max)
        out.append((data[:cut].decode("utf-8", "replace"), False, cut))
        return data[cut:]
