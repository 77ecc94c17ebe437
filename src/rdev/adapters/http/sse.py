"""Server-Sent Events framing for a command's stream. Data is always one line of JSON, so no
output (NUL, bare CR, ANSI, invalid UTF-8) can break the framing."""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rdev.domain.errors import InvalidEventId
from rdev.domain.models import Event, EventType
from rdev.domain.text import utf8
from rdev.runtime.streams import HubClosed, SlowConsumer, StreamHub, Subscription

FINAL = "final"
_SEQ = re.compile(r"[0-9]{1,12}")
_NAMES = {t: t.value for t in EventType}  # .value on an enum member is slow in hot loops
RETRY_MS = 2000


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def frame(event: Event) -> str:
    suffix = FINAL if event.type is EventType.COMPLETE else str(event.seq)
    data = event.encoded if event.encoded is not None else _json(event.data)
    return f"id: {event.command_id}:{suffix}\nevent: {_NAMES[event.type]}\ndata: {data}\n\n"


def bare(type_: EventType, data: dict[str, Any]) -> str:
    return f"event: {type_.value}\ndata: {_json(data)}\n\n"


def heartbeat() -> str:
    return bare(EventType.HEARTBEAT, {"timestamp": datetime.now(UTC).isoformat()})


def parse_last_event_id(value: str | None, command_id: str) -> int | None:
    """The sequence number to resume after; None when the client already has `complete`."""
    if not value:
        return 0
    cid, sep, n = value.rpartition(":")
    if not sep or cid != command_id:
        raise InvalidEventId(
            "Last-Event-ID does not belong to this stream", details={"last_event_id": value[:100]}
        )
    if n == FINAL:
        return None
    if not _SEQ.fullmatch(n):  # not isdigit(): it takes "²", which int() then refuses
        raise InvalidEventId("Last-Event-ID is malformed", details={"last_event_id": value[:100]})
    return int(n)


_RENDERED: OrderedDict[tuple[str, int, int], str] = OrderedDict()
_RENDERED_MAX = 256


def frames(batch: list[Event]) -> str:
    """The frames of a batch of one command's events. Readers of one command mostly take the
    same batches, so the text is rendered once and shared (a small LRU), not once per reader."""
    key = (batch[0].command_id, batch[0].seq, batch[-1].seq)
    text = _RENDERED.get(key)
    if text is None:
        text = _render(batch)
        _RENDERED[key] = text
        if len(_RENDERED) > _RENDERED_MAX:
            _RENDERED.popitem(last=False)
    return text


def _render(batch: list[Event]) -> str:
    prefix = f"id: {batch[0].command_id}:"
    parts = []
    for e in batch:
        if e.type is EventType.COMPLETE:
            parts.append(frame(e))
            continue
        data = e.encoded if e.encoded is not None else _json(e.data)
        parts.append(f"{prefix}{e.seq}\nevent: {_NAMES[e.type]}\ndata: {data}\n\n")
    return "".join(parts)


HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
    "Content-Type": "text/event-stream; charset=utf-8",
}
_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
SLOW_CONSUMER = bare(EventType.ERROR, {
    "code": "SLOW_CONSUMER",
    "message": "the client fell behind; reconnect with Last-Event-ID to resume",
})  # fmt: skip
SHUTTING_DOWN = "retry: 1000\n" + bare(EventType.ERROR, {
    "code": "SHUTTING_DOWN",
    "message": "this replica is shutting down; reconnect with Last-Event-ID to resume",
})  # fmt: skip


class SseResponse(Response):
    """A command's event stream as one coroutine: the greeting, then the hub's batches as they
    come, a heartbeat after each quiet `heartbeat` seconds, until `complete` (or SLOW_CONSUMER,
    or SHUTTING_DOWN). Ten thousand idle streams are ten thousand of these suspended, so there
    is no generator chain, no second task and nothing per stream that a wait does not need.

    uvicorn drops writes to a client that has gone, so the stream asks whether it has (without
    waiting) before each heartbeat and, while events flow, once per heartbeat period: a
    disconnect ends the stream and frees its subscription by the next heartbeat."""

    media_type = "text/event-stream"

    def __init__(
        self, greeting: str, *, hub: StreamHub, command_id: str, after: int | None,
        heartbeat: float, release: Callable[[], None] | None = None, status_code: int = 200,
        on_sent: Callable[[int], None] | None = None, subscription: Subscription | None = None,
    ) -> None:  # fmt: skip
        """`after`: the sequence number to resume after; None: the greeting is the whole stream
        (it may then hold a `complete` built from the command's row: see StreamHub.resume).
        `release` is called once the stream has ended, however it ends (its capacity slot).
        `subscription`: one made already, at `after` (its first read may be under way); the
        stream closes it when it ends, however it ends.
        (`status_code` with its default is what FastAPI reads to document the response.)"""
        self.status_code = status_code
        self.background = None
        self.raw_headers = list(_RAW_HEADERS)
        self._greeting = greeting
        self._hub = hub
        self._command_id = command_id
        self._after = after
        self._heartbeat = heartbeat
        self._release = release
        self._on_sent = on_sent  # told the number of events of each batch sent (metrics)
        self._subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send)
        finally:
            if self._subscription is not None:
                self._subscription.close()
            if self._release is not None:
                self._release()

    async def _stream(self, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await _write(send, self._greeting, more=self._after is not None)
        if self._after is None:
            return  # the greeting is the whole stream
        self._greeting = ""  # sent; not held for the life of the stream
        loop = asyncio.get_running_loop()
        probe_at = loop.time() + self._heartbeat
        sub = self._subscription or self._hub.subscribe(self._command_id, after=self._after)
        try:
            while True:
                try:
                    batch = await sub.next_batch(self._heartbeat)
                except (SlowConsumer, HubClosed) as e:
                    last = SHUTTING_DOWN if isinstance(e, HubClosed) else SLOW_CONSUMER
                    await _write(send, last, more=False)
                    return
                if batch == []:
                    continue
                if batch is None or loop.time() >= probe_at:
                    if await _gone(receive):
                        return  # nothing more to send
                    probe_at = loop.time() + self._heartbeat
                done = batch is not None and batch[-1].type is EventType.COMPLETE
                await _write(send, heartbeat() if batch is None else frames(batch), more=not done)
                if batch is not None and self._on_sent is not None:
                    self._on_sent(len(batch))
                if done:
                    return
                batch = None  # hold no delivered batch through the next wait
        except OSError:
            return  # a server that reports a send to a client that has gone (uvicorn drops it)
        finally:
            sub.close()


async def _write(send: Send, text: str, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": utf8(text), "more_body": more})


async def _gone(receive: Receive) -> bool:
    """Whether the client has disconnected, without waiting: once it has, receive() answers at
    once; until then it waits, and the zero timeout ends that wait."""
    try:
        async with asyncio.timeout(0):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True
