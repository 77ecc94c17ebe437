"""Runs one claimed command: start it on the backend, turn its output into events, enforce the
timeout and cancel, and record how it ended. Exactly one runner writes a command's events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from rdev.domain import claude_outcome, settings
from rdev.domain.claude_env import command_env
from rdev.domain.errors import RdevError
from rdev.domain.lifecycle import CLAIMED_LAST_SEQ, elapsed_ms, status_for_exit, terminal_events
from rdev.domain.models import ClaudeResult, Command, CommandKind, CommandStatus, EventType
from rdev.domain.usage import Reported, parse_reported
from rdev.ports import (
    Backend,
    CommandStore,
    EventLog,
    Execution,
    ExitStatus,
    Finish,
    Span,
    StreamName,
    Tracer,
)
from rdev.runtime.claude_usage import account, cost_view
from rdev.runtime.gitguard import check_repository
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.outage import persist
from rdev.runtime.output import Line
from rdev.runtime.outputcap import DRAIN_PAUSE_SECONDS, OutputCap
from rdev.runtime.streams import StreamHub
from rdev.runtime.tracing import NO_TRACER
from rdev.runtime.writer import EventWriter

log = structlog.get_logger(__name__)
EndHook = Callable[[Command, Finish], Awaitable[None]]  # told once a command has ended


class Runner:
    def __init__(
        self,
        command: Command,
        *,
        backend: Backend,
        commands: CommandStore,
        log: EventLog,
        hub: StreamHub,
        limits: DispatchLimits,
        clock: Callable[[], datetime],
        on_end: EndHook | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.command = command
        self._tracer = tracer
        self._span: Span | None = None
        self._on_end = on_end
        self._backend = backend
        self._commands = commands
        self._log = log
        self._hub = hub
        self._limits = limits
        self._clock = clock
        self._stop = asyncio.Event()
        self._stop_status = CommandStatus.CANCELLED
        self._stop_error: tuple[str, str] | None = None
        self._claude = ClaudeResult()
        self._reported: Reported | None = None  # the result's cost figures
        self._model: str | None = None  # the init message's model

    def cancel(self) -> None:
        self._stop.set()

    def abandon(self, code: str, message: str) -> None:
        self._stop_status = CommandStatus.LOST
        self._stop_error = (code, message)
        self._stop.set()

    async def run(self) -> None:
        """The command's life as one span (queued at its creation, then running, then
        complete), continuing the submitting request's trace when it was carried here."""
        cmd = self.command
        attributes = {
            "rdev.project": cmd.project_id,
            "rdev.command.id": cmd.id,
            "rdev.command.kind": cmd.kind.value,
        }
        with self._tracer.span(
            f"command {cmd.kind.value}",
            parent=self._tracer.carried(cmd.id),
            start=cmd.created_at,
            attributes=attributes,
        ) as span:
            self._span = span
            span.event("running")
            await self._run()

    async def _run(self) -> None:
        cmd = self.command
        # the runner has a task of its own (Dispatcher._launch): these tag its logs only
        structlog.contextvars.bind_contextvars(command_id=cmd.id, project=cmd.project_id)
        writer = EventWriter(
            cmd.id,
            last_seq=CLAIMED_LAST_SEQ,
            log=self._log,
            hub=self._hub,
            cap=OutputCap(
                max_bytes=self._limits.max_output_bytes,
                max_events=self._limits.max_output_events,
                action=cmd.on_output_limit,
            ),
            outage_buffer_bytes=self._limits.outage_buffer_bytes,
        )
        try:
            project = await self._backend.get_project(cmd.project_id)
            # the project may have failed, or stopped allowing this kind, since it was queued
            settings.check_accepts(project, cmd.kind)
            if cmd.kind is CommandKind.GIT:
                await check_repository(self._backend, project, cmd)
            env = cmd.env
            if cmd.kind is CommandKind.CLAUDE:  # the operator's variables, never stored
                env = command_env(
                    self._limits.claude_env,
                    project.claude_env,
                    cmd.env,
                    max_retries=self._limits.claude_max_retries,
                )
            execution = await self._backend.exec(
                project, cmd.argv, env=self._env(env), cwd=cmd.cwd, command_id=cmd.id
            )
        except RdevError as e:
            await self._finish(writer, CommandStatus.FAILED, None, (e.code, e.message))
            return
        # the claim wrote the `running` status (lifecycle.started_event): the log goes on from it
        status, exit_code, error = await self._supervise(execution, writer)
        await self._finish(writer, status, exit_code, error)

    def _env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The command's environment, with TRACEPARENT when traced: tools inside can continue
        the trace."""
        parent = self._tracer.traceparent()
        return {**env, "TRACEPARENT": parent} if parent else dict(env)

    async def _supervise(
        self, execution: Execution, writer: EventWriter
    ) -> tuple[CommandStatus, int | None, tuple[str, str] | None]:
        pump = asyncio.create_task(self._pump(execution, writer))
        waiter = asyncio.create_task(self._wait(execution, pump))
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait(
            {waiter, stopper},
            timeout=self.command.timeout_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter in done:
            stopper.cancel()
            exit_status = waiter.result()
            if exit_status.exit_code is None:
                code = exit_status.error_code or "EXEC_LOST"
                # could not start (known outcome: failed) versus lost track of it (unknown)
                status = CommandStatus.FAILED if code == "EXEC_FAILED" else CommandStatus.LOST
                return status, None, (code, exit_status.error or "connection lost")
            return status_for_exit(exit_status.exit_code), exit_status.exit_code, None
        stopper.cancel()
        if stopper in done:
            status, error = self._stop_status, self._stop_error
        else:
            status = CommandStatus.TIMED_OUT
            error = ("TIMEOUT", f"command exceeded {self.command.timeout_seconds} s")
        await execution.cancel(grace_seconds=self._limits.kill_grace_seconds)
        try:
            exit_status = await asyncio.wait_for(waiter, self._limits.kill_grace_seconds + 10)
        except TimeoutError:
            pump.cancel()
            return CommandStatus.LOST, None, ("KILL_FAILED", "the process did not end after kill")
        return status, exit_status.exit_code, error

    async def _wait(self, execution: Execution, pump: asyncio.Task[None]) -> ExitStatus:
        exit_status = await execution.wait()
        await pump
        return exit_status

    async def _pump(self, execution: Execution, writer: EventWriter) -> None:
        cap = writer.cap
        async for chunk in execution.output():
            lines = cap.feed(chunk.stream, chunk.data)  # [] past the cap: nothing per line
            if lines:
                await self._emit(writer, chunk.stream, lines)
            if cap.reached:
                await self._past_limit(writer, running=True)
            await writer.backpressure()
        for stream, line in cap.flush():
            await self._emit(writer, stream, [line])
        if cap.reached:
            await self._past_limit(writer, running=False)
            accounting, tail = cap.tail()
            await writer.add(EventType.TRUNCATED, accounting)
            for stream, line in tail:
                await self._emit(writer, stream, [line])

    async def _emit(self, writer: EventWriter, stream: StreamName, lines: list[Line]) -> None:
        if self.command.kind is CommandKind.CLAUDE and stream == "stdout":
            for line in lines:
                await self._claude_line(writer, *line)
        else:
            writer.output_lines(stream, lines)  # the hot path: one call per chunk

    async def _past_limit(self, writer: EventWriter, *, running: bool) -> None:
        """Past the output cap: announce it once (and stop the command if it asked for that);
        while it runs, pause after each chunk, so reading what is dropped costs little."""
        data = writer.cap.limit_event()
        if data is not None:
            await writer.add(EventType.TRUNCATED, data)
            if running and writer.cap.kills and not self._stop.is_set():
                self._stop_status = CommandStatus.FAILED
                self._stop_error = (
                    "OUTPUT_LIMIT",
                    f"output reached the cap ({data['limit_bytes']} bytes or "
                    f"{data['limit_events']} events); the command was stopped",
                )
                self._stop.set()
        if running:
            await asyncio.sleep(DRAIN_PAUSE_SECONDS)

    async def _claude_line(self, writer: EventWriter, line: str, complete: bool, size: int) -> None:
        """Claude's stdout: each JSON object line is a `message`, anything else `output`."""
        obj = _json_object(line) if line.startswith("{") else None
        if obj is None:
            writer.output_lines("stdout", [(line, complete, size)])
            return
        if obj.get("type") == "result":
            result = _claude_result(obj, self._claude.session_id)
            self._claude = dataclasses.replace(result, **claude_outcome.outcome_fields(obj))
            self._reported = parse_reported(obj)
        elif self._claude.session_id is None and (sid := _init_session(obj)):
            # stored at once, so a run that is cancelled, times out or is lost can be resumed
            self._claude = ClaudeResult(session_id=sid)
            self._model = obj["model"] if isinstance(obj.get("model"), str) else None
            await self._commands.record_claude_session(self.command.id, sid)
        writer.message(obj)

    async def _finish(
        self,
        writer: EventWriter,
        status: CommandStatus,
        exit_code: int | None,
        error: tuple[str, str] | None,
    ) -> None:
        await writer.flush()
        claude = None
        if self.command.kind is CommandKind.CLAUDE:
            claude = await account(
                self._commands, self.command, self._claude, self._reported, model=self._model
            )
        if self._span is not None:
            self._span.set("rdev.command.status", status.value)
            if exit_code is not None:
                self._span.set("rdev.command.exit_code", exit_code)
            self._span.event("complete")
        now = self._clock()
        final = terminal_events(
            self.command.id,
            last_seq=writer.seq,
            status=status,
            exit_code=exit_code,
            duration_ms=elapsed_ms(self.command.started_at, now),
            error=error,
            extra=claude_outcome.view(claude) | cost_view(claude) if claude is not None else None,
        )
        writer.seq = final[-1].seq
        finish = Finish(
            status=status,
            finished_at=now,
            exit_code=exit_code,
            error=error[1] if error else None,
            claude=claude,
            output_bytes=writer.output_bytes,
            truncated=writer.truncated,
        )
        # waits out a database outage: a command's terminal events are never lost
        if await persist(lambda: self._commands.finish(self.command.id, finish, final)):
            await self._hub.publish(final)
            if self._on_end is not None:
                await self._on_end(self.command, finish)
        else:  # finished elsewhere, or by an attempt whose answer was lost: readers re-read
            self._hub.poke(self.command.id)
        log.info(
            "command.finished", command=self.command.id, status=status.value, exit_code=exit_code
        )


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _init_session(obj: dict[str, Any]) -> str | None:
    """The session id of the CLI's first message (`system`/`init`)."""
    sid = obj.get("session_id")
    if obj.get("type") == "system" and obj.get("subtype") == "init" and isinstance(sid, str):
        return sid[:200]
    return None


def _claude_result(obj: dict[str, Any], session_id: str | None) -> ClaudeResult:
    cost = obj.get("total_cost_usd")
    turns = obj.get("num_turns")
    sid = obj.get("session_id")
    return ClaudeResult(
        session_id=sid[:200] if isinstance(sid, str) else session_id,
        total_cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
        num_turns=turns if isinstance(turns, int) and not isinstance(turns, bool) else None,
        is_error=obj.get("is_error") if isinstance(obj.get("is_error"), bool) else None,
    )
