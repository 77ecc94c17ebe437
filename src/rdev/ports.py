"""The seams where rdev meets the outside world. A Protocol exists only where there are two
real implementations (or a real one and an in-memory twin used by tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

from rdev.domain.models import (
    ApiKey,
    AuditEntry,
    ClaudeResult,
    Command,
    CommandStatus,
    Event,
    Page,
    Project,
)
from rdev.domain.usage import Reported, UsageRow
from rdev.domain.webhooks import Delivery, Webhook, WebhookEvent

StreamName = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class OutputChunk:
    stream: StreamName
    data: bytes


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended; `exit_code` is None when the backend cannot tell (`error` says why)."""

    exit_code: int | None
    error: str | None = None
    error_code: str | None = None


class Execution(Protocol):
    """One running process in a project's workspace."""

    def output(self) -> AsyncIterator[OutputChunk]:
        """Chunks as they arrive; ends when both streams are closed."""
        ...

    async def wait(self) -> ExitStatus: ...

    async def cancel(self, *, grace_seconds: float) -> None:
        """SIGTERM every process the command started, SIGKILL what is left after the grace
        period. Idempotent."""
        ...


class Backend(Protocol):
    """The sandbox provider: local folders or Kubernetes pods."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise BackendUnavailable when the backend cannot serve."""
        ...

    async def list_projects(self) -> list[Project]: ...

    async def get_project(self, project_id: str) -> Project:
        """Raise NotFound when there is no such project."""
        ...

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
        """Start argv in the project's workspace (cwd relative to it). Every process it starts
        carries `command_id` (a marker in its environment) and ends with it, however it
        detached. Raise ExecFailed when it cannot start, BackendUnavailable when the backend is
        down."""
        ...

    async def kill_command(self, project_id: str, command_id: str) -> int:
        """Kill every process still carrying the command's marker where this replica can reach
        it (the command of a dead replica, swept to lost); returns how many were found."""
        ...

    async def list_dir(self, project: Project, path: str) -> list[str]:
        """Entry names in a workspace-relative directory; [] when it does not exist."""
        ...

    async def read_file(self, project: Project, path: str) -> bytes:
        """Raise NotFound when the file does not exist."""
        ...

    async def write_file(self, project: Project, path: str, data: bytes) -> None:
        """Atomically replace (temp file, then rename), creating parent directories."""
        ...

    async def delete(self, project: Project, path: str) -> None:
        """Remove a file or directory tree; raise NotFound when absent."""
        ...


class KeyStore(Protocol):
    async def add(self, key: ApiKey) -> None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list(self) -> list[ApiKey]: ...

    async def set_secret_hash(self, key_id: str, secret_hash: str) -> None: ...

    async def revoke(self, key_id: str, at: datetime) -> None: ...

    async def touch(self, key_id: str, at: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class CommandFilter:
    project_id: str | None = None
    status: CommandStatus | None = None
    cursor: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Finish:
    status: CommandStatus
    finished_at: datetime
    exit_code: int | None = None
    error: str | None = None
    claude: ClaudeResult | None = None
    output_bytes: int = 0
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class StartNow:
    """Asks `CommandStore.enqueue` to start the command in its own submission's transaction
    when it can start at once: nothing of its project queued ahead of it, and its project below
    `project_limit` running commands across every replica. The caller holds a free slot of
    replica `owner` for it."""

    owner: str
    now: datetime
    lease_until: datetime
    project_limit: int | None  # None: the project takes no commands now


@dataclass(frozen=True, slots=True)
class Enqueued:
    command: Command  # as stored: see CommandStore.enqueue for its created_at
    position: int | None  # its 1-based place in the project's queue as it joined
    events: tuple[Event, ...]  # its first events, as stored (none when not created)
    created: bool  # False: the idempotency key was used already, and `command` is that one
    started: bool = False  # started at once (StartNow): running, leased to the caller


class CommandStore(Protocol):
    async def add(self, command: Command, first_event: Event) -> Command:
        """Insert a queued command with its first event, without the queue's checks (seeding
        and tests; submissions use `enqueue`). With an idempotency key already used by the
        same key id, return the existing command instead."""
        ...

    async def enqueue(
        self,
        command: Command,
        first_event: Callable[[int], Event],
        *,
        max_queue: int,
        audit: AuditEntry | None = None,
        start: StartNow | None = None,
    ) -> Enqueued:
        """Queue a command in one atomic step per project, across replicas: with its key id's
        idempotency key used already, answer that command; with `max_queue` commands of the
        project queued, raise QueueFull; else insert it with `first_event(position)` and the
        `audit` entry, in one transaction. Within a priority, commands join in the order they
        are enqueued (created_at is moved just past the project's latest when the clock says
        otherwise), so the positions handed out are distinct and claims follow them.

        With `start`, a command that can start at once (see StartNow) is stored running instead,
        leased to `start.owner`, with `lifecycle.started_event` after its first event: the claim
        it skips would have taken it next. Serialised with claims, so limits hold as they do
        for claims."""
        ...

    async def get(self, command_id: str) -> Command | None: ...

    async def find_idempotent(self, key_id: str, idempotency_key: str) -> Command | None: ...

    async def page(self, flt: CommandFilter) -> Page[Command]: ...

    async def count_queued(self, project_id: str) -> int: ...

    async def queue_position(self, command: Command) -> int | None: ...

    async def claim(
        self,
        *,
        owner: str,
        lease_until: datetime,
        now: datetime,
        slots: int,
        project_limit: Callable[[str], int | None],
    ) -> list[Command]:
        """Atomically move up to `slots` queued commands to running, by priority then arrival,
        never exceeding a project's limit across every replica; each one's
        `lifecycle.started_event` is written in the same transaction."""
        ...

    async def renew_leases(
        self, *, owner: str, command_ids: Sequence[str], until: datetime
    ) -> list[str]:
        """Extend this replica's leases; returns the ids among them to stop: cancel requested,
        or no longer this replica's (finished elsewhere, e.g. swept while it was cut off)."""
        ...

    async def request_cancel(self, command_id: str) -> None: ...

    async def cancel_queued(self, command_id: str, *, at: datetime, final: Sequence[Event]) -> bool:
        """Queued → cancelled with its final events, atomically; False if no longer queued."""
        ...

    async def finish(self, command_id: str, finish: Finish, final: Sequence[Event]) -> bool:
        """Running → terminal with the final events, in one transaction; False when the command
        was no longer running (someone else finished it)."""
        ...

    async def expired_leases(self, now: datetime) -> list[Command]: ...

    async def leased_to(self, owner: str) -> list[Command]:
        """The running commands whose lease names `owner`, however long it still runs."""
        ...

    async def record_claude_session(self, command_id: str, session_id: str) -> None:
        """Store the Claude session a command runs in, as soon as the CLI names it."""
        ...

    async def has_claude_session(self, project_id: str, session_id: str) -> bool:
        """Whether a command of this project ran in that Claude session."""
        ...

    async def claude_baseline(
        self, project_id: str, session_id: str, before: datetime
    ) -> Reported | None:
        """The reported figures of the latest command of this project in that session that
        finished before `before` with figures (domain/usage.py); None when there is none."""
        ...


class EventLog(Protocol):
    async def append(self, events: Sequence[Event]) -> None: ...

    async def read(
        self, command_id: str, *, after: int, limit: int, decode: bool = True
    ) -> list[Event]:
        """Events after `after`, in order: `limit` of them, or fewer only at the log's end.
        With decode=False, `data` is left empty and `encoded` carries the JSON (for streams,
        which only pass it on)."""
        ...

    async def last_seq(self, command_id: str) -> int: ...

    async def last_event(self, command_id: str) -> Event | None:
        """The command's last event (`encoded` set, `data` empty); None when its log is empty
        (the first event is written with the command, so only a pruned log is)."""
        ...

    def read_output(self, command_id: str) -> AsyncIterator[str]: ...

    async def prune(self, before: datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class AuditGrant:
    """What a project-restricted reader may see: entries about `projects`, and entries whose
    actor is its own key."""

    projects: frozenset[str]
    key_id: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 50
    grant: AuditGrant | None = None  # None: every entry (an unrestricted reader)


class AuditLog(Protocol):
    async def append(self, entry: AuditEntry) -> None: ...

    async def list(self, flt: AuditFilter) -> Page[AuditEntry]:
        """Newest first; every condition, `grant` included, applies before the page is cut."""
        ...


Listener = Callable[[str], Awaitable[None] | None]


class Bus(Protocol):
    """Wake-ups between replicas: small string payloads on named topics. Messages may be lost
    or duplicated; receivers always re-read durable state."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: str) -> None: ...

    def subscribe(self, topic: str, listener: Listener) -> Callable[[], None]:
        """Register a listener; returns a function that removes it."""
        ...


class WebhookStore(Protocol):
    """Webhooks and their deliveries (adapters/sql/webhooks.py). Deliveries of changes are
    added by the stores that make the changes, in the same transaction (the outbox)."""

    async def add(self, hook: Webhook, secret: str) -> None: ...

    async def get(self, webhook_id: str) -> Webhook | None: ...

    async def all(self) -> list[Webhook]: ...

    async def update(self, hook: Webhook) -> None: ...

    async def set_secret(self, webhook_id: str, secret: str) -> None: ...

    async def delete(self, webhook_id: str) -> None: ...

    async def add_delivery(
        self, webhook_id: str, event: WebhookEvent, payload: str
    ) -> Delivery: ...

    async def deliveries(
        self, webhook_id: str, *, cursor: str | None, limit: int
    ) -> Page[Delivery]: ...

    async def delivery(self, webhook_id: str, delivery_id: str) -> Delivery | None: ...

    async def redeliver(self, webhook_id: str, delivery_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Claude usage of the days `first`..`last` (UTC, inclusive) of one project or one key;
    `projects`, when given, keeps only those projects (the reader's grant)."""

    first: date
    last: date
    project_id: str | None = None
    key_id: str | None = None
    projects: frozenset[str] | None = None


class UsageStore(Protocol):
    """Claude runs' own cost and tokens (written with each command's end), summed."""

    async def daily(self, query: UsageQuery) -> list[UsageRow]:
        """Sums per day and model, ordered by day then model."""
        ...

    async def spent(
        self, day: date, *, key_id: str | None = None, project_id: str | None = None
    ) -> float:
        """The cost of the finished runs of one key or one project on a day."""


class Span(Protocol):
    def set(self, key: str, value: str | int | bool) -> None: ...

    def event(self, name: str) -> None: ...


class Tracer(Protocol):
    """Spans for the core (runtime, services): OpenTelemetry (adapters/otel, with the `otel`
    extra and OTEL_* set) or nothing (runtime/tracing.NO_TRACER). The core never imports
    opentelemetry: it is an optional dependency."""

    def span(
        self,
        name: str,
        *,
        parent: str | None = None,
        start: datetime | None = None,
        attributes: Mapping[str, str | int | bool] | None = None,
    ) -> AbstractContextManager[Span]:
        """A span, current inside the block: a child of the current span, or of `parent` (a
        W3C traceparent) when given; `start` backdates it."""
        ...

    def traceparent(self) -> str | None:
        """The current span as a W3C traceparent, or None outside a (sampled) trace."""
        ...

    def carry(self, command_id: str) -> None:
        """Remember the current trace for a command that will run later on this replica."""
        ...

    def carried(self, command_id: str) -> str | None:
        """The trace remembered for `command_id` (once), or None."""
        ...
