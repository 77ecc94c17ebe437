"""In-memory twins of the ports the runtime uses (ports.py: a Protocol exists only where there
is a real implementation and a twin), so the runtime can be tested in milliseconds.

The twins keep the real stores' contract, not a simplification of it: the same conditional
moves (a command leaves `queued` or `running` once), gap-free event sequence numbers that two
writers cannot both take, idempotent submission by (key id, idempotency key), queue order by
priority rank, then arrival, then id. tests/integration/test_sql_command_store.py runs one set
of store tests against these twins and the SQL store on SQLite and PostgreSQL, so the twins
cannot drift from what they stand for.

Also a scripted Backend/Execution, and `run_virtual`: an event loop whose clock jumps ahead
whenever nothing is ready, so timeouts, grace periods and lease periods of many seconds pass
in microseconds, deterministically."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import selectors
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from rdev.domain.errors import Conflict, ExecFailed, InvalidInput, NotFound
from rdev.domain.lifecycle import started_event
from rdev.domain.models import (
    ClaudeResult,
    Command,
    CommandStatus,
    Event,
    EventType,
    Page,
    Project,
    ProjectStatus,
)
from rdev.domain.usage import ModelUsage, Reported, Tokens, UsageRow
from rdev.ports import (
    Backend,
    CommandFilter,
    CommandStore,
    EventLog,
    Execution,
    ExitStatus,
    Finish,
    OutputChunk,
    StreamName,
    UsageQuery,
)

T = TypeVar("T")
T0 = datetime(2031, 1, 1, tzinfo=UTC)


class MemoryEventLog:
    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = {}
        self.appends = 0  # batches written: what group commit saves

    def _insert(self, batch: Sequence[Event]) -> bool:
        """Append a batch in place; False when its sequence numbers are not the next ones."""
        log = self.events.setdefault(batch[0].command_id, [])
        if batch[0].seq != len(log) + 1:
            return False
        assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + len(batch)))
        log.extend(batch)
        self.appends += 1
        return True

    async def append(self, events: Sequence[Event]) -> None:
        if not events or self._insert(events):
            return
        stored = self.events.get(events[0].command_id, [])[events[0].seq - 1 :][: len(events)]
        if [(e.seq, e.type, e.data) for e in stored] == [(e.seq, e.type, e.data) for e in events]:
            return  # already written by an attempt whose answer was lost
        raise Conflict(
            "these event sequence numbers are already taken",
            details={"command_id": events[0].command_id, "seq": events[0].seq},
        )

    async def read(
        self, command_id: str, *, after: int, limit: int, decode: bool = True
    ) -> list[Event]:
        return self.events.get(command_id, [])[after:][:limit]

    async def last_seq(self, command_id: str) -> int:
        return len(self.events.get(command_id, []))

    async def read_output(self, command_id: str) -> AsyncIterator[str]:
        for e in self.events.get(command_id, []):
            if e.type is EventType.OUTPUT:
                yield e.data["line"] if e.data.get("partial") else e.data["line"] + "\n"

    async def prune(self, before: datetime) -> int:
        return 0  # the twin keeps no write times


def _queue_key(cmd: Command) -> tuple[int, datetime, str]:
    return (cmd.priority.rank, cmd.created_at, cmd.id)


class MemoryCommandStore:
    """Commands in a dict; events go to the twin log it is given, in the same step."""

    def __init__(self, log: MemoryEventLog) -> None:
        self.log = log
        self.commands: dict[str, Command] = {}

    async def add(self, command: Command, first_event: Event) -> Command:
        if command.key_id and command.idempotency_key:
            existing = await self.find_idempotent(command.key_id, command.idempotency_key)
            if existing is not None:
                return existing
        if command.id in self.commands:
            raise Conflict(f"command {command.id} exists")
        self.commands[command.id] = command
        await self.log.append([first_event])
        return command

    async def get(self, command_id: str) -> Command | None:
        return self.commands.get(command_id)

    async def find_idempotent(self, key_id: str, idempotency_key: str) -> Command | None:
        for cmd in self.commands.values():
            if cmd.key_id == key_id and cmd.idempotency_key == idempotency_key:
                return cmd
        return None

    async def page(self, flt: CommandFilter) -> Page[Command]:
        rows = sorted(self.commands.values(), key=lambda x: (x.created_at, x.id), reverse=True)
        rows = [
            x
            for x in rows
            if (flt.project_id is None or x.project_id == flt.project_id)
            and (flt.status is None or x.status is flt.status)
        ]
        if flt.cursor:
            after = next((i for i, x in enumerate(rows) if x.id == flt.cursor), None)
            if after is None:
                raise InvalidInput("cursor is invalid", details={"field": "cursor"})
            rows = rows[after + 1 :]
        items = rows[: flt.limit]
        more = len(rows) > flt.limit
        return Page(items=items, next_cursor=items[-1].id if more else None)

    def _queued(self, project_id: str | None = None) -> list[Command]:
        return sorted(
            (
                x
                for x in self.commands.values()
                if x.status is CommandStatus.QUEUED
                and (project_id is None or x.project_id == project_id)
            ),
            key=_queue_key,
        )

    async def count_queued(self, project_id: str) -> int:
        return len(self._queued(project_id))

    async def queue_position(self, command: Command) -> int | None:
        if command.status is not CommandStatus.QUEUED:
            return None
        mine = _queue_key(command)
        return 1 + sum(1 for x in self._queued(command.project_id) if _queue_key(x) < mine)

    async def claim(
        self,
        *,
        owner: str,
        lease_until: datetime,
        now: datetime,
        slots: int,
        project_limit: Callable[[str], int | None],
    ) -> list[Command]:
        running: dict[str, int] = {}
        for x in self.commands.values():
            if x.status is CommandStatus.RUNNING:
                running[x.project_id] = running.get(x.project_id, 0) + 1
        chosen: list[Command] = []
        for cmd in self._queued():
            if len(chosen) >= slots:
                break
            limit = project_limit(cmd.project_id)
            if limit is None or running.get(cmd.project_id, 0) >= limit:
                continue
            running[cmd.project_id] = running.get(cmd.project_id, 0) + 1
            claimed = replace(
                cmd,
                status=CommandStatus.RUNNING,
                started_at=now,
                lease_owner=owner,
                lease_expires_at=lease_until,
            )
            self.commands[cmd.id] = claimed
            chosen.append(claimed)
        for cmd in chosen:
            await self.log.append([started_event(cmd.id)])
        return chosen

    async def renew_leases(
        self, *, owner: str, command_ids: Sequence[str], until: datetime
    ) -> list[str]:
        to_stop = []
        for cid in command_ids:
            cmd = self.commands.get(cid)
            if cmd is None:
                continue
            if cmd.lease_owner == owner:
                cmd = self.commands[cid] = replace(cmd, lease_expires_at=until)
            # to stop: cancel requested, ended, or no longer this replica's to run
            stop = cmd.cancel_requested or cmd.status is not CommandStatus.RUNNING
            if stop or cmd.lease_owner != owner:
                to_stop.append(cid)
        return to_stop

    async def request_cancel(self, command_id: str) -> None:
        if (cmd := self.commands.get(command_id)) is not None:
            self.commands[command_id] = replace(cmd, cancel_requested=True)

    async def cancel_queued(self, command_id: str, *, at: datetime, final: Sequence[Event]) -> bool:
        cmd = self.commands.get(command_id)
        if cmd is None or cmd.status is not CommandStatus.QUEUED:
            return False
        self.commands[command_id] = replace(
            cmd, status=CommandStatus.CANCELLED, finished_at=at, cancel_requested=True
        )
        await self.log.append(final)
        return True

    async def finish(self, command_id: str, finish: Finish, final: Sequence[Event]) -> bool:
        cmd = self.commands.get(command_id)
        if cmd is None or cmd.status is not CommandStatus.RUNNING:
            return False
        if final and not self.log._insert(final):
            return False  # another writer took those sequence numbers first
        claude = cmd.claude
        if finish.claude is not None:
            claude = replace(
                finish.claude, session_id=finish.claude.session_id or claude.session_id
            )
        self.commands[command_id] = replace(
            cmd,
            status=finish.status,
            finished_at=finish.finished_at,
            exit_code=finish.exit_code,
            error=finish.error,
            output_bytes=finish.output_bytes,
            truncated=finish.truncated,
            lease_owner=None,
            lease_expires_at=None,
            claude=claude,
        )
        return True

    async def expired_leases(self, now: datetime) -> list[Command]:
        return [
            x
            for x in self.commands.values()
            if x.status is CommandStatus.RUNNING
            and x.lease_expires_at is not None
            and x.lease_expires_at < now
        ]

    async def leased_to(self, owner: str) -> list[Command]:
        return [
            x
            for x in self.commands.values()
            if x.status is CommandStatus.RUNNING and x.lease_owner == owner
        ]

    async def record_claude_session(self, command_id: str, session_id: str) -> None:
        if (cmd := self.commands.get(command_id)) is not None:
            self.commands[command_id] = replace(cmd, claude=ClaudeResult(session_id=session_id))

    async def has_claude_session(self, project_id: str, session_id: str) -> bool:
        return any(
            x.project_id == project_id and x.claude.session_id == session_id
            for x in self.commands.values()
        )

    async def claude_baseline(
        self, project_id: str, session_id: str, before: datetime
    ) -> Reported | None:
        done = [
            x
            for x in self.commands.values()
            if x.project_id == project_id
            and x.claude.session_id == session_id
            and x.finished_at is not None
            and x.finished_at < before
            and x.claude.total_cost_usd is not None
        ]
        if not done:
            return None
        last = max(done, key=lambda x: x.finished_at or before)
        return last.claude.reported or Reported(last.claude.total_cost_usd)


class MemoryUsageStore:
    """The twin of adapters/sql/usage.py: sums the run usage of a command store's finished
    Claude commands."""

    def __init__(self, commands: MemoryCommandStore) -> None:
        self._commands = commands

    def _rows(self) -> list[tuple[Command, ModelUsage]]:
        return [
            (x, m)
            for x in self._commands.commands.values()
            if x.finished_at is not None and x.claude.usage is not None
            for m in x.claude.usage.models
        ]

    async def daily(self, query: UsageQuery) -> list[UsageRow]:
        sums: dict[tuple[date, str], list[Any]] = {}
        for cmd, m in self._rows():
            day = (cmd.finished_at or T0).astimezone(UTC).date()
            if not query.first <= day <= query.last:
                continue
            if query.project_id is not None and cmd.project_id != query.project_id:
                continue
            if query.key_id is not None and cmd.key_id != query.key_id:
                continue
            if query.projects is not None and cmd.project_id not in query.projects:
                continue
            acc = sums.setdefault((day, m.model), [0.0, Tokens(), set()])
            t = acc[1]
            acc[0] += m.cost_usd
            acc[1] = Tokens(t.input + m.tokens.input, t.output + m.tokens.output,
                            t.cache_read + m.tokens.cache_read,
                            t.cache_creation + m.tokens.cache_creation)  # fmt: skip
            acc[2].add(cmd.id)
        return [UsageRow(d, m, a[0], a[1], len(a[2])) for (d, m), a in sorted(sums.items())]

    async def spent(
        self, day: date, *, key_id: str | None = None, project_id: str | None = None
    ) -> float:
        rows = await self.daily(UsageQuery(day, day, project_id=project_id, key_id=key_id))
        return sum(r.cost_usd for r in rows)


class FakeExecution:
    """A process driven by the test: `emit` output, `exit` it. `cancel` ends it with
    `kill_exit` (as SIGTERM would), or does nothing when `kill_exit` is None (a kill that
    fails: the process never ends)."""

    def __init__(self, *, kill_exit: int | None = -15) -> None:
        self._chunks: asyncio.Queue[OutputChunk | None] = asyncio.Queue()
        self._exit: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self.kill_exit = kill_exit
        self.cancels: list[float] = []

    def emit(self, data: bytes, stream: StreamName = "stdout") -> None:
        self._chunks.put_nowait(OutputChunk(stream, data))

    def exit(
        self, code: int | None, *, error: str | None = None, code_name: str | None = None
    ) -> None:
        if not self._exit.done():
            self._chunks.put_nowait(None)
            self._exit.set_result(ExitStatus(code, error, code_name))

    async def output(self) -> AsyncIterator[OutputChunk]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    async def cancel(self, *, grace_seconds: float) -> None:
        self.cancels.append(grace_seconds)
        if self.kill_exit is not None:
            self.exit(self.kill_exit)

    @property
    def ended(self) -> bool:
        return self._exit.done()


@dataclass
class FakeBackend:
    """Projects in a dict; each `exec` makes a FakeExecution (or raises `exec_error`) that the
    test finds in `started` and drives. `on_exec`, when set, scripts each new execution."""

    projects: dict[str, Project] = field(default_factory=dict)
    kill_exit: int | None = -15
    exec_error: Exception | None = None
    on_exec: Callable[[FakeExecution], Awaitable[None] | object] | None = None
    started: dict[str, FakeExecution] = field(default_factory=dict)
    argv: dict[str, tuple[str, ...]] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    name: str = "fake"

    def add_project(self, project_id: str, **fields: Any) -> Project:
        project = Project(id=project_id, status=ProjectStatus.RUNNING, **fields)
        self.projects[project_id] = project
        return project

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for execution in self.started.values():
            execution.exit(None, error="backend closed")

    async def check(self) -> None:
        return None

    async def list_projects(self) -> list[Project]:
        return list(self.projects.values())

    async def get_project(self, project_id: str) -> Project:
        if project_id not in self.projects:
            raise NotFound(f"project {project_id} not found")
        return self.projects[project_id]

    async def exec(
        self,
        project: Project,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
        stdin: bytes | None = None,
        command_id: str | None = None,
    ) -> Execution:
        if self.exec_error is not None:
            raise self.exec_error
        if not argv:
            raise ExecFailed("empty argv")
        execution = FakeExecution(kill_exit=self.kill_exit)
        key = command_id or f"exec{len(self.started)}"
        self.started[key] = execution
        self.argv[key] = tuple(argv)
        self.env[key] = dict(env)
        if self.on_exec is not None:
            result = self.on_exec(execution)
            if inspect.isawaitable(result):
                await result
        return execution

    async def kill_command(self, project_id: str, command_id: str) -> int:
        self.killed.append(command_id)
        execution = self.started.get(command_id)
        if execution is None or execution.ended:
            return 0
        execution.exit(-9)
        return 1

    async def list_dir(self, project: Project, path: str) -> list[str]:
        return []

    async def read_file(self, project: Project, path: str) -> bytes:
        raise NotFound(path)

    async def write_file(self, project: Project, path: str, data: bytes) -> None:
        return None

    async def delete(self, project: Project, path: str) -> None:
        raise NotFound(path)


# The twins satisfy their ports (checked by mypy when it reads this file).
_ports: tuple[CommandStore, EventLog, Backend] = (
    MemoryCommandStore(MemoryEventLog()),
    MemoryEventLog(),
    FakeBackend(),
)


class _VirtualSelector(selectors.BaseSelector):
    """Wraps the loop's selector: never blocks; with nothing ready, moves the clock to the next
    timer instead of sleeping until it."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.now += timeout
        elif not ready and timeout is None:
            raise RuntimeError("deadlock: nothing is ready and no timer is set")
        return ready

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see `run_virtual`)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now

    def clock(self) -> datetime:
        """The wall clock on the same virtual time: for `clock=` parameters."""
        return T0 + timedelta(seconds=self.now)


async def _settle(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def run_virtual(main: Callable[[VirtualTimeLoop], Coroutine[Any, Any, T]]) -> T:
    """Run `main(loop)` on a fresh virtual-time loop, then cancel whatever it left running."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(_settle(pending))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@dataclass
class RecordedSpan:
    name: str
    parent: str | None
    start: datetime | None
    attributes: dict[str, str | int | bool]
    events: list[str] = field(default_factory=list)
    ended: bool = False

    def set(self, key: str, value: str | int | bool) -> None:
        self.attributes[key] = value

    def event(self, name: str) -> None:
        self.events.append(name)


@dataclass
class RecordingTracer:
    """The twin of ports.Tracer: records spans; the current span's traceparent is made up from
    its position, so tests can tell which span a TRACEPARENT names."""

    spans: list[RecordedSpan] = field(default_factory=list)
    carried_: dict[str, str] = field(default_factory=dict)
    _current: list[RecordedSpan] = field(default_factory=list)

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        parent: str | None = None,
        start: datetime | None = None,
        attributes: Mapping[str, str | int | bool] | None = None,
    ) -> Iterator[RecordedSpan]:
        span = RecordedSpan(name, parent, start, dict(attributes or {}))
        self.spans.append(span)
        self._current.append(span)
        try:
            yield span
        finally:
            self._current.pop()
            span.ended = True

    def traceparent(self) -> str | None:
        if not self._current:
            return None
        return f"00-{'a' * 32}-{self.spans.index(self._current[-1]) + 1:016x}-01"

    def carry(self, command_id: str) -> None:
        parent = self.traceparent()
        if parent is not None:
            self.carried_[command_id] = parent

    def carried(self, command_id: str) -> str | None:
        return self.carried_.pop(command_id, None)
