"""The output cap: what of a command's output rdev keeps. A command that never stops printing
(`yes`) must cost bounded storage, memory and CPU, and its last words, where errors usually
are, must survive as well as its first.

The policy, for a cap of B bytes and E events (RDEV_MAX_OUTPUT_BYTES, RDEV_MAX_OUTPUT_EVENTS;
every output line, piece of a long line, or Claude message is one event):

- Head: output is split into lines and stored as it arrives while it fits in the head budget,
  B - B//10 bytes and E - E//10 events (with `on_output_limit: "kill"`, all of B and E).
- Limit: at the first line that does not fit, one `truncated` event, and live output stops:
    {"phase": "limit", "limit_bytes": B, "limit_events": E, "action": "truncate" | "kill",
     "tail_bytes": B//10, "tail_events": E//10}      (the tail's budget; 0 and 0 for kill)
  With "kill" the runner then stops the command: status `failed`, error OUTPUT_LIMIT.
- Past the limit, chunks are never split or decoded: their bytes are counted, their newlines
  counted with bytes.count, and each chunk goes whole into an in-memory ring that holds about
  the last `tail_bytes` of output (older chunks fall out whole, so the work per chunk does not
  depend on how many lines it holds). With "kill" nothing is kept.
- End: the ring is split into lines once; the last lines that fit in the tail's budget are
  kept (a first line whose start fell out of the ring is dropped whole). One more `truncated`
  event gives the accounting, and the tail follows as ordinary `output`/`message` events:
    {"phase": "end", "action": ..., "dropped_bytes": N, "dropped_lines": M,
     "tail_bytes": bytes kept in the tail, "tail_lines": events in the tail}
  `dropped_lines` counts the newlines in the dropped bytes. Both are 0 when the output ended
  between the head budget and the cap: then nothing is missing.

Whatever a command prints, its stored output is at most B bytes (as the command wrote them)
and E output events, plus the two `truncated` events."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from rdev.domain.models import OutputLimitAction
from rdev.ports import StreamName
from rdev.runtime.output import MAX_LINE_BYTES, Line, LineSplitter

TAIL_SHARE = 10  # the tail's budget is 1/TAIL_SHARE of the cap
# Past the limit the pump pauses this long after each chunk: a command writing faster than
# rdev needs to read is held back by its full pipe instead of costing the server a core.
DRAIN_PAUSE_SECONDS = 0.002
STREAMS: tuple[StreamName, StreamName] = ("stdout", "stderr")

TailLine = tuple[StreamName, Line]


class OutputCap:
    """One command's cap. `feed` each chunk; it returns the lines to store now (none past the
    limit). Then `flush` for the unfinished last lines, and `tail` once the output has ended."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_events: int,
        action: OutputLimitAction = OutputLimitAction.TRUNCATE,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.action = action
        keep_tail = action is OutputLimitAction.TRUNCATE
        self.tail_bytes = max_bytes // TAIL_SHARE if keep_tail else 0
        self.tail_events = max_events // TAIL_SHARE if keep_tail else 0
        self._head_bytes_max = max_bytes - self.tail_bytes
        self._head_events_max = max_events - self.tail_events
        self._max_line = max_line
        self._splitters = {s: LineSplitter(max_line) for s in STREAMS}
        self.total_bytes = 0  # every byte the command wrote
        self.head_bytes = 0
        self.head_events = 0
        self.reached = False
        self._announced = False
        self._after_bytes = 0  # past the limit: bytes and newlines seen
        self._after_newlines = 0
        self._arrivals = 0  # numbers chunks past the limit, to merge the streams' tails
        self._rings = {s: _Ring(self.tail_bytes, self.tail_events) for s in STREAMS}

    @property
    def kills(self) -> bool:
        return self.action is OutputLimitAction.KILL

    def feed(self, stream: StreamName, data: bytes) -> list[Line]:
        self.total_bytes += len(data)
        if self.reached:
            self._keep(stream, data)
            return []
        splitter = self._splitters[stream]
        before = splitter.pending
        lines = splitter.feed(data)
        used = len(before) + len(data) - len(splitter.pending)
        if self._fits(used, len(lines)):  # the common case: no per-line work here
            self.head_bytes += used
            self.head_events += len(lines)
            return lines
        admitted, used = self._admit(lines)
        splitter.take_pending()  # it is part of what is handed over below
        self._reach(stream, (before + data)[used:])
        return lines[:admitted]

    def flush(self) -> list[TailLine]:
        """The streams' unfinished last lines, as far as they fit (at the output's end)."""
        out: list[TailLine] = []
        for stream, splitter in self._splitters.items():
            rest = splitter.pending
            if self.reached or not rest:
                continue
            if self._fits(len(rest), 1):
                self.head_bytes += len(rest)
                self.head_events += 1
                out += [(stream, line) for line in splitter.flush()]
            else:
                splitter.take_pending()
                self._reach(stream, rest)
        return out

    def limit_event(self) -> dict[str, Any] | None:
        """The `truncated` event's data the first time it is asked for after the limit."""
        if not self.reached or self._announced:
            return None
        self._announced = True
        return {
            "phase": "limit",
            "limit_bytes": self.max_bytes,
            "limit_events": self.max_events,
            "action": self.action.value,
            "tail_bytes": self.tail_bytes,
            "tail_events": self.tail_events,
        }

    def tail(self) -> tuple[dict[str, Any], list[TailLine]]:
        """The end: the accounting event's data, and the tail's lines in order."""
        lines = {s: ring.lines(self._max_line) for s, ring in self._rings.items()}
        taken = {s: (0, 0) for s in STREAMS}  # (lines, bytes) from the end of each stream
        for stream in STREAMS:  # each stream may have half of the tail...
            taken[stream] = _take(lines[stream], 0, self.tail_bytes // 2, self.tail_events // 2)
        for stream in ("stderr", "stdout"):  # ...and what the other leaves unused
            room_bytes = self.tail_bytes - sum(b for _, b in taken.values())
            room_events = self.tail_events - sum(n for n, _ in taken.values())
            n, b = taken[stream]
            more, more_bytes = _take(lines[stream], n, room_bytes, room_events)
            taken[stream] = (n + more, b + more_bytes)
        kept = sorted(
            (order, stream, line)
            for stream in STREAMS
            for order, line in lines[stream][len(lines[stream]) - taken[stream][0] :]
        )
        self._rings = {s: _Ring(0, 0) for s in STREAMS}
        kept_bytes = sum(b for _, b in taken.values())
        kept_newlines = sum(line[1] for _, _, line in kept)
        accounting = {
            "phase": "end",
            "action": self.action.value,
            "dropped_bytes": self._after_bytes - kept_bytes,
            "dropped_lines": self._after_newlines - kept_newlines,
            "tail_bytes": kept_bytes,
            "tail_lines": len(kept),
        }
        return accounting, [(stream, line) for _, stream, line in kept]

    def _fits(self, size: int, events: int) -> bool:
        return (
            self.head_bytes + size <= self._head_bytes_max
            and self.head_events + events <= self._head_events_max
        )

    def _admit(self, lines: list[Line]) -> tuple[int, int]:
        """How many of `lines` fit, and their bytes; counts them into the head."""
        admitted, used = 0, 0
        for _, _, size in lines:
            if not self._fits(used + size, admitted + 1):
                break
            admitted += 1
            used += size
        self.head_bytes += used
        self.head_events += admitted
        return admitted, used

    def _reach(self, stream: StreamName, rest: bytes) -> None:
        """The limit: from here on bytes go raw to the ring. The other stream's unfinished line
        was written before `rest`, so it goes first."""
        self.reached = True
        for other, splitter in self._splitters.items():
            if other != stream and splitter.pending:
                self._keep(other, splitter.take_pending())
        if rest:
            self._keep(stream, rest)

    def _keep(self, stream: StreamName, data: bytes) -> None:
        self._after_bytes += len(data)
        self._after_newlines += data.count(b"\n")
        if self.tail_bytes:
            self._arrivals += 1
            self._rings[stream].add(self._arrivals, data)


Ordered = tuple[tuple[int, int], Line]  # (arrival of the chunk that ended it, index), line
_LAST = 1 << 62  # orders the streams' unfinished last lines after everything else


_MERGE_BYTES = 4096  # consecutive chunks of one stream are joined up to this size
_MAX_CHUNKS = 1024  # chunks a ring holds at most, whatever their size (~100 KB)


class _Ring:
    """The last `budget` bytes (or a little more) of one stream past the limit, as the chunks
    they arrived in; nothing is split until the end. Chunks of a stream that follow each other
    with nothing from the other stream between them are joined (up to `_MERGE_BYTES`), so a
    program writing a byte at a time still fills the ring with lines, not with one-byte chunks;
    the order of the two streams' chunks is kept exactly. Only output whose streams alternate
    in tiny writes can exceed `_MAX_CHUNKS`, and then the tail is shorter than its budget."""

    def __init__(self, budget: int, events: int) -> None:
        self.budget = budget
        self.events = events
        self.max_chunks = max(events + 2, _MAX_CHUNKS)
        self.chunks: deque[tuple[int, bytes | bytearray]] = deque()
        self.size = 0
        self.clean = True  # the first chunk starts right after the last byte kept before it

    def add(self, arrival: int, data: bytes) -> None:
        if len(data) > self.budget:  # older chunks cannot be part of the tail
            self.chunks.clear()
            self.size = 0
            self.clean = data[-self.budget - 1] == 0x0A
            data = data[-self.budget :]
        elif self.chunks and self.chunks[-1][0] == arrival - 1:
            last = self.chunks[-1][1]
            if len(last) + len(data) <= min(_MERGE_BYTES, self.budget):
                joined = last if isinstance(last, bytearray) else bytearray(last)
                joined += data  # amortised: no copy of what is there already
                self.chunks[-1] = (arrival, joined)
                self.size += len(data)
                self._bound()
                return
        self.chunks.append((arrival, data))
        self.size += len(data)
        self._bound()

    def _bound(self) -> None:
        while (
            self.size - len(self.chunks[0][1]) >= self.budget or len(self.chunks) > self.max_chunks
        ):
            self._evict()

    def _evict(self) -> None:
        _, old = self.chunks.popleft()
        self.size -= len(old)
        self.clean = old.endswith(b"\n")

    def _trim(self) -> None:
        """Drop the chunks before the last `events` lines: no tail reaches back that far."""
        newlines = 0
        for i in range(len(self.chunks) - 1, 0, -1):
            newlines += self.chunks[i][1].count(b"\n")
            if newlines > self.events:
                for _ in range(i):
                    self._evict()
                return

    def lines(self, max_line: int) -> list[Ordered]:
        """The chunks split into lines, once; a first line whose start fell out is dropped."""
        self._trim()
        splitter = LineSplitter(max_line)
        skip = not self.clean
        out: list[Ordered] = []
        for arrival, chunk in self.chunks:
            data = bytes(chunk)
            if skip:
                cut = data.find(b"\n")
                if cut < 0:
                    continue
                data = data[cut + 1 :]
                skip = False
            out += [((arrival, i), line) for i, line in enumerate(splitter.feed(data))]
        out += [((_LAST, i), line) for i, line in enumerate(splitter.flush())]
        return out


def _take(lines: list[Ordered], skip: int, max_bytes: int, max_events: int) -> tuple[int, int]:
    """How many more lines, going back from the end past `skip` of them, fit in the budget;
    and their bytes."""
    n, used = 0, 0
    for i in range(len(lines) - skip - 1, -1, -1):
        size = lines[i][1][2]
        if n + 1 > max_events or used + size > max_bytes:
            break
        n += 1
        used += size
    return n, used


def gap_line(data: Mapping[str, Any]) -> str | None:
    """The line `GET /commands/{id}/output` shows for a `truncated` event: where output is
    missing, and how much. None where nothing is missing."""
    if data.get("phase") != "end":
        return None
    dropped = f"{data.get('dropped_bytes', 0):,} bytes ({data.get('dropped_lines', 0):,} lines)"
    if data.get("action") == OutputLimitAction.KILL.value:
        return f"[rdev: output cap reached; the command was stopped; {dropped} after it not kept]\n"
    if not data.get("dropped_bytes"):
        return None
    return f"[rdev: output cap reached; {dropped} dropped here; the first and the last part kept]\n"
