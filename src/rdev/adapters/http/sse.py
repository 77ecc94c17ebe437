"""Server-Sent Events framing for a command's stream. Data is always one line of JSON, so no
output (NUL, bare CR, ANSI, invalid UTF-8) can break the framing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from rdev.domain.errors import InvalidEventId
from rdev.domain.models import Event, EventType

FINAL = "final"
RETRY_MS = 2000


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def frame(event: Event) -> str:
    suffix = FINAL if event.type is EventType.COMPLETE else str(event.seq)
    return (
        f"id: {event.command_id}:{suffix}\nevent: {event.type.value}\ndata: {_json(event.data)}\n\n"
    )


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
        yield heartbeat() if batch is None else "".join(frame(e) for e in batch)
