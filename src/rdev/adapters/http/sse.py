"""Server-Sent Events framing for a command's stream. Data is always one line of JSON, so no
output (NUL, bare CR, ANSI, invalid UTF-8) can break the framing."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rdev.domain.errors import InvalidEventId
from rdev.domain.models import Event, EventType

FINAL = "final"
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
    if not n.isdigit() or len(n) > 12:
        raise InvalidEventId("Last-Event-ID is malformed", details={"last_event_id": value[:100]})
    return int(n)


async def encode(batches: AsyncIterator[list[Event] | None]) -> AsyncIterator[str]:
    async for batch in batches:
        yield heartbeat() if batch is None else frames(batch)


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


class SseResponse(Response):
    """A lean event stream: one task watches for the client going away (no task group, no
    per-chunk tasks), so ten thousand idle streams stay cheap. A disconnect is noticed at the
    next chunk, which a heartbeat guarantees within RDEV_SSE_HEARTBEAT_SECONDS."""

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[str], headers: dict[str, str], status_code: int = 200
    ) -> None:
        self._chunks = chunks
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            async for chunk in self._chunks:
                if gone.done():
                    return
                await send(
                    {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client went away mid-send
        finally:
            gone.cancel()
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
