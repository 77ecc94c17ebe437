"""Table definitions shared by the stores and the migrations' autogenerate checks."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

TS = DateTime(timezone=True)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("projects", JSON, nullable=False),
    Column("allowed_ips", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),
    Column("revoked_at", TS),
    Column("last_used_at", TS),
    Column("created_by", String(32)),
    Column("daily_budget_usd", Float),  # Claude spend per UTC day; None: the server default
    Column("rate_limit_rps", Float),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("argv", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("priority_rank", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("key_id", String(32)),
    Column("cwd", Text),
    Column("env", JSON, nullable=False),
    Column("started_at", TS),
    Column("finished_at", TS),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("claude_session_id", String(200)),
    Column("claude_cost_usd", Float),
    Column("claude_num_turns", Integer),
    Column("claude_is_error", Boolean),
    Column("claude_subtype", String(64)),
    Column("claude_terminal_reason", String(64)),
    Column("claude_denials", JSON),  # [[tool name, input summary], ...]
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", TS),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("output_bytes", BigInteger, nullable=False, default=0),
    Column("truncated", Boolean, nullable=False, default=False),
    Column("on_output_limit", String(16), nullable=False, server_default="truncate"),
    Column("claude_run_cost_usd", Float),  # a run's own cost; claude_cost_usd: the CLI's figure
    Column("claude_usage", JSON),  # the figures behind it (adapters/sql/usage.py)
    UniqueConstraint("key_id", "idempotency_key", name="uq_commands_idempotency"),
    Index("ix_commands_queue", "status", "priority_rank", "created_at"),
    Index("ix_commands_project", "project_id", "created_at"),
)

events = Table(
    # One row per written batch: events seq_start..seq_end, one "type<TAB>json" line each.
    # A fast command writes hundreds of events per row instead of hundreds of rows.
    "events",
    metadata,
    Column("command_id", String(40), primary_key=True),
    Column("seq_start", Integer, primary_key=True, autoincrement=False),
    Column("seq_end", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_events_created", "created_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True
    ),
    Column("at", TS, nullable=False),
    Column("action", String(64), nullable=False),
    Column("actor_key_id", String(32)),
    Column("target", String(200)),
    Column("client_ip", String(64)),
    Column("request_id", String(128)),
    Column("outcome", String(32), nullable=False),
    Column("details", JSON, nullable=False),
    Column("project", String(200)),
    Index("ix_audit_action", "action", "id"),
    Index("ix_audit_key", "actor_key_id", "id"),
    Index("ix_audit_project", "project", "id"),
)

# Webhooks (migration 0007): subscriptions, their deliveries (an outbox: rows written in the
# transaction of the change they report) and each delivery's attempts.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_key_id", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=False),
    Column("projects", JSON, nullable=False),
    Column("description", String(500), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", String(64)),
    Column("failing_since", TS),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_webhooks_owner", "owner_key_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("webhook_id", String(32), nullable=False),
    Column("event", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("next_attempt_at", TS),
    Column("attempts", Integer, nullable=False),
    Column("schedule_from", Integer, nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_until", TS),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "created_at", "id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("delivery_id", String(40), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("at", TS, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Column("response_prefix", Text, nullable=False),
)

claude_usage = Table(
    # One row per finished Claude run and model: the run's own cost and tokens, by UTC day.
    "claude_usage",
    metadata,
    Column("command_id", String(40), primary_key=True),
    Column("model", String(100), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("key_id", String(32)),
    Column("day", Date, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_creation_tokens", BigInteger, nullable=False),
    Index("ix_claude_usage_project", "project_id", "day"),
    Index("ix_claude_usage_key", "key_id", "day"),
)
