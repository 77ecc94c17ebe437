"""Request and response bodies at the edge (pydantic), and their mapping from domain objects.

Every string a body carries is `Text` (list items and mapping keys too): valid Unicode without
NUL, checked by pydantic before a route runs, so a refusal is a 422 naming the field and
nothing is stored (tests/unit/test_schemas.py holds every model to this)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from rdev.domain import policy, text
from rdev.domain.models import ApiKey, AuditEntry, Command, IssuedKey, Project
from rdev.domain.policy import MAX_KEY_RATE_LIMIT_RPS

Strict = ConfigDict(extra="forbid")


def _valid_text(value: str) -> str:
    reason = text.problem(value)
    if reason is not None:
        raise PydanticCustomError("invalid_text", "text " + reason)
    return value


Text = Annotated[str, AfterValidator(_valid_text)]


def _whole(pattern: re.Pattern[str]) -> str:
    """A domain rule as a JSON Schema pattern, which is searched, not matched: anchored."""
    return f"^(?:{pattern.pattern})$"


class KeyCreate(BaseModel):
    model_config = Strict
    name: Text = Field(min_length=1, max_length=200)
    scopes: list[Text] = Field(min_length=1, max_length=20)
    projects: list[Text] = Field(default_factory=list, max_length=500)
    allowed_ips: list[Text] = Field(default_factory=list, max_length=100)
    expires_at: AwareDatetime | None = None
    # the key's own per-key rate limit (requests per second); absent: the server's default
    rate_limit_rps: float | None = Field(None, gt=0, le=MAX_KEY_RATE_LIMIT_RPS, strict=True)


# Every error's body as `errors.envelope` builds it, for OpenAPI. Inline rather than a model:
# FastAPI files a response model under the route's media type, and SSE routes answer errors
# in JSON too.
ERROR_CONTENT: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error", "meta"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                    },
                },
                "meta": {
                    "type": "object",
                    "required": ["request_id"],
                    "properties": {"request_id": {"type": "string"}},
                },
            },
        }
    }
}


def key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "projects": sorted(key.projects),
        "allowed_ips": list(key.allowed_ips),
        "expires_at": _ts(key.expires_at),
        "created_at": _ts(key.created_at),
        "revoked_at": _ts(key.revoked_at),
        "last_used_at": _ts(key.last_used_at),
        "rate_limit_rps": key.rate_limit_rps,
    }


def issued_view(issued: IssuedKey) -> dict[str, Any]:
    view = key_view(issued.key)
    return {
        "id": view["id"],
        "name": view["name"],
        "key": issued.secret,
        "scopes": view["scopes"],
        "projects": view["projects"],
        "allowed_ips": view["allowed_ips"],
        "expires_at": view["expires_at"],
        "created_at": view["created_at"],
        "rate_limit_rps": view["rate_limit_rps"],
    }


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.id,
        "description": project.description,
        "status": project.status.value,
        "status_reason": project.status_reason,
        "workspace": project.workspace,
        "allowed_commands": sorted(project.allowed_kinds),
        "max_concurrent_commands": project.max_concurrent,
    }


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": _ts(entry.at),
        "action": entry.action,
        "key_id": entry.actor_key_id,
        "target": entry.target,
        "client_ip": entry.client_ip,
        "request_id": entry.request_id,
        "outcome": entry.outcome,
        "project": entry.project,
        "details": entry.details,
    }


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


Priority = Literal["high", "normal", "low"]
OnOutputLimit = Literal["truncate", "kill"]


class _Run(BaseModel):
    model_config = Strict
    timeout_seconds: int | None = Field(default=None, ge=1)
    priority: Priority = "normal"
    # at the output cap: keep the first and last part and run on, or stop the command
    on_output_limit: OnOutputLimit = "truncate"


def _examples(*bodies: dict[str, Any]) -> ConfigDict:
    """Requests that succeed on a project that allows the kind: documentation for clients, and
    bodies schemathesis mixes into what it generates (tests/e2e/test_schemathesis.py)."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(bodies)})


class ClaudeRun(_Run):
    model_config = _examples(
        {"prompt": "Summarise README.md in three lines"},
        {"prompt": "Add a test for the parser", "max_turns": 5, "permission_mode": "acceptEdits"},
    )
    prompt: Text = Field(min_length=1, pattern=r"\S")  # not blank
    # the domain's rules, documented (policy still decides)
    model: Text | None = Field(default=None, pattern=_whole(policy.MODEL))
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    permission_mode: Literal[tuple(sorted(policy.PERMISSION_MODES))] | None = None  # type: ignore[valid-type]
    resume_session: Text | None = Field(default=None, pattern=_whole(policy.SESSION_ID))
    allowed_tools: list[Annotated[Text, Field(pattern=_whole(policy.TOOL))]] | None = Field(
        default=None, max_length=100
    )
    append_system_prompt: Text | None = None


class ShellRun(_Run):
    model_config = _examples({"argv": ["ls", "-la"]}, {"command": "make test", "cwd": "src"})
    command: Text | None = None
    argv: list[Text] | None = None
    cwd: Text | None = None
    env: dict[Text, Text] = Field(default_factory=dict)


class GitRun(_Run):
    model_config = _examples({"args": ["status"]}, {"args": ["log", "--oneline", "-n", "5"]})
    args: list[Text] = Field(min_length=1)
    cwd: Text | None = None


def command_view(cmd: Command, *, queue_position: int | None = None) -> dict[str, Any]:
    return {
        "command_id": cmd.id,
        "stream_id": cmd.id,
        "project": cmd.project_id,
        "kind": cmd.kind.value,
        "argv": list(cmd.argv),
        "status": cmd.status.value,
        "priority": cmd.priority.value,
        "queue_position": queue_position,
        "created_at": _ts(cmd.created_at),
        "started_at": _ts(cmd.started_at),
        "finished_at": _ts(cmd.finished_at),
        "duration_ms": cmd.duration_ms,
        "exit_code": cmd.exit_code,
        "error": cmd.error,
        "timeout_seconds": cmd.timeout_seconds,
        "output_bytes": cmd.output_bytes,
        "truncated": cmd.truncated,
        "on_output_limit": cmd.on_output_limit.value,
        "session_id": cmd.claude.session_id,
        "total_cost_usd": cmd.claude.total_cost_usd,
        "num_turns": cmd.claude.num_turns,
        "is_error": cmd.claude.is_error,
        "events_url": f"/commands/{cmd.id}/events",
    }


class ConfigItemWrite(BaseModel):
    model_config = Strict
    name: Text = Field(min_length=1, max_length=64)
    content: Text


class ConfigItemUpdate(BaseModel):
    model_config = Strict
    content: Text
