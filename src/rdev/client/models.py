"""What the API returns, as light frozen dataclasses (no pydantic: the SDK installs with httpx
alone). Each is built from the JSON by `from_json`, which keeps the fields it knows and the
whole object in `raw`, so fields a newer server adds break nothing and are still at hand."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

T = TypeVar("T")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "lost"})


class _Model:
    raw: dict[str, Any]

    @classmethod
    def from_json(cls: type[M], data: dict[str, Any]) -> M:
        known = {f.name for f in fields(cls)} - {"raw"}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known}, raw=data)  # type: ignore[call-arg]


M = TypeVar("M", bound=_Model)


@dataclass(frozen=True, slots=True)
class Project(_Model):
    id: str
    status: str = "ready"
    description: str | None = None
    status_reason: str | None = None
    workspace: str | None = None
    allowed_commands: list[str] = field(default_factory=list)
    max_concurrent_commands: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Command(_Model):
    command_id: str
    project: str
    kind: str
    status: str
    argv: list[str] = field(default_factory=list)
    priority: str = "normal"
    queue_position: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    error: str | None = None
    timeout_seconds: int | None = None
    output_bytes: int | None = None
    truncated: bool = False
    session_id: str | None = None
    total_cost_usd: float | None = None
    num_turns: int | None = None
    is_error: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.command_id

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Key(_Model):
    id: str
    name: str
    scopes: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    allowed_ips: list[str] = field(default_factory=list)
    expires_at: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class IssuedKey(_Model):
    """A key with its secret (`key`), returned once by create and rotate."""

    id: str
    name: str
    key: str = field(repr=False)
    scopes: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    allowed_ips: list[str] = field(default_factory=list)
    expires_at: str | None = None
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AuditEntry(_Model):
    id: Any
    at: str
    action: str
    key_id: str | None = None
    target: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    outcome: str | None = None
    project: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ConfigItem(_Model):
    """A `.claude/` command, skill or agent of a project's workspace."""

    type: str
    name: str
    path: str | None = None
    content: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a command's stream. `id` is `<command>:<seq>` (or `<command>:final` on
    `complete`); events that are not stored (`connected`, `heartbeat`) have none."""

    event: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def seq(self) -> int | None:
        if not self.id:
            return None
        tail = self.id.rpartition(":")[2]
        return int(tail) if tail.isascii() and tail.isdigit() else None

    @property
    def line(self) -> str | None:
        """The text of an `output` event."""
        return self.data.get("line") if self.event == "output" else None

    @property
    def stream(self) -> str | None:
        """`stdout` or `stderr` for an `output` event."""
        return self.data.get("stream") if self.event == "output" else None

    @classmethod
    def parse(cls, event: str, data: str, id: str | None) -> Event:
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"text": data}
        return cls(event or "message", parsed if isinstance(parsed, dict) else {"value": parsed},
                   id or None)  # fmt: skip
