"""What each successful answer carries, for OpenAPI: the envelope `{"data": …, "meta": …}` with
the real `data` model of each route. Routes return finished JSON (see `deps.ok`), so these
models document and are never used to validate or re-encode; tests/unit/test_openapi.py holds
every view function in `schemas.py` to its model, and schemathesis holds the live answers to
the published schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rdev.domain.models import CommandStatus, ProjectStatus, Scope
from rdev.domain.webhooks import DeliveryStatus, WebhookEvent
from rdev.services.claude_config import ConfigType

_TS = "An ISO 8601 timestamp with its UTC offset"


def _d(description: str, *examples: object, **limits: Any) -> Any:
    """A field with its description and, where given, examples and limits."""
    return Field(description=description, examples=list(examples) or None, **limits)


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Meta(BaseModel):
    request_id: str = _d("This request's id (also the X-Request-ID header); quote it in reports")
    next_cursor: str | None = _d(
        "Set on a page that has more: pass it as `cursor` for the next page", default=None
    )


class PermissionDenial(_View):
    tool_name: str = _d("The tool Claude asked for and was refused", "Bash")
    input_summary: str = _d("What it asked, shortened", "touch x", max_length=200)


class ModelUsageView(_View):
    """A Claude run's own cost and tokens for one model (`runtime/claude_usage.model_view`)."""

    model: str = _d("The model", "claude-sonnet-4-5")
    cost_usd: float = _d("This run's own cost on it, in USD", 0.0123, ge=0)
    input_tokens: int = _d("Input tokens", 1200, ge=0)
    output_tokens: int = _d("Output tokens", 340, ge=0)
    cache_read_tokens: int = _d("Input tokens read from the prompt cache", 0, ge=0)
    cache_creation_tokens: int = _d("Input tokens written to the prompt cache", 0, ge=0)


class CommandView(_View):
    """`schemas.command_view`, field for field."""

    command_id: str = _d("The command's id", "cmd_3f2a9c4b5d6e7f80")
    stream_id: str = _d("The id of its event stream (the command's id)", "cmd_3f2a9c4b5d6e7f80")
    project: str = _d("The project it runs in", "demo")
    kind: Literal["claude", "shell", "git"] = _d("What it runs", "git")
    argv: list[str] = _d(
        "The argument vector it runs (Claude's prompt included)", ["git", "status"]
    )
    status: CommandStatus = _d("Where it is in its life", "queued")
    priority: Literal["high", "normal", "low"] = _d("Its place in the project's queue", "normal")
    queue_position: int | None = _d("1 for the next to start; null once started", 1, ge=1)
    created_at: str = _d(f"When it was submitted. {_TS}", "2026-01-02T03:04:05.678+00:00")
    started_at: str | None = _d(f"When it started, or null. {_TS}")
    finished_at: str | None = _d(f"When it ended, or null. {_TS}")
    duration_ms: int | None = _d("From start to end, once ended", 1234, ge=0)
    exit_code: int | None = _d("The exit code (negative: killed by that signal)", 0)
    error: str | None = _d("Why it failed without an exit code (a stable code), or null", None)
    timeout_seconds: int = _d("Its time limit", 600, ge=1)
    output_bytes: int = _d("Output bytes it wrote so far", 0, ge=0)
    truncated: bool = _d("Whether its stored output was cut at the output cap", False)
    on_output_limit: Literal["truncate", "kill"] = _d("What happens at the output cap", "truncate")
    session_id: str | None = _d("Claude's session id (kind claude), or null")
    total_cost_usd: float | None = _d("Claude's reported cost in USD, or null", ge=0)
    num_turns: int | None = _d("Claude's reported turns, or null", ge=0)
    is_error: bool | None = _d("Claude's own error flag, or null")
    events_url: str = _d("Where its events stream", "/commands/cmd_3f2a9c4b5d6e7f80/events")
    # claude commands only (domain/claude_outcome.py): how the turn ended
    outcome: Literal["completed", "denied", "error"] | None = _d(
        "Claude only: the turn did its work (`completed`), had tools refused (`denied`), ended in "
        "an error (`error`), or no result came (null)",
        default=None,
    )
    subtype: str | None = _d("Claude only: the result's subtype", "success", default=None)
    terminal_reason: str | None = _d("Claude only: why the turn ended", default=None)
    permission_denials: list[PermissionDenial] | None = _d(
        "Claude only: the tool uses that were refused (at most 20)", default=None
    )
    # Claude cost accounting (docs/claude-cost.md)
    cost_usd: float | None = _d(
        "This run's own cost in USD (a resumed session's earlier turns left out), or null", ge=0
    )
    cumulative_cost_usd: float | None = _d("The CLI's own reported figure, or null", ge=0)
    usage: list[ModelUsageView] = _d("This run's cost and tokens per model")


class CommandResponse(BaseModel):
    data: CommandView
    meta: Meta


class CommandPage(BaseModel):
    data: list[CommandView] = _d("The commands, newest first")
    meta: Meta


class ProjectView(_View):
    id: str = _d("The project's id", "demo")
    name: str = _d("Its name (the id)", "demo")
    description: str = _d("What it is, from its settings", "")
    status: ProjectStatus = _d("Whether it takes commands (`running`)", "running")
    status_reason: str | None = _d("Why it does not run, for people to read", None)
    workspace: str = _d("Its working directory, where commands run", "/workspace")
    allowed_commands: list[Literal["claude", "shell", "git"]] = _d(
        "The kinds of command it accepts", ["claude", "git"]
    )
    max_concurrent_commands: int | None = _d(
        "Its commands that run at once; null: CONCURRENT_COMMANDS", 5, ge=1
    )
    claude_env: list[str] = _d(
        "The names of the variables its claude commands get (the values are secrets: never shown)",
        ["ANTHROPIC_API_KEY"],
    )


class ProjectResponse(BaseModel):
    data: ProjectView
    meta: Meta


class ProjectList(BaseModel):
    data: list[ProjectView] = _d("The projects this key may see")
    meta: Meta


_KEY_ID = "k1a2b3c4d5e6"


class KeyView(_View):
    id: str = _d("The key's id (not a secret)", _KEY_ID, max_length=32)
    name: str = _d("Its name", "ci", max_length=200)
    scopes: list[Scope] = _d("What it may do (see docs/security.md)", ["projects:read"])
    projects: list[str] = _d("The projects it may use; empty: all", ["demo"])
    allowed_ips: list[str] = _d("Client addresses or CIDRs it may come from; empty: any", [])
    expires_at: str | None = _d(f"When it stops working, or null. {_TS}")
    created_at: str = _d(f"When it was made. {_TS}")
    revoked_at: str | None = _d(f"When it was revoked, or null. {_TS}")
    last_used_at: str | None = _d(f"When it was last used (to the minute), or null. {_TS}")
    daily_budget_usd: float | None = _d(
        "Its own daily Claude budget in USD; null: the server's default (docs/claude-cost.md)"
    )
    rate_limit_rps: float | None = _d(
        "Its own rate limit in requests per second; null: the server's (docs/rate-limits.md)"
    )


class IssuedKeyView(_View):
    id: str = _d("The key's id (not a secret)", _KEY_ID, max_length=32)
    name: str = _d("Its name", "ci", max_length=200)
    key: str = _d(
        "The secret key, shown this once: send it as `Authorization: Bearer <key>`",
        f"rdev_sk_{_KEY_ID}_" + "x" * 43,
    )
    scopes: list[Scope] = _d("What it may do", ["projects:read"])
    projects: list[str] = _d("The projects it may use; empty: all", [])
    allowed_ips: list[str] = _d("Client addresses or CIDRs it may come from; empty: any", [])
    expires_at: str | None = _d(f"When it stops working, or null. {_TS}")
    created_at: str = _d(f"When it was made. {_TS}")
    daily_budget_usd: float | None = _d("Its own daily Claude budget in USD, or null")
    rate_limit_rps: float | None = _d("Its own rate limit in requests per second, or null")


class KeyResponse(BaseModel):
    data: KeyView
    meta: Meta


class KeyList(BaseModel):
    data: list[KeyView] = _d("The keys this key may manage")
    meta: Meta


class IssuedKeyResponse(BaseModel):
    data: IssuedKeyView
    meta: Meta


class AuditView(_View):
    id: int | None = _d("The entry's id, increasing", 42)
    at: str = _d(f"When it happened. {_TS}")
    action: str = _d("What happened", "command.submit", max_length=64)
    key_id: str | None = _d("The key that did it, or null", _KEY_ID)
    target: str | None = _d("What it was done to (a command, a key…)", None)
    client_ip: str | None = _d("The client's address", "127.0.0.1")
    request_id: str | None = _d("The request's id", None)
    outcome: str = _d("`ok`, or why it was refused", "ok")
    project: str | None = _d("The project it concerns, if any", "demo")
    details: dict[str, object] = _d("More about it (never a secret)", {})


class AuditPage(BaseModel):
    data: list[AuditView] = _d("Entries, newest first")
    meta: Meta


class ConfigItemView(_View):
    type: ConfigType = _d("Which kind of item", "commands")
    name: str = _d("Its name", "review", max_length=64)
    path: str = _d("Its file in the workspace", ".claude/commands/review.md")
    content: str | None = _d("Its text (absent in a listing)", "Review the diff.", default=None)


class ConfigItemResponse(BaseModel):
    data: ConfigItemView
    meta: Meta


class ConfigItemList(BaseModel):
    data: list[ConfigItemView] = _d("The items of that type")
    meta: Meta


class Deleted(_View):
    deleted: Literal[True] = _d("Always true", True)
    type: ConfigType = _d("Which kind of item", "commands")
    name: str = _d("Its name", "review", max_length=64)


class DeletedResponse(BaseModel):
    data: Deleted
    meta: Meta


class Health(_View):
    status: Literal["ok"] = _d("The process answers", "ok")


class HealthResponse(BaseModel):
    data: Health
    meta: Meta


class Check(_View):
    ok: bool = _d("Whether it passed", True)
    error: str | None = _d("Why not (absent when it passed)", default=None)


class ClaudeProbe(_View):
    found: bool = _d("Whether `--version` answered", True)
    version: str | None = _d("What it answered, or null", "2.1.197 (Claude Code)")
    error: str | None = _d("Why it was not found, or null", None)


class ClaudeReport(_View):
    """`services/claude_cli.report`: what is known of the Claude CLI (never a reason to be
    unready)."""

    binary: str = _d("The CLI it runs (RDEV_CLAUDE_BIN)", "claude")
    per_project: bool = _d("Whether it is checked per project (Kubernetes) or once", False)
    found: bool | None = _d(
        "Once: whether `--version` answered (absent: not checked yet)", True, default=None
    )
    version: str | None = _d("Once: what it answered", "2.1.197 (Claude Code)", default=None)
    error: str | None = _d("Once: why it was not found", default=None)
    projects: dict[str, ClaudeProbe] | None = _d(
        "Per project: what is known of each project already checked", default=None
    )


class Ready(_View):
    status: Literal["ready"] = _d("Every check passed", "ready")
    checks: dict[str, Check] = _d("Each check by name", {"database": {"ok": True}})
    claude: ClaudeReport | None = _d(
        "The Claude CLI, where commands run (absent without one configured)", default=None
    )


class ReadyResponse(BaseModel):
    data: Ready
    meta: Meta


class StreamTokenView(_View):
    token: str = _d("The token: pass it as `?token=` on the command's event stream")
    command_id: str = _d("The command whose stream it opens", "cmd_3f2a9c4b5d6e7f80")
    expires_at: str = _d(f"When it stops working. {_TS}")
    events_url: str = _d("The stream's URL with the token in it")


class StreamTokenResponse(BaseModel):
    data: StreamTokenView
    meta: Meta


_WEBHOOK_ID = "wh_0123456789abcdef0123"
_SECRET = (
    "The signing secret (`whsec_…`), shown only here: verify each delivery's signature with it"
)


class WebhookView(_View):
    """`routes/webhooks.webhook_view`, field for field."""

    id: str = _d("The webhook's id", _WEBHOOK_ID)
    url: str = _d("Where deliveries are POSTed", "https://hooks.example.com/rdev")
    events: list[WebhookEvent] = _d("The events it receives", ["command.completed"])
    projects: list[str] = _d("The projects whose command events it receives; empty: all", [])
    description: str = _d("What it is for", "CI notifications", max_length=500)
    enabled: bool = _d("Whether deliveries are sent", True)
    disabled_reason: str | None = _d("Why it is disabled (`by_request`, `failing`), or null", None)
    failing_since: str | None = _d(f"Since when its deliveries fail, or null. {_TS}", None)
    owner_key_id: str = _d("The key that owns it", _KEY_ID)
    created_at: str = _d(f"When it was made. {_TS}")
    updated_at: str = _d(f"When it was last changed. {_TS}")


class CreatedWebhookView(WebhookView):
    """`webhook_view` and the secret (POST /webhooks)."""

    secret: str = _d(_SECRET, "whsec_" + "A" * 43 + "=")


class WebhookResponse(BaseModel):
    data: WebhookView
    meta: Meta


class CreatedWebhookResponse(BaseModel):
    data: CreatedWebhookView
    meta: Meta


class WebhookList(BaseModel):
    data: list[WebhookView] = _d("The webhooks this key may manage")
    meta: Meta


class DeletedWebhook(_View):
    id: str = _d("The webhook's id", _WEBHOOK_ID)
    deleted: Literal[True] = _d("Always true", True)


class DeletedWebhookResponse(BaseModel):
    data: DeletedWebhook
    meta: Meta


class WebhookSecret(_View):
    id: str = _d("The webhook's id", _WEBHOOK_ID)
    secret: str = _d(
        "The new signing secret (`whsec_…`), shown only here: later attempts are signed with it",
        "whsec_" + "A" * 43 + "=",
    )


class WebhookSecretResponse(BaseModel):
    data: WebhookSecret
    meta: Meta


class AttemptView(_View):
    at: str = _d(f"When it was made. {_TS}")
    status_code: int | None = _d("The endpoint's HTTP status, or null (no answer)", 200)
    latency_ms: int = _d("How long it took", 120, ge=0)
    error: str | None = _d(
        "Why it failed (`timeout`, `HTTP 500`, `refused: …`, …), or null: it succeeded", None
    )
    response_body_prefix: str = _d("The start of the answer's body (its first 512 bytes)", "")


class DeliveryView(_View):
    """`routes/webhooks.delivery_view`, field for field."""

    id: str = _d(
        "The delivery's id (its `webhook-id` header, the same in every attempt)",
        "msg_0123456789abcdef01234567",
    )
    event: WebhookEvent = _d("The event it carries", "command.completed")
    status: DeliveryStatus = _d(
        "`pending` (still tried), `succeeded` (a 2xx answer) or `failed` (given up)", "pending"
    )
    created_at: str = _d(f"When it was made. {_TS}")
    next_attempt_at: str | None = _d(f"When it is tried next, or null. {_TS}")
    attempts: list[AttemptView] = _d("Its attempts, in order")


class DeliveryResponse(BaseModel):
    data: DeliveryView
    meta: Meta


class DeliveryPage(BaseModel):
    data: list[DeliveryView] = _d("The webhook's deliveries, newest first")
    meta: Meta


class UsageTotal(_View):
    cost_usd: float = _d("Claude's cost in USD over the days", 1.25, ge=0)
    input_tokens: int = _d("Input tokens", 120000, ge=0)
    output_tokens: int = _d("Output tokens", 34000, ge=0)
    cache_read_tokens: int = _d("Input tokens read from the prompt cache", 0, ge=0)
    cache_creation_tokens: int = _d("Input tokens written to the prompt cache", 0, ge=0)


class UsageDay(UsageTotal):
    day: str = _d("The UTC day (YYYY-MM-DD)", "2026-01-02")
    model: str = _d("The model", "claude-sonnet-4-5")
    commands: int = _d("Claude commands that used it that day", 3, ge=0)


class _Usage(_View):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    first: str = _d("The first UTC day (YYYY-MM-DD)", "2025-12-04", alias="from")
    last: str = _d("The last UTC day (YYYY-MM-DD)", "2026-01-02", alias="to")
    total: UsageTotal = _d("The sums over all days and models")
    days: list[UsageDay] = _d("Cost and tokens per UTC day and model, days with use only")


class ProjectUsageView(_Usage):
    """`routes/usage._view` of a project."""

    project: str = _d("The project", "demo")


class KeyUsageView(_Usage):
    """`routes/usage._view` of a key."""

    key_id: str = _d("The key", _KEY_ID)


class ProjectUsageResponse(BaseModel):
    data: ProjectUsageView
    meta: Meta


class KeyUsageResponse(BaseModel):
    data: KeyUsageView
    meta: Meta
