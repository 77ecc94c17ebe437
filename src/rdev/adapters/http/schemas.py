"""Request and response bodies at the edge (pydantic), and their mapping from domain objects.

Every string a body carries is `Text` (list items and mapping keys too): valid Unicode without
NUL, checked by pydantic before a route runs, so a refusal is a 422 naming the field and
nothing is stored (tests/unit/test_schemas.py holds every model to this)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictFloat
from pydantic_core import PydanticCustomError

from rdev.domain import claude_outcome, policy, text
from rdev.domain.models import ApiKey, AuditEntry, Command, CommandKind, IssuedKey, Project
from rdev.domain.policy import MAX_KEY_RATE_LIMIT_RPS
from rdev.runtime.claude_usage import cost_view

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
    name: Text = Field(
        min_length=1, max_length=200, description="A name for people", examples=["ci"]
    )
    scopes: list[Text] = Field(
        min_length=1,
        max_length=20,
        description="What the key may do (docs/security.md)",
        examples=[["projects:read", "commands:read"]],
    )
    projects: list[Text] = Field(
        default_factory=list, max_length=500, description="Projects it may use; empty: all"
    )
    allowed_ips: list[Text] = Field(
        default_factory=list,
        max_length=100,
        description="Client addresses or CIDRs it may come from; empty: any",
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="When it stops working (ISO 8601 with offset); null: never"
    )
    daily_budget_usd: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="Claude spend per UTC day past which its Claude commands are refused "
        "(docs/claude-cost.md); null: the server's default",
    )
    rate_limit_rps: float | None = Field(
        None,
        gt=0,
        le=MAX_KEY_RATE_LIMIT_RPS,
        strict=True,
        description="The key's own rate limit in requests per second; null: the server's",
    )


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
                    "description": "What went wrong",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string", "description": "A stable code"},
                        "message": {"type": "string", "description": "For people to read"},
                        "details": {"type": "object", "description": "More, by code"},
                    },
                },
                "meta": {
                    "type": "object",
                    "description": "About the request",
                    "required": ["request_id"],
                    "properties": {
                        "request_id": {"type": "string", "description": "This request's id"}
                    },
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
        "daily_budget_usd": key.daily_budget_usd,
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
        "daily_budget_usd": view["daily_budget_usd"],
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
        "claude_env": project.claude_env.names,  # the values are secrets: never shown
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
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Time limit; at most RDEV_MAX_TIMEOUT_SECONDS; null: RDEV_DEFAULT_TIMEOUT",
    )
    priority: Priority = Field(default="normal", description="Its place in the project's queue")
    # at the output cap: keep the first and last part and run on, or stop the command
    on_output_limit: OnOutputLimit = Field(
        default="truncate",
        description="At the output cap: keep the head and tail and run on, or stop it",
    )


def _examples(*bodies: dict[str, Any]) -> ConfigDict:
    """Requests that succeed on a project that allows the kind: documentation for clients, and
    bodies schemathesis mixes into what it generates (tests/e2e/test_schemathesis.py)."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(bodies)})


class ClaudeRun(_Run):
    model_config = _examples(
        {"prompt": "Summarise README.md in three lines"},
        {"prompt": "Add a test for the parser", "max_turns": 5, "permission_mode": "acceptEdits"},
    )
    prompt: Text = Field(min_length=1, pattern=r"\S", description="What to ask Claude")  # not blank
    # the domain's rules, documented (policy still decides)
    model: Text | None = Field(
        default=None, pattern=_whole(policy.MODEL), description="The model; null: Claude's default"
    )
    max_turns: int | None = Field(
        default=None, ge=1, le=1000, description="At most this many turns"
    )
    permission_mode: Literal[tuple(sorted(policy.PERMISSION_MODES))] | None = Field(  # type: ignore[valid-type]
        default=None, description="Claude's permission mode; some need commands:shell"
    )
    resume_session: Text | None = Field(
        default=None,
        pattern=_whole(policy.SESSION_ID),
        description="Resume this session (one this project ran)",
    )
    allowed_tools: list[Annotated[Text, Field(pattern=_whole(policy.TOOL))]] | None = Field(
        default=None, max_length=100, description="Tools Claude may use; some need commands:shell"
    )
    append_system_prompt: Text | None = Field(
        default=None, description="Text added to Claude's system prompt"
    )
    # strict: `true` or `"5"` is not an amount
    max_budget_usd: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="The CLI ends the run once it has spent this much, in USD",
    )


class ShellRun(_Run):
    model_config = _examples({"argv": ["ls", "-la"]}, {"command": "make test", "cwd": "src"})
    command: Text | None = Field(
        default=None, description="A shell command line (only where the project allows raw shell)"
    )
    argv: list[Text] | None = Field(default=None, description="The program and its arguments")
    cwd: Text | None = Field(default=None, description="A folder relative to the workspace")
    env: dict[Text, Text] = Field(
        default_factory=dict, description="Extra environment (names checked by policy)"
    )


class GitRun(_Run):
    model_config = _examples({"args": ["status"]}, {"args": ["log", "--oneline", "-n", "5"]})
    args: list[Text] = Field(min_length=1, description="git's arguments, after `git`")
    cwd: Text | None = Field(default=None, description="A folder relative to the workspace")


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
        **(claude_outcome.view(cmd.claude) if cmd.kind is CommandKind.CLAUDE else {}),
        "events_url": f"/commands/{cmd.id}/events",
        **cost_view(cmd.claude),
    }


class ConfigItemWrite(BaseModel):
    model_config = Strict
    name: Text = Field(min_length=1, max_length=64, description="Its name", examples=["review"])
    content: Text = Field(description="Its text (Markdown)", examples=["Review the diff."])


class ConfigItemUpdate(BaseModel):
    model_config = Strict
    content: Text = Field(description="Its new text (Markdown)", examples=["Review the diff."])
