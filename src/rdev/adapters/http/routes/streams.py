"""SSE streams of a command's events: `GET /commands/{id}/events` and the seed's
`GET /projects/{id}/events?stream_id=`.

A resume is checked against the log before the stream opens (`StreamHub.resume`): an id past
the log is 400 INVALID_EVENT_ID, and a client that already has `complete` gets 204 No Content,
which is what makes a browser's EventSource stop reconnecting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from rdev.adapters.http import sse
from rdev.adapters.http.deps import Caller, CommandsRead, Services, caller_for, ok, presented_key
from rdev.adapters.http.documented import EVENTS, KEYED, CommandId, ProjectId
from rdev.adapters.http.lean import serves
from rdev.adapters.http.responses import StreamTokenResponse
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import InvalidInput, NotFound, Unauthenticated
from rdev.domain.models import Command, EventType, Scope
from rdev.runtime.streams import Subscription

twins = APIRouter(tags=["streams"], responses=KEYED)
router = APIRouter(tags=["streams"])
_EVENT_ID = "An event id this stream sent (`COMMAND:SEQ`, or `COMMAND:final`): resume after it"
LastEventIdHeader = Annotated[
    str | None, Header(alias="Last-Event-ID", max_length=200, description=_EVENT_ID)
]
LastEventIdQuery = Annotated[str | None, Query(max_length=200, description=_EVENT_ID)]
TokenQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description=(
            "A stream token from `POST /commands/{command_id}/stream-token`, instead of an API "
            "key (for a browser's EventSource, which cannot send headers). Not with a key."
        ),
    ),
]

# The streams are served by lean routes (see lean.py) whose endpoints are bare ASGI apps: an
# idle stream then holds no FastAPI request machinery and no request/response wrapper frames,
# which is most of what ten thousand open streams cost. Errors raised before the stream starts
# still reach the error table (through the app's ExceptionMiddleware). The twins below declare
# them for OpenAPI, and the lean routes are built from that declaration.


async def _key_or_token(request: Request, svc: HttpServices, scope: Scope) -> Caller:
    """The caller of a command stream: a key, or a stream token (docs/browser.md) standing for
    the key that made it, checked as if that key had been presented (scope, IP allow-list,
    rate limit). One credential per request."""
    token = request.query_params.get("token")
    if token is None:
        return await caller_for(request, svc, scope)
    tokens = svc.stream_tokens
    if tokens is None or presented_key(request) is not None:
        raise Unauthenticated("present either an API key or a stream token, not both")
    command_id = request.path_params["command_id"]
    return await caller_for(
        request, svc, scope, verify=lambda: tokens.authenticate(token, command_id)
    )


async def _command_stream(request: Request, caller: Caller, svc: HttpServices) -> Response:
    command_id = request.path_params["command_id"]
    early = None
    if _resume_point(request) is None and command_id.startswith("cmd_"):
        # a new stream: subscribe now and read the log's first page alongside the command's
        # own read (nothing is sent before the caller is known to see the command)
        early = svc.streams.subscribe(command_id, after=0)
        early.prefetch()
    try:
        cmd = await svc.commands.get(caller.key, command_id)
        return await _respond(svc, cmd, request, caller.key.id, early)
    except BaseException:
        if early is not None:
            early.close()
        raise


async def _project_stream(request: Request, caller: Caller, svc: HttpServices) -> Response:
    project_id = request.path_params["project_id"]
    stream_id = request.query_params.get("stream_id")
    if not stream_id:
        raise InvalidInput("stream_id is required", details={"field": "stream_id"})
    cmd = await svc.commands.get(caller.key, stream_id[:100])
    if cmd.project_id != project_id:
        raise NotFound(f"stream {stream_id} not found")
    return await _respond(svc, cmd, request, caller.key.id)


def _resume_point(request: Request) -> str | None:
    given = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return given[:200] if given else None


async def _respond(
    svc: HttpServices, cmd: Command, request: Request, key_id: str,
    early: Subscription | None = None,
) -> Response:  # fmt: skip
    """`early`: the stream's subscription at 0, made before the command was read."""
    start = await svc.streams.resume(cmd, sse.parse_last_event_id(_resume_point(request), cmd.id))
    if early is not None and (start.ended or start.final is not None or start.after != 0):
        early.close()  # the stream does not tail from the start
        early = None
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
        subscription=early,
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


_RESUME_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "The client already has `complete` (Last-Event-ID at `C:final`)"},
}


@twins.get(
    "/commands/{command_id}/events", operation_id="command_events",
    response_class=sse.SseResponse, responses=EVENTS | _RESUME_RESPONSES,
)  # fmt: skip
@serves(_command_stream, authorize=_key_or_token)
async def command_events(
    command_id: CommandId, caller: CommandsRead,
    last_event_id_header: LastEventIdHeader = None, last_event_id: LastEventIdQuery = None,
    token: TokenQuery = None,
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


@router.post(
    "/commands/{command_id}/stream-token", operation_id="command_stream_token",
    responses={200: {"model": StreamTokenResponse, "description": (
        "A token for this command's event stream alone, to pass as "
        "`GET /commands/{command_id}/events?token=…` where headers cannot be sent (a browser's "
        "EventSource). It expires after RDEV_STREAM_TOKEN_TTL_SECONDS (or with the key) and "
        "dies with the key that made it (revoked, expired or rotated)."
    )}},
)  # fmt: skip
async def command_stream_token(
    command_id: CommandId, request: Request, caller: CommandsRead, svc: Services
) -> Response:
    """A short-lived token to read this command's event stream from a browser."""
    cmd = await svc.commands.get(caller.key, command_id)
    if svc.stream_tokens is None:
        raise NotFound("stream tokens are not enabled")
    issued = svc.stream_tokens.issue(caller.key, cmd)
    return ok({
        "token": issued.token,
        "command_id": cmd.id,
        "expires_at": issued.expires_at.isoformat(),
        "events_url": f"/commands/{cmd.id}/events?token={issued.token}",
    }, request)  # fmt: skip
