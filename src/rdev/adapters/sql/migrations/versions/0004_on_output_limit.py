"""commands.on_output_limit: what happens at the output cap ("truncate" or "kill")

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.add_column(
            sa.Column(
                "on_output_limit", sa.String(length=16), nullable=False, server_default="truncate"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch_op:
        batch_op.drop_column("on_output_limit")
