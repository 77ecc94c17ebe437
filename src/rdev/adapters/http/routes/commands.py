"""Submitting, listing, reading, cancelling commands and reading their stored output."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse, StreamingResponse

from rdev.adapters.http.deps import (
    Caller,
    ClaudeRun,
    CommandsCancel,
    CommandsRead,
    GitRun,
    Services,
    ShellRun,
    ok,
)
from rdev.adapters.http.documented import (
    COMMAND_PAGE,
    ONE_COMMAND,
    SUBMITTED,
    CommandId,
    ProjectId,
)
from rdev.adapters.http.schemas import ClaudeRun as ClaudeBody
from rdev.adapters.http.schemas import GitRun as GitBody
from rdev.adapters.http.schemas import ShellRun as ShellBody
from rdev.adapters.http.schemas import command_view
from rdev.adapters.http.state import HttpServices
from rdev.domain import git_env, policy
from rdev.domain.argv import ClaudeSpec, claude_argv
from rdev.domain.models import CommandKind, CommandStatus, OutputLimitAction, Priority
from rdev.services.commands import Submission, build_shell_argv

router = APIRouter(tags=["commands"])
_CURSOR = "`meta.next_cursor` of the previous page"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=f"^{policy.IDEMPOTENCY_KEY.pattern}$",
        description="Makes a retry safe: the same key and body answer the first command (200)",
    ),
]


async def _submit(
    svc: HttpServices, caller: Caller, request: Request, sub: Submission,
) -> JSONResponse:  # fmt: skip
    structlog.contextvars.bind_contextvars(project=sub.project_id)  # this request's logs
    result = await svc.commands.submit(sub, key=caller.key, actor=caller.actor)
    structlog.contextvars.bind_contextvars(command_id=result.command.id)
    view = command_view(result.command, queue_position=result.queue_position)
    location = {"Location": f"/commands/{result.command.id}"}
    return ok(view, request, status=201 if result.created else 200, headers=location)


def _common(body: Any, project_id: str, kind: CommandKind, argv: tuple[str, ...],
            idem: str | None, **extra: Any) -> Submission:  # fmt: skip
    return Submission(
        project_id=project_id,
        kind=kind,
        argv=argv,
        timeout_seconds=body.timeout_seconds,
        priority=Priority(body.priority),
        on_output_limit=OutputLimitAction(body.on_output_limit),
        idempotency_key=idem,
        # defaults are left out, so a request's idempotency hash is what it was before
        # on_output_limit and max_budget_usd existed
        body=body.model_dump(mode="json", exclude=_defaults_left_out(body)),
        **extra,
    )


def _defaults_left_out(body: Any) -> set[str] | None:
    out = {"on_output_limit"} if body.on_output_limit == "truncate" else set()
    if getattr(body, "max_budget_usd", 0) is None:
        out.add("max_budget_usd")
    return out or None


@router.post(
    "/projects/{project_id}/claude", status_code=201, operation_id="run_claude", responses=SUBMITTED
)
async def run_claude(
    project_id: ProjectId, body: ClaudeBody, request: Request,
    caller: ClaudeRun, svc: Services, idem: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    project = await svc.commands.project_for(caller.key, project_id, CommandKind.CLAUDE)
    spec = ClaudeSpec(**body.model_dump(exclude={"timeout_seconds", "priority", "on_output_limit"}))
    argv = claude_argv(svc.commands.claude_bin, spec, workspace_config=project.allow_claude_shell)
    await svc.commands.check_claude(caller.key, project, spec)
    sub = _common(body, project_id, CommandKind.CLAUDE, argv, idem)
    return await _submit(svc, caller, request, sub)


@router.post(
    "/projects/{project_id}/shell", status_code=201, operation_id="run_shell", responses=SUBMITTED
)
async def run_shell(
    project_id: ProjectId, body: ShellBody, request: Request,
    caller: ShellRun, svc: Services, idem: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    project = await svc.commands.project_for(caller.key, project_id, CommandKind.SHELL)
    argv = build_shell_argv(command=body.command, argv=body.argv, project=project)
    cwd = policy.check_relative_path(body.cwd) if body.cwd else None
    env = policy.check_env(body.env)
    sub = _common(body, project_id, CommandKind.SHELL, argv, idem, cwd=cwd, env=env)
    return await _submit(svc, caller, request, sub)


@router.post(
    "/projects/{project_id}/git", status_code=201, operation_id="run_git", responses=SUBMITTED
)
async def run_git(
    project_id: ProjectId, body: GitBody, request: Request,
    caller: GitRun, svc: Services, idem: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    project = await svc.commands.project_for(caller.key, project_id, CommandKind.GIT)
    argv = policy.check_git_args(body.args)
    cwd = policy.check_relative_path(body.cwd) if body.cwd else None
    env = git_env.environment(project.workspace)
    sub = _common(body, project_id, CommandKind.GIT, argv, idem, cwd=cwd, env=env)
    return await _submit(svc, caller, request, sub)


@router.get("/projects/{project_id}/commands", operation_id="list_commands", responses=COMMAND_PAGE)
async def list_commands(
    project_id: ProjectId, request: Request, caller: CommandsRead, svc: Services,
    status: Annotated[CommandStatus | None, Query(description="Only this status")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description=_CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Commands per page")] = 50,
) -> JSONResponse:  # fmt: skip
    page = await svc.commands.list(
        caller.key, project_id, status=status, cursor=cursor, limit=limit
    )
    views = [command_view(c) for c in page.items]
    return ok(views, request, next_cursor=page.next_cursor)


@router.get("/commands/{command_id}", operation_id="get_command", responses=ONE_COMMAND)
async def get_command(
    command_id: CommandId, request: Request, caller: CommandsRead, svc: Services
) -> JSONResponse:
    cmd = await svc.commands.get(caller.key, command_id)
    return ok(command_view(cmd, queue_position=await svc.commands.position(cmd)), request)


@router.post("/commands/{command_id}/cancel", operation_id="cancel_command", responses=ONE_COMMAND)
async def cancel_command(
    command_id: CommandId, request: Request, caller: CommandsCancel, svc: Services
) -> JSONResponse:
    cmd = await svc.commands.cancel(caller.key, command_id, actor=caller.actor)
    return ok(command_view(cmd), request)


@router.get(
    "/commands/{command_id}/output", operation_id="command_output",
    response_class=StreamingResponse,
    responses={200: {
        "description": "The stored output, as written (head and tail past the cap)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }},
)  # fmt: skip
async def command_output(
    command_id: CommandId, caller: CommandsRead, svc: Services
) -> StreamingResponse:
    chunks = await svc.commands.output(caller.key, command_id)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")
