"""Submitting, reading and cancelling commands. Validation happens here, before anything is
stored; the dispatcher does the running."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rdev.domain import policy, settings
from rdev.domain.argv import ClaudeSpec, claude_prompt_index
from rdev.domain.claude import shell_grants
from rdev.domain.errors import (
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    ShuttingDown,
)
from rdev.domain.lifecycle import is_terminal, terminal_events
from rdev.domain.models import (
    ApiKey,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    OutputLimitAction,
    Page,
    Priority,
    Project,
    Scope,
)
from rdev.ports import Backend, CommandFilter, CommandStore, EventLog, Finish, Tracer
from rdev.runtime.dispatcher import Dispatcher
from rdev.runtime.streams import StreamHub
from rdev.runtime.tracing import NO_TRACER
from rdev.services.audit import Actor, AuditService
from rdev.services.claude_cli import ClaudeCli


def new_command_id() -> str:
    """Sortable by creation time, and free of ':' so `C:N` event ids parse."""
    return f"cmd_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class Submission:
    project_id: str
    kind: CommandKind
    argv: tuple[str, ...]
    cwd: str | None = None
    env: dict[str, str] | None = None
    timeout_seconds: int | None = None
    priority: Priority = Priority.NORMAL
    on_output_limit: OutputLimitAction = OutputLimitAction.TRUNCATE
    idempotency_key: str | None = None
    body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    command: Command
    queue_position: int | None
    created: bool


class CommandService:
    def __init__(
        self,
        *,
        store: CommandStore,
        log: EventLog,
        hub: StreamHub,
        backend: Backend,
        dispatcher: Dispatcher,
        audit: AuditService,
        clock: Callable[[], datetime],
        max_queue: int,
        default_timeout: int,
        max_timeout: int,
        claude_bin: str,
        claude_cli: ClaudeCli | None = None,
        budget: Callable[[ApiKey, str], Awaitable[None]] | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._store = store
        self._tracer = tracer
        self._log = log
        self._hub = hub
        self._backend = backend
        self._dispatcher = dispatcher
        self._audit = audit
        self._clock = clock
        self._max_queue = max_queue
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self.claude_bin = claude_bin
        self._claude_cli = claude_cli
        self._budget = budget  # refuses a Claude run past a daily budget (services/usage.py)
        self.accepting = True

    async def project_for(self, key: ApiKey, project_id: str, kind: CommandKind) -> Project:
        if not key.may_see(project_id):
            raise Forbidden(
                f"this key is not granted project {project_id}",
                details={"reason": "project", "project": project_id},
            )
        await self._backend.check()  # a backend that is down refuses work now, not later
        project = await self._backend.get_project(project_id)
        settings.check_accepts(project, kind)
        return project

    async def check_claude(self, key: ApiKey, project: Project, spec: ClaudeSpec) -> None:
        """Refuse a Claude run that amounts to a shell without shell rights (403), that
        resumes a session no command of this project ran in (404), or that could not start
        because the CLI is not there (503 CLAUDE_UNAVAILABLE)."""
        grants = shell_grants(spec.permission_mode, spec.allowed_tools)
        if grants and not _may_run_claude_shell(key, project):
            grant = grants[0]
            raise Forbidden(
                f"{grant.reason} {', '.join(grant.values)!r} lets Claude run any program: it "
                "needs the commands:shell scope or the project's allow_claude_shell",
                details={"reason": grant.reason, "values": list(grant.values)},
            )
        if spec.resume_session:
            session = policy.check_session_id(spec.resume_session)
            if not await self._store.has_claude_session(project.id, session):
                raise NotFound(
                    f"no command of project {project.id} ran in Claude session {session}",
                    details={"field": "resume_session"},
                )
        if self._claude_cli is not None:  # a missing CLI is a 503 now, not a failure later
            await self._claude_cli.check(project)

    async def submit(self, sub: Submission, *, key: ApiKey, actor: Actor) -> Submitted:
        if not self.accepting:
            raise ShuttingDown("this replica is shutting down; retry on another")
        request_hash = _hash_request(sub)
        if sub.idempotency_key is not None:  # "" too: an empty key is refused, not ignored
            policy.check_idempotency_key(sub.idempotency_key)
            existing = await self._store.find_idempotent(key.id, sub.idempotency_key)
            if existing is not None:
                return await self._replay(existing, request_hash)
        if sub.kind is CommandKind.CLAUDE and self._budget is not None:
            await self._budget(key, sub.project_id)
        timeout = sub.timeout_seconds or self._default_timeout
        if timeout > self._max_timeout:
            raise InvalidInput(
                f"timeout_seconds may be at most {self._max_timeout}",
                details={"field": "timeout_seconds"},
            )
        cmd = Command(
            id=new_command_id(),
            project_id=sub.project_id,
            kind=sub.kind,
            argv=sub.argv,
            status=CommandStatus.QUEUED,
            priority=sub.priority,
            created_at=self._clock(),
            timeout_seconds=timeout,
            key_id=key.id,
            cwd=sub.cwd,
            env=sub.env or {},
            idempotency_key=sub.idempotency_key,
            request_hash=request_hash,
            on_output_limit=sub.on_output_limit,
        )
        # the request's trace, for the runner on this replica (before the insert: a claim may
        # follow it at once)
        self._tracer.carry(cmd.id)
        # the cap, the position, the insert and its audit entry are one atomic step
        # (QueueFull); with a free slot here and nothing ahead of it, the start too
        with self._dispatcher.start_slot(cmd.project_id) as start:
            queued = await self._store.enqueue(
                cmd,
                lambda position: Event(
                    cmd.id, 1, EventType.STATUS, {"status": "queued", "queue_position": position}
                ),
                max_queue=self._max_queue,
                audit=self._audit.entry(
                    "command.submit",
                    actor=actor,
                    target=cmd.id,
                    project=cmd.project_id,
                    details={"kind": cmd.kind.value, "argv": _audit_argv(cmd)},
                ),
                start=start,
            )
            await self._hub.publish(queued.events)  # (none when an identical request came first)
            if queued.started:
                self._dispatcher.launch(queued.command)
        if not queued.created:
            return await self._replay(queued.command, request_hash)
        cmd = queued.command
        if queued.started:
            return Submitted(cmd, None, created=True)
        await self._dispatcher.notify_queue()
        return Submitted(cmd, queued.position, created=True)

    async def _replay(self, existing: Command, request_hash: str) -> Submitted:
        if existing.request_hash != request_hash:
            raise IdempotencyConflict("Idempotency-Key was already used with a different request")
        current = await self._store.get(existing.id) or existing
        return Submitted(current, await self._store.queue_position(current), created=False)

    async def get(self, key: ApiKey, command_id: str) -> Command:
        cmd = await self._store.get(command_id) if command_id.startswith("cmd_") else None
        if cmd is None or not key.may_see(cmd.project_id):
            raise NotFound(f"command {command_id} not found")
        return cmd

    async def position(self, cmd: Command) -> int | None:
        return await self._store.queue_position(cmd)

    async def list(
        self,
        key: ApiKey,
        project_id: str,
        *,
        status: CommandStatus | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Command]:
        if not key.may_see(project_id):
            raise NotFound(f"project {project_id} not found")
        await self._backend.get_project(project_id)
        return await self._store.page(
            CommandFilter(project_id=project_id, status=status, cursor=cursor, limit=limit)
        )

    async def cancel(self, key: ApiKey, command_id: str, *, actor: Actor) -> Command:
        cmd = await self.get(key, command_id)
        if not is_terminal(cmd.status):
            await self._cancel_live(cmd)
        await self._audit.record(
            "command.cancel", actor=actor, target=cmd.id, project=cmd.project_id,
            kind=cmd.kind.value, status_before=cmd.status.value,
        )  # fmt: skip
        return await self._store.get(cmd.id) or cmd

    async def _cancel_live(self, cmd: Command) -> None:
        if cmd.status is CommandStatus.QUEUED:
            now = self._clock()
            final = terminal_events(
                cmd.id,
                last_seq=await self._log.last_seq(cmd.id),
                status=CommandStatus.CANCELLED,
                exit_code=None,
                duration_ms=0,  # it never ran
            )
            if await self._store.cancel_queued(cmd.id, at=now, final=final):
                await self._hub.publish(final)
                end = Finish(status=CommandStatus.CANCELLED, finished_at=now)
                await self._audit.command_ended(cmd, end)
                return
        await self._store.request_cancel(cmd.id)
        await self._dispatcher.broadcast_cancel(cmd.id)

    async def output(self, key: ApiKey, command_id: str) -> AsyncIterator[str]:
        cmd = await self.get(key, command_id)
        return self._log.read_output(cmd.id)


def _may_run_claude_shell(key: ApiKey, project: Project) -> bool:
    """Shell rights: the project says Claude may have them, or the key may run shell commands
    here itself (admin counts; a project that refuses shell commands refuses them to Claude)."""
    if project.allow_claude_shell:
        return True
    return key.has_scope(Scope.COMMANDS_SHELL) and CommandKind.SHELL in project.allowed_kinds


def _hash_request(sub: Submission) -> str:
    canonical = json.dumps(
        {"project": sub.project_id, "kind": sub.kind.value, "body": sub.body or {}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _audit_argv(cmd: Command) -> list[str]:
    """The argv as audited: a Claude prompt is cut to 120 characters, every item to 500."""
    prompt = claude_prompt_index(cmd.argv) if cmd.kind is CommandKind.CLAUDE else None
    return [policy.shorten(a, 120 if i == prompt else 500) for i, a in enumerate(cmd.argv)]


def build_shell_argv(
    *, command: str | None, argv: Sequence[str] | None, project: Project
) -> tuple[str, ...]:
    if (command is None) == (argv is None):
        raise InvalidInput("give exactly one of command or argv", details={"field": "command"})
    if command is not None:
        return policy.split_shell(command, allow_raw_shell=project.allow_raw_shell)
    return policy.check_argv(list(argv or ()))
