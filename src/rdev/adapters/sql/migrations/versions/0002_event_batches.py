"""events: one row per written batch instead of one row per event

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_batches",
        sa.Column("command_id", sa.String(length=40), nullable=False),
        sa.Column("seq_start", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq_end", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("command_id", "seq_start"),
    )
    old = sa.table(
        "events",
        sa.column("command_id", sa.String),
        sa.column("seq", sa.Integer),
        sa.column("type", sa.String),
        sa.column("data", sa.Text),
        sa.column("created_at", TS),
    )
    new = sa.table(
        "event_batches",
        sa.column("command_id", sa.String),
        sa.column("seq_start", sa.Integer),
        sa.column("seq_end", sa.Integer),
        sa.column("body", sa.Text),
        sa.column("created_at", TS),
    )
    op.execute(
        new.insert().from_select(
            ["command_id", "seq_start", "seq_end", "body", "created_at"],
            sa.select(
                old.c.command_id,
                old.c.seq,
                old.c.seq,
                old.c.type + sa.literal("\t") + old.c.data,
                old.c.created_at,
            ),
        )
    )
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_index("ix_events_created")
    op.drop_table("events")
    op.rename_table("event_batches", "events")
    with op.batch_alter_table("events") as batch_op:
        batch_op.create_index("ix_events_created", ["created_at"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("event batches cannot be split back into rows by a migration")
