"""commands.claude_subtype, claude_terminal_reason, claude_denials: how a Claude turn ended

Revision ID: 0009
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.add_column(sa.Column("claude_subtype", sa.String(length=64)))
        batch_op.add_column(sa.Column("claude_terminal_reason", sa.String(length=64)))
        batch_op.add_column(sa.Column("claude_denials", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.drop_column("claude_denials")
        batch_op.drop_column("claude_terminal_reason")
        batch_op.drop_column("claude_subtype")
