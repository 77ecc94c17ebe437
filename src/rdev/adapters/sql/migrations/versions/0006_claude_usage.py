"""Claude cost and tokens: commands.claude_run_cost_usd (a run's own cost; claude_cost_usd
stays the CLI's figure), commands.claude_usage (the figures behind it), claude_usage, one
row per finished run and model, summed by day for the usage reports and budgets, and
api_keys.daily_budget_usd

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.add_column(sa.Column("claude_run_cost_usd", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("claude_usage", sa.JSON(), nullable=True))
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("daily_budget_usd", sa.Float(), nullable=True))
    op.create_table(
        "claude_usage",
        sa.Column("command_id", sa.String(length=40), primary_key=True),
        sa.Column("model", sa.String(length=100), primary_key=True),
        sa.Column("project_id", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_tokens", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_claude_usage_project", "claude_usage", ["project_id", "day"])
    op.create_index("ix_claude_usage_key", "claude_usage", ["key_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_claude_usage_key", table_name="claude_usage")
    op.drop_index("ix_claude_usage_project", table_name="claude_usage")
    op.drop_table("claude_usage")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("daily_budget_usd")
    with op.batch_alter_table("commands") as batch_op:
        batch_op.drop_column("claude_usage")
        batch_op.drop_column("claude_run_cost_usd")
