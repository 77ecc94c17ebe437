"""Table definitions shared by the stores and the migrations' autogenerate checks."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
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
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", TS),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("output_bytes", BigInteger, nullable=False, default=0),
    Column("truncated", Boolean, nullable=False, default=False),
    Column("on_output_limit", String(16), nullable=False, server_default="truncate"),
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
