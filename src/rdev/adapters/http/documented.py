"""What OpenAPI says the command routes answer: the command view, every error as the one
envelope, and the links from a submitted command to the operations that read, cancel and
stream it. Routes return finished JSON responses (see deps.ok), so these models document and
are never used to validate or re-encode; they let a client generator, and schemathesis'
stateful tests, follow a command from its submission."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from rdev.adapters.http.schemas import ERROR_CONTENT
from rdev.domain.models import CommandStatus


class Meta(BaseModel):
    request_id: str
    next_cursor: str | None = None


class CommandView(BaseModel):
    """`schemas.command_view`, field for field."""

    command_id: str
    stream_id: str
    project: str
    kind: Literal["claude", "shell", "git"]
    argv: list[str]
    status: CommandStatus
    priority: Literal["high", "normal", "low"]
    queue_position: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    exit_code: int | None
    error: str | None
    timeout_seconds: int
    output_bytes: int
    truncated: bool
    session_id: str | None
    total_cost_usd: float | None
    num_turns: int | None
    is_error: bool | None
    events_url: str


class CommandResponse(BaseModel):
    data: CommandView
    meta: Meta


class CommandPage(BaseModel):
    data: list[CommandView]
    meta: Meta


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

_COMMAND = {"command_id": "$response.body#/data/command_id"}
_LINKS = {
    "GetCommand": {"operationId": "get_command", "parameters": _COMMAND},
    "CancelCommand": {"operationId": "cancel_command", "parameters": _COMMAND},
    "CommandEvents": {"operationId": "command_events", "parameters": _COMMAND},
    "CommandOutput": {"operationId": "command_output", "parameters": _COMMAND},
    "ProjectEvents": {
        "operationId": "project_events",
        "parameters": {
            "project_id": "$request.path.project_id",
            "stream_id": "$response.body#/data/command_id",
        },
    },
}
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
ONE_COMMAND: dict[int | str, dict[str, Any]] = {200: {"model": CommandResponse}}
_LISTED = {"command_id": "$response.body#/data/0/command_id"}
COMMAND_PAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": CommandPage,
        "description": "A page of the project's commands, newest first.",
        "links": {
            name: {"operationId": link["operationId"], "parameters": _LISTED}
            for name, link in _LINKS.items()
            if name != "ProjectEvents"
        },
    }
}
