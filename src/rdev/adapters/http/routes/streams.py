"""SSE streams of a command's events: `GET /commands/{id}/events` and the seed's
`GET /projects/{id}/events?stream_id=`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query

from rdev.adapters.http import sse
from rdev.adapters.http.deps import CommandsRead, Services
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import NotFound
from rdev.domain.models import Command, EventType
from rdev.runtime.streams import HubClosed, SlowConsumer

router = APIRouter(tags=["streams"])
LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)]
LastEventIdQuery = Annotated[str | None, Query(max_length=200)]

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


async def _events(svc: HttpServices, cmd: Command, after: int | None) -> AsyncIterator[str]:
    yield f"retry: {sse.RETRY_MS}\n" + sse.bare(
        EventType.CONNECTED,
        {"project": cmd.project_id, "stream_id": cmd.id, "status": cmd.status.value},
    )
    if after is None:
        return
    batches = svc.streams.follow(cmd.id, after=after, heartbeat=svc.heartbeat_seconds)
    try:
        async for chunk in sse.encode(batches):
            yield chunk
    except SlowConsumer:
        yield sse.bare(EventType.ERROR, {
            "code": "SLOW_CONSUMER",
            "message": "the client fell behind; reconnect with Last-Event-ID to resume",
        })  # fmt: skip
    except HubClosed:
        yield "retry: 1000\n" + sse.bare(EventType.ERROR, {
            "code": "SHUTTING_DOWN",
            "message": "this replica is shutting down; reconnect with Last-Event-ID to resume",
        })  # fmt: skip
    except asyncio.CancelledError:
        raise


async def _stream(
    svc: HttpServices, caller_key: object, cmd: Command, header: str | None, query: str | None
) -> sse.SseResponse:
    after = sse.parse_last_event_id(header or query, cmd.id)
    return sse.SseResponse(_events(svc, cmd, after), headers=HEADERS)


@router.get("/commands/{command_id}/events", response_class=sse.SseResponse)
async def command_events(
    command_id: str, caller: CommandsRead, svc: Services,
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
) -> sse.SseResponse:  # fmt: skip
    cmd = await svc.commands.get(caller.key, command_id)
    return await _stream(svc, caller.key, cmd, last_event_id_header, last_event_id)


@router.get("/projects/{project_id}/events", response_class=sse.SseResponse)
async def project_events(
    project_id: str, caller: CommandsRead, svc: Services,
    stream_id: Annotated[str, Query(max_length=100)],
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
) -> sse.SseResponse:  # fmt: skip
    cmd = await svc.commands.get(caller.key, stream_id)
    if cmd.project_id != project_id:
        raise NotFound(f"stream {stream_id} not found")
    return await _stream(svc, caller.key, cmd, last_event_id_header, last_event_id)
