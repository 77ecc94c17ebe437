"""SSE streams of a command's events: `GET /commands/{id}/events` and the seed's
`GET /projects/{id}/events?stream_id=`.

A resume is checked against the log before the stream opens (`StreamHub.resume`): an id past
the log is 400 INVALID_EVENT_ID, and a client that already has `complete` gets 204 No Content,
which is what makes a browser's EventSource stop reconnecting."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from rdev.adapters.http import sse
from rdev.adapters.http.deps import Caller, CommandsRead
from rdev.adapters.http.documented import EVENTS, KEYED, CommandId, ProjectId
from rdev.adapters.http.lean import serves
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import InvalidInput, NotFound
from rdev.domain.models import Command, EventType

twins = APIRouter(tags=["streams"], responses=KEYED)
_EVENT_ID = "An event id this stream sent (`COMMAND:SEQ`, or `COMMAND:final`): resume after it"
LastEventIdHeader = Annotated[
    str | None, Header(alias="Last-Event-ID", max_length=200, description=_EVENT_ID)
]
LastEventIdQuery = Annotated[str | None, Query(max_length=200, description=_EVENT_ID)]

# The streams are served by lean routes (see lean.py) whose endpoints are bare ASGI apps: an
# idle stream then holds no FastAPI request machinery and no request/response wrapper frames,
# which is most of what ten thousand open streams cost. Errors raised before the stream starts
# still reach the error table (through the app's ExceptionMiddleware). The twins below declare
# them for OpenAPI, and the lean routes are built from that declaration.


async def _command_stream(request: Request, caller: Caller, svc: HttpServices) -> Response:
    cmd = await svc.commands.get(caller.key, request.path_params["command_id"])
    return await _respond(svc, cmd, request, caller.key.id)


async def _project_stream(request: Request, caller: Caller, svc: HttpServices) -> Response:
    project_id = request.path_params["project_id"]
    stream_id = request.query_params.get("stream_id")
    if not stream_id:
        raise InvalidInput("stream_id is required", details={"field": "stream_id"})
    cmd = await svc.commands.get(caller.key, stream_id[:100])
    if cmd.project_id != project_id:
        raise NotFound(f"stream {stream_id} not found")
    return await _respond(svc, cmd, request, caller.key.id)


async def _respond(svc: HttpServices, cmd: Command, request: Request, key_id: str) -> Response:
    given = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    start = await svc.streams.resume(
        cmd, sse.parse_last_event_id(given[:200] if given else None, cmd.id)
    )
    if start.ended:
        return Response(status_code=204, headers={"Cache-Control": "no-cache"})
    greeting = f"retry: {sse.RETRY_MS}\n" + sse.bare(
        EventType.CONNECTED,
        {"project": cmd.project_id, "stream_id": cmd.id, "status": cmd.status.value},
    )
    after: int | None = start.after
    if start.final is not None:
        greeting += sse.frame(start.final)
        after = None  # the greeting and that `complete` are the whole stream
    # a stream that will tail holds a slot of its key's and of the replica's until it ends
    release = svc.stream_slots.acquire(key_id) if after is not None else None
    return sse.SseResponse(
        greeting, hub=svc.streams, command_id=cmd.id, after=after,
        heartbeat=svc.heartbeat_seconds, release=release,
    )  # fmt: skip


_RESUME_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "The client already has `complete` (Last-Event-ID at `C:final`)"},
}


@twins.get(
    "/commands/{command_id}/events", operation_id="command_events",
    response_class=sse.SseResponse, responses=EVENTS | _RESUME_RESPONSES,
)  # fmt: skip
@serves(_command_stream)
async def command_events(
    command_id: CommandId, caller: CommandsRead,
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
) -> None:  # fmt: skip
    """A command's events as Server-Sent Events, until `complete`; resume with Last-Event-ID
    (header) or `last_event_id` (query, for clients that cannot set headers)."""


@twins.get(
    "/projects/{project_id}/events", operation_id="project_events",
    response_class=sse.SseResponse, responses=EVENTS | _RESUME_RESPONSES,
)  # fmt: skip
@serves(_project_stream)
async def project_events(
    project_id: ProjectId, caller: CommandsRead,
    stream_id: Annotated[
        str, Query(max_length=100, description="The command's id (its `stream_id`)")
    ],
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
) -> None:  # fmt: skip
    """The seed's form of the same stream: a command of the project, by its stream id."""
