"""Riding out a database outage. While the database cannot be reached, a running command must
keep running and lose nothing, so the writes on a command's path wait the outage out instead of
failing:

- `persist(op)` runs a store operation again, with capped exponential backoff (stamina), for as
  long as it raises DatabaseUnavailable. It has no deadline: the only place to record a
  command's output and outcome is the database that is away, so giving up would only lose them;
  the process is bounded by its own timeout, memory by `OutageBuffer`, and shutdown cancels the
  wait. Any other error is raised at once.
- `OutageBuffer` is one command's memory budget for that wait. While its log is down the writer
  keeps taking output, up to `limit_bytes`; past that, lines are dropped and counted, and once
  the log is back the writer records the counts as a `truncated` event at the place of the gap,
  never silently. It also notices when the log has been taken over by another writer (another
  replica swept the command while this one was cut off): nothing more is written then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import stamina

from rdev.domain.errors import Conflict, DatabaseUnavailable
from rdev.domain.models import Event
from rdev.ports import EventLog

T = TypeVar("T")
RETRY_INITIAL = 0.05  # seconds before the first retry
RETRY_MAX = 2.0  # the longest wait between attempts: a recovered database is used within 2 s
DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024


async def persist(
    op: Callable[[], Awaitable[T]], *, on_unavailable: Callable[[], None] | None = None
) -> T:
    """`op()`, retried while the database is unavailable (`on_unavailable` is told each time)."""

    def retry(error: Exception) -> bool:
        if not isinstance(error, DatabaseUnavailable):
            return False
        if on_unavailable is not None:
            on_unavailable()
        return True

    async for attempt in stamina.retry_context(
        on=retry,
        attempts=None,
        timeout=None,
        wait_initial=RETRY_INITIAL,
        wait_max=RETRY_MAX,
        wait_jitter=RETRY_INITIAL,
    ):
        with attempt:
            return await op()
    raise AssertionError("unreachable: the retries have no limit")  # pragma: no cover


class OutageBuffer:
    """See the module docstring. `down` is True from the first failed append to the next one
    that succeeds; `held` counts the bytes taken in meanwhile until the writer has drained."""

    __slots__ = (
        "_went_down",
        "down",
        "dropped_bytes",
        "dropped_lines",
        "full",
        "held",
        "limit_bytes",
        "superseded",
    )

    def __init__(self, limit_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.down = False
        self.full = False
        self.superseded = False
        self.held = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self._went_down = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether output must pass through `admit` or a gap waits to be recorded."""
        return self.down or self.dropped_lines > 0

    def admit(self, size: int) -> bool:
        """While the log is down: whether a line of `size` bytes is held (else it is dropped and
        counted). Once one is dropped every later one is, until the log is back, so the gap
        sits in one place."""
        if not self.full and self.held + size <= self.limit_bytes:
            self.held += size
            return True
        self.full = True
        self.dropped_lines += 1
        self.dropped_bytes += size
        return False

    def gap(self) -> dict[str, Any] | None:
        """The data of the `truncated` event for the lines dropped, once the log is back (and
        then only once); None while it is still down or when nothing was dropped."""
        if self.down or not self.dropped_lines:
            return None
        data = {
            "reason": "database_unavailable",
            "dropped_lines": self.dropped_lines,
            "dropped_bytes": self.dropped_bytes,
            "buffer_bytes": self.limit_bytes,
        }
        self.dropped_lines = self.dropped_bytes = 0
        return data

    async def append(self, log: EventLog, batch: Sequence[Event]) -> bool:
        """Append `batch`, waiting out an outage; False when the log now belongs to another
        writer (that batch and every later one are not written)."""
        if self.superseded:
            return False
        try:
            await persist(lambda: log.append(batch), on_unavailable=self._note_down)
        except Conflict:
            self.superseded = True
            return False
        if self.down:
            self.down = self.full = False
            self._went_down.clear()
        return True

    def drained(self) -> None:
        """Everything taken in is written: the budget is whole again."""
        if not self.down:
            self.held = 0

    async def settle(self, *waits: asyncio.Future[Any]) -> None:
        """Wait for the first of `waits`, unless the log goes down first: from then on the
        buffer, not the producer, absorbs the output (a producer that waits stops reading the
        process's pipes, and the process stalls)."""
        if self.down or any(w.done() for w in waits):
            return
        went_down: asyncio.Future[Any] = asyncio.ensure_future(self._went_down.wait())
        try:
            await asyncio.wait({*waits, went_down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            went_down.cancel()

    def _note_down(self) -> None:
        self.down = True
        self._went_down.set()
