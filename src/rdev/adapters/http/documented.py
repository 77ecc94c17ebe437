"""What OpenAPI says beyond the response models (responses.py): the path parameters, the
errors each kind of route may answer (their codes are filled in by openapi.py), each event of
the streams, and the links from a submitted command to the operations that read, cancel,
stream and resume it: they let a client generator, and schemathesis' stateful tests, follow a
command from its submission."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from rdev.adapters.http.deps import KEY_ERRORS
from rdev.adapters.http.responses import CommandPage, CommandResponse, ProjectList
from rdev.adapters.http.schemas import ERROR_CONTENT
from rdev.domain.models import CommandStatus, EventType

ProjectId = Annotated[str, Path(description="The project's id", examples=["demo"])]
KeyId = Annotated[str, Path(description="The key's id", examples=["k1a2b3c4d5e6"])]
ItemName = Annotated[str, Path(description="The item's name", examples=["review"])]
CommandId = Annotated[str, Path(description="The command's id", examples=["cmd_3f2a9c4b5d6e7f80"])]
WebhookId = Annotated[
    str, Path(description="The webhook's id", examples=["wh_0123456789abcdef0123"])
]
DeliveryId = Annotated[
    str, Path(description="The delivery's id", examples=["msg_0123456789abcdef01234567"])
]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": ERROR_CONTENT}


# Errors any route may answer, in the envelope (FastAPI's own 422 body is not what rdev sends).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed request (a bad event id, a refused command)."),
    404: _error("Not found, or not visible to this key."),
    409: _error("Conflict (already exists, or an Idempotency-Key used with another body)."),
    413: _error("Request body too large."),
    422: _error("Validation error; `details` names the fields."),
    502: _error("The backend could not run the command."),
    503: _error("The backend or this replica is unavailable."),
}
# What a route behind KeyAuth may answer; KEY_ERRORS last, so its 429 and 503 keep their
# Retry-After.
KEYED = ERRORS | KEY_ERRORS

# What the unauthenticated health routes may answer besides their own.
HEALTH_ERRORS: dict[int | str, dict[str, Any]] = {
    422: ERRORS[422],
    503: _error("Not ready (GET /ready), or this replica is shutting down."),
}


def _links(command: str, *, project: str | None) -> dict[str, dict[str, Any]]:
    """Links to what reads, cancels and streams the command at the JSON pointer `command`; the
    resumptions carry an event id of that command (`COMMAND:1`: resume after its first event).
    With `project` (a runtime expression naming its project), the seed's project stream too."""
    cid = {"command_id": f"$response.body#{command}"}
    after_first = f"{{$response.body#{command}}}:1"
    links: dict[str, dict[str, Any]] = {
        "GetCommand": {"operationId": "get_command", "parameters": cid},
        "CancelCommand": {"operationId": "cancel_command", "parameters": cid},
        "CommandEvents": {"operationId": "command_events", "parameters": cid},
        "ResumeCommandEvents": {
            "operationId": "command_events",
            "parameters": {**cid, "header.Last-Event-ID": after_first},
        },
        "CommandOutput": {"operationId": "command_output", "parameters": cid},
    }
    if project is not None:
        stream = {"project_id": project, "stream_id": f"$response.body#{command}"}
        links["ProjectEvents"] = {"operationId": "project_events", "parameters": stream}
        links["ResumeProjectEvents"] = {
            "operationId": "project_events",
            "parameters": {**stream, "query.last_event_id": after_first},
        }
    return links


_LINKS = _links("/data/command_id", project="$request.path.project_id")
SUBMITTED: dict[int | str, dict[str, Any]] = {
    201: {"model": CommandResponse, "description": "The command, queued.", "links": _LINKS},
    200: {
        "model": CommandResponse,
        "description": "The command an earlier request with this Idempotency-Key submitted.",
        "links": _LINKS,
    },
}
_PROJECT = {"project_id": "$response.body#/data/0/id"}
PROJECTS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ProjectList,
        "description": "The projects this key may see.",
        "links": {
            name: {"operationId": op, "parameters": _PROJECT}
            for name, op in (
                ("RunClaude", "run_claude"), ("RunShell", "run_shell"), ("RunGit", "run_git"),
                ("ListCommands", "list_commands"), ("GetProject", "get_project"),
            )
        },
    }
}  # fmt: skip
ONE_COMMAND: dict[int | str, dict[str, Any]] = {
    200: {
        "model": CommandResponse,
        "description": "The command.",
        "links": _links("/data/command_id", project=None),
    }
}
COMMAND_PAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": CommandPage,
        "description": "A page of the project's commands, newest first.",
        "links": _links("/data/0/command_id", project="$request.path.project_id"),
    }
}


def _event(name: EventType, data: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """One event type: its name, and its data as one line of JSON with these fields."""
    return {
        "properties": {
            "event": {"const": name.value},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"type": "object", "required": list(required), "properties": data},
            },
        },
    }


_STRING = {"type": "string"}
_STATUS = {"enum": [s.value for s in CommandStatus]}
_NULLABLE_INT = {"type": ["integer", "null"]}
# One event of a stream, as OpenAPI 3.2 documents Server-Sent Events: `itemSchema` is each event
# parsed into event, data, id and retry, and `schema` the whole stream, a sequence of them.
# The id, once given, is `COMMAND:SEQ` or `COMMAND:final`; a client carries it over to events
# that have none (heartbeats), as the SSE standard says.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": [t.value for t in EventType]},
        "data": _STRING,
        "id": {"type": "string", "pattern": r"^[^:\s]+:([0-9]+|final)$"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
    "oneOf": [
        _event(EventType.CONNECTED, {"project": _STRING, "stream_id": _STRING, "status": _STATUS},
               ("project", "stream_id", "status")),
        _event(EventType.STATUS, {"status": _STATUS, "queue_position": _NULLABLE_INT}, ("status",)),
        _event(EventType.OUTPUT, {"line": _STRING, "stream": {"enum": ["stdout", "stderr"]}},
               ("line", "stream")),
        _event(EventType.MESSAGE, {}, ()),
        _event(EventType.TRUNCATED, {"limit_bytes": {"type": "integer"}}, ("limit_bytes",)),
        _event(EventType.HEARTBEAT, {"timestamp": _STRING}, ("timestamp",)),
        _event(EventType.COMPLETE, {"status": _STATUS, "exit_code": _NULLABLE_INT,
                                    "duration_ms": _NULLABLE_INT}, ("status",)),
        _event(EventType.ERROR, {"code": _STRING, "message": _STRING}, ("code", "message")),
    ],
}  # fmt: skip
EVENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The command's events as Server-Sent Events, from the first or from "
        "after Last-Event-ID, until `complete`.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "array", "items": SSE_EVENT},
                "itemSchema": SSE_EVENT,
            }
        },
    }
}
