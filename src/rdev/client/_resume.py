"""Where a command's stream stands across reconnects, shared by the sync and async handles.

The stream is resumed from the last stored event id (`Last-Event-ID`) after a network drop, a
stream that ends without `complete`, an `error` event that asks for it (`SLOW_CONSUMER`,
`SHUTTING_DOWN`), or a 429/502/503 on reconnecting (a restarting or overloaded server). Events
are also de-duplicated by sequence number, so nothing is ever yielded twice.

Retries follow a bounded exponential schedule written out here rather than taken from a retry
library (stamina, tenacity): the SDK depends on httpx and httpx-sse only, and the rule is a few
lines — 0.1 s doubling to 2 s (or the server's Retry-After), given up when no new event has
arrived for `resume_timeout` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from rdev.client.errors import ConnectionFailed, RdevError
from rdev.client.models import Event

TRANSIENT = frozenset({"SLOW_CONSUMER", "SHUTTING_DOWN"})
RETRYABLE_STATUS = frozenset({429, 502, 503})
FIRST_DELAY = 0.1
MAX_DELAY = 2.0


class Reconnect:
    """Returned by `accept` for an event that ends this connection but not the stream."""


RECONNECT = Reconnect()


class StreamState:
    def __init__(
        self,
        command_id: str,
        *,
        last_event_id: str | None = None,
        resume_timeout: float = 60.0,
        heartbeats: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command_id = command_id
        self.last_id = last_event_id
        self.last_seq = 0
        if last_event_id:
            tail = last_event_id.rpartition(":")[2]
            self.last_seq = int(tail) if tail.isdigit() else 0
        self.done = bool(last_event_id and last_event_id.endswith(":final"))
        self.reconnects = 0
        self.resume_timeout = resume_timeout
        self._heartbeats = heartbeats
        self._clock = clock
        self._connected = False
        self._attempt = 0
        self._progress_at = clock()
        self._conn_last: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.last_id} if self.last_id else {}

    def new_connection(self) -> None:
        self._conn_last = None

    def _unstored(self, event: Event) -> Event:
        """The event with `id` None when it is not stored. An SSE parser hands every event the
        last id seen on the connection (the spec's "last event ID buffer"), so an event that
        came without an id line carries its predecessor's; a stored event always has a new
        one."""
        if event.id is not None and event.id == self._conn_last:
            return replace(event, id=None)
        self._conn_last = event.id or self._conn_last
        return event

    def accept(self, event: Event) -> Event | Reconnect | None:
        """What to do with one received event: yield it, drop it (None), or reconnect."""
        event = self._unstored(event)
        if event.event == "heartbeat":
            return event if self._heartbeats else None
        if event.event == "error" and event.id is None:
            code = str(event.data.get("code", ""))
            if code in TRANSIENT:
                return RECONNECT
            raise RdevError(code or "STREAM_ERROR", str(event.data.get("message", "")))
        if event.event == "connected":
            first = not self._connected
            self._connected = True
            return event if first else None
        if event.id is None:
            return event
        if event.event == "complete":
            self.done = True
        else:
            seq = event.seq
            if seq is None or seq <= self.last_seq:
                return None  # already yielded before a reconnect
            self.last_seq = seq
        self.last_id = event.id
        self._attempt = 0
        self._progress_at = self._clock()
        return event

    def retry_delay(self, cause: BaseException | None) -> float:
        """The wait before reconnecting after `cause` (None: the stream ended early, or the
        server asked to reconnect); raises when `cause` is final or time is up."""
        retry_after: float | None = None
        if isinstance(cause, RdevError):
            if cause.status not in RETRYABLE_STATUS:
                raise cause
            retry_after = cause.retry_after
        waited = self._clock() - self._progress_at
        if waited >= self.resume_timeout:
            if isinstance(cause, RdevError):
                raise cause
            raise ConnectionFailed(
                "CONNECTION", f"stream of {self.command_id} lost for {waited:.0f}s: {cause!r}"
            ) from cause
        delay = 0.0 if cause is None and self._attempt == 0 else FIRST_DELAY * 2**self._attempt
        delay = min(MAX_DELAY, delay)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._attempt = min(self._attempt + 1, 10)
        self.reconnects += 1
        return max(0.0, min(delay, self.resume_timeout - waited))


def is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError)
