"""SSE streams of a command's events: `GET /commands/{id}/events` and the seed's
`GET /projects/{id}/events?stream_id=`.

A resume is checked against the log before the stream opens (`StreamHub.resume`): an id past
the log is 400 INVALID_EVENT_ID, and a client that already has `complete` gets 204 No Content,
which is what makes a browser's EventSource stop reconnecting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from rdev.adapters.http import sse
from rdev.adapters.http.deps import CommandsRead, Services, caller_for
from rdev.adapters.http.documented import EVENTS
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import InvalidInput, NotFound
from rdev.domain.models import Command, EventType, Scope

router = APIRouter(tags=["streams"])
LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)]
LastEventIdQuery = Annotated[str | None, Query(max_length=200)]

# The streams are served by plain Starlette routes (`lean_routes`) whose endpoints are bare ASGI
# apps: an idle stream then holds no FastAPI request machinery and no request/response wrapper
# frames, which is most of what ten thousand open streams cost. Errors raised before the stream
# starts still reach the error table (through the app's ExceptionMiddleware). The FastAPI
# declarations below document the same endpoints in OpenAPI and share the code.


async def _command_stream(request: Request, svc: HttpServices, command_id: str) -> Response:
    caller = await caller_for(request, svc, Scope.COMMANDS_READ)
    cmd = await svc.commands.get(caller.key, command_id)
    return await _respond(svc, cmd, request, caller.key.id)


async def _project_stream(
    request: Request, svc: HttpServices, project_id: str, stream_id: str | None
) -> Response:
    caller = await caller_for(request, svc, Scope.COMMANDS_READ)
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
    release = _tailing(svc, key_id, cmd.project_id) if after is not None else None
    return sse.SseResponse(
        greeting, hub=svc.streams, command_id=cmd.id, after=after,
        heartbeat=svc.heartbeat_seconds, release=release, on_sent=svc.metrics.events_sent,
    )  # fmt: skip


def _tailing(svc: HttpServices, key_id: str, project: str) -> Callable[[], None]:
    """Take the stream's capacity slot and count it in rdev_active_streams, until `release`."""
    free_slot = svc.stream_slots.acquire(key_id)
    svc.metrics.stream_opened(project)

    counted = True

    def release() -> None:  # may be called more than once, like the slot's
        nonlocal counted
        free_slot()
        if counted:
            counted = False
            svc.metrics.stream_closed(project)

    return release


async def _open_command_stream(request: Request) -> Response:
    svc: HttpServices = request.app.state.services
    return await _command_stream(request, svc, request.path_params["command_id"])


async def _open_project_stream(request: Request) -> Response:
    svc: HttpServices = request.app.state.services
    stream_id = request.query_params.get("stream_id")
    return await _project_stream(request, svc, request.path_params["project_id"], stream_id)


class _Lean:
    """A stream endpoint as a bare ASGI app; its request lives only while the stream opens."""

    def __init__(self, open_stream: Callable[[Request], Awaitable[Response]]) -> None:
        self._open = open_stream

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        response = await self._open(Request(scope, receive))
        await response(scope, receive, send)


lean_routes = [
    Route("/commands/{command_id}/events", _Lean(_open_command_stream), methods=["GET"]),
    Route("/projects/{project_id}/events", _Lean(_open_project_stream), methods=["GET"]),
]


_RESUME_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "The client already has `complete` (Last-Event-ID at `C:final`)"},
    400: {"description": "Last-Event-ID malformed, of another stream, or ahead of its events"},
}


@router.get(
    "/commands/{command_id}/events", operation_id="command_events",
    response_class=sse.SseResponse, responses=EVENTS | _RESUME_RESPONSES,
)  # fmt: skip
async def command_events(
    command_id: str, request: Request, caller: CommandsRead, svc: Services,
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
) -> Response:  # fmt: skip
    """A command's events as Server-Sent Events; resume with Last-Event-ID."""
    return await _command_stream(request, svc, command_id)


@router.get(
    "/projects/{project_id}/events", operation_id="project_events",
    response_class=sse.SseResponse, responses=EVENTS | _RESUME_RESPONSES,
)  # fmt: skip
async def project_events(
    project_id: str, request: Request, caller: CommandsRead, svc: Services,
    stream_id: Annotated[str, Query(max_length=100)],
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
) -> Response:  # fmt: skip
    """The seed's form of the same stream."""
    return await _project_stream(request, svc, project_id, stream_id)
