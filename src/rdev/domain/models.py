"""Domain data: frozen, slotted dataclasses and StrEnums shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from rdev.domain.claude_env import ClaudeEnv
from rdev.domain.usage import Reported, RunUsage

T = TypeVar("T")


class Scope(StrEnum):
    PROJECTS_READ = "projects:read"
    COMMANDS_READ = "commands:read"
    COMMANDS_CLAUDE = "commands:claude"
    COMMANDS_SHELL = "commands:shell"
    COMMANDS_GIT = "commands:git"
    COMMANDS_CANCEL = "commands:cancel"
    CONFIG_READ = "config:read"
    CONFIG_WRITE = "config:write"
    KEYS_ADMIN = "keys:admin"
    WEBHOOKS_MANAGE = "webhooks:manage"
    AUDIT_READ = "audit:read"
    ADMIN = "admin"


class ProjectStatus(StrEnum):
    RUNNING = "running"
    PENDING = "pending"
    FAILED = "failed"
    TERMINATING = "terminating"
    UNKNOWN = "unknown"


class CommandKind(StrEnum):
    CLAUDE = "claude"
    SHELL = "shell"
    GIT = "git"

    @property
    def scope(self) -> Scope:
        return Scope(f"commands:{self.value}")


class CommandStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        return {"high": 0, "normal": 1, "low": 2}[self.value]


class OutputLimitAction(StrEnum):
    """What happens when a command's output reaches the cap: keep its first and last part and
    let it run on, or stop it (status failed, error OUTPUT_LIMIT)."""

    TRUNCATE = "truncate"
    KILL = "kill"


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    status: ProjectStatus
    status_reason: str | None = None  # why a project is not running, for people to read
    description: str = ""
    workspace: str = ""
    allowed_kinds: frozenset[CommandKind] = frozenset(CommandKind)
    max_concurrent: int | None = None
    allow_raw_shell: bool = False
    # Claude runs that amount to a shell (see domain/claude.py) need no `commands:shell` here
    allow_claude_shell: bool = False
    pod: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # variables for its claude commands (secrets: never shown, see domain/claude_env.py)
    claude_env: ClaudeEnv = field(default_factory=ClaudeEnv, repr=False)
    daily_budget_usd: float | None = None  # Claude spend per UTC day (domain/settings.py)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    secret_hash: str
    scopes: frozenset[Scope]
    created_at: datetime
    projects: frozenset[str] = frozenset()
    allowed_ips: tuple[str, ...] = ()
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    created_by: str | None = None
    daily_budget_usd: float | None = None  # Claude spend per UTC day (services/usage.py)
    rate_limit_rps: float | None = None  # the key's own per-key limit; None: RATE_LIMIT_RPS

    def has_scope(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def may_see(self, project_id: str) -> bool:
        return not self.projects or project_id in self.projects


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key together with its secret; exists only in the response that creates it."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class ClaudeResult:
    session_id: str | None = None
    total_cost_usd: float | None = None
    num_turns: int | None = None
    is_error: bool | None = None
    # how the turn ended (domain/claude_outcome.py): the result's subtype and terminal_reason,
    # and the tool uses that were denied, as (tool name, short input summary)
    subtype: str | None = None
    terminal_reason: str | None = None
    permission_denials: tuple[tuple[str, str], ...] = ()
    # cost accounting (domain/usage.py): `total_cost_usd` is the CLI's own figure, which may be
    # cumulative over a resumed session; `usage` is this run's share of it
    usage: RunUsage | None = None
    reported: Reported | None = None


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    project_id: str
    kind: CommandKind
    argv: tuple[str, ...]
    status: CommandStatus
    priority: Priority
    created_at: datetime
    timeout_seconds: int
    key_id: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    claude: ClaudeResult = field(default_factory=ClaudeResult)
    idempotency_key: str | None = None
    request_hash: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    output_bytes: int = 0
    truncated: bool = False
    on_output_limit: OutputLimitAction = OutputLimitAction.TRUNCATE

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class EventType(StrEnum):
    CONNECTED = "connected"
    STATUS = "status"
    OUTPUT = "output"
    MESSAGE = "message"
    TRUNCATED = "truncated"
    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    ERROR = "error"


@dataclass(slots=True)
class Event:
    """One persisted event of a command's log; `seq` starts at 1 and has no gaps. `encoded`, when
    present, is `data` as compact JSON, so storage and every stream reuse one encoding.

    Treat it as immutable. It is not a frozen dataclass only because one is made per line of
    output, and a frozen one costs three times as much to construct (1.0 us against 0.34)."""

    command_id: str
    seq: int
    type: EventType
    data: dict[str, Any]
    encoded: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int | None
    at: datetime
    action: str
    actor_key_id: str | None = None
    target: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    project: str | None = None  # the project the entry is about, if any: who may read it


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None = None
