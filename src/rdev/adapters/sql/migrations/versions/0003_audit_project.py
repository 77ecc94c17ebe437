"""audit_log.project: the project an entry is about, so reads can be limited to a key's grants

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("project", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_audit_project", ["project", "id"], unique=False)
    # entries written before this revision kept their project in details only
    audit = sa.table("audit_log", sa.column("project", sa.String), sa.column("details", sa.JSON))
    old = audit.c.details["project"].as_string()
    op.execute(audit.update().where(old.is_not(None)).values(project=sa.func.substr(old, 1, 200)))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_index("ix_audit_project")
        batch_op.drop_column("project")
