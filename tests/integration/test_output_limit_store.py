"""A command's `on_output_limit` on SQLite and PostgreSQL, and the migration that added it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from rdev.adapters.sql.store import Store, build_store
from rdev.config import Settings
from rdev.domain.models import (
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    OutputLimitAction,
    Priority,
)
from tests.support import at_revision


def _command(cid: str, action: OutputLimitAction) -> Command:
    return Command(
        id=cid, project_id="demo", kind=CommandKind.SHELL, argv=("yes",),
        status=CommandStatus.QUEUED, priority=Priority.NORMAL, created_at=datetime.now(UTC),
        timeout_seconds=60, on_output_limit=action,
    )  # fmt: skip


async def test_on_output_limit_round_trips(store: Store) -> None:
    for cid, action in (("cmd_k", OutputLimitAction.KILL), ("cmd_t", OutputLimitAction.TRUNCATE)):
        first = Event(cid, 1, EventType.STATUS, {"status": "queued"})
        await store.commands.add(_command(cid, action), first)
        got = await store.commands.get(cid)
        assert got is not None and got.on_output_limit is action


async def test_migration_0004_gives_existing_commands_truncate(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with at_revision(f"sqlite:///{path}", "0002") as conn:
        conn.execute(
            text("INSERT INTO commands (id, project_id, kind, argv, status, priority, "
                 "priority_rank, created_at, timeout_seconds, env, cancel_requested, "
                 "output_bytes, truncated) VALUES ('cmd_old', 'demo', 'shell', '[\"true\"]', "
                 "'succeeded', 'normal', 1, '2026-11-01 00:00:00', 60, '{}', 0, 0, 0)")
        )  # fmt: skip
    store = build_store(Settings(database_url=f"sqlite:///{path}"))
    try:
        await store.db.migrate()
        got = await store.commands.get("cmd_old")
        assert got is not None and got.on_output_limit is OutputLimitAction.TRUNCATE
    finally:
        await store.close()
