"""A Claude command's outcome (subtype, terminal_reason, permission denials) on SQLite and
PostgreSQL, and the migration that added its columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from rdev.adapters.sql.store import Store, build_store
from rdev.config import Settings
from rdev.domain.lifecycle import CLAIMED_LAST_SEQ
from rdev.domain.models import (
    ClaudeResult,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    Priority,
)
from rdev.ports import Finish
from tests.support import at_revision

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def _command(cid: str) -> Command:
    return Command(
        id=cid, project_id="demo", kind=CommandKind.CLAUDE, argv=("claude", "--", "hi"),
        status=CommandStatus.QUEUED, priority=Priority.NORMAL, created_at=NOW, timeout_seconds=60,
    )  # fmt: skip


async def _run(store: Store, cid: str, claude: ClaudeResult | None) -> Command:
    await store.commands.add(_command(cid), Event(cid, 1, EventType.STATUS, {"status": "queued"}))
    await store.commands.claim(
        owner="r1", lease_until=NOW + timedelta(days=1), now=NOW, slots=1,
        project_limit=lambda _p: 5,
    )  # fmt: skip
    end = Finish(status=CommandStatus.SUCCEEDED, finished_at=NOW, exit_code=0, claude=claude)
    done = Event(cid, CLAIMED_LAST_SEQ + 1, EventType.COMPLETE, {"status": "succeeded"})
    assert await store.commands.finish(cid, end, [done])
    got = await store.commands.get(cid)
    assert got is not None
    return got


async def test_the_outcome_round_trips(store: Store) -> None:
    denials = (("Bash", "touch x"), ("Write", "/w/ünïcode"))
    claude = ClaudeResult(
        session_id="s-1", is_error=False, subtype="success", terminal_reason="completed",
        permission_denials=denials,
    )  # fmt: skip
    got = await _run(store, "cmd_denied", claude)
    assert got.claude == claude


async def test_a_run_without_result_has_no_outcome(store: Store) -> None:
    got = await _run(store, "cmd_none", ClaudeResult(session_id="s-2"))
    assert (got.claude.subtype, got.claude.terminal_reason) == (None, None)
    assert got.claude.permission_denials == ()


async def test_migration_0009_leaves_existing_commands_without_outcome(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with at_revision(f"sqlite:///{path}", "0005") as conn:
        conn.execute(
            text("INSERT INTO commands (id, project_id, kind, argv, status, priority, "
                 "priority_rank, created_at, timeout_seconds, env, cancel_requested, "
                 "output_bytes, truncated, claude_is_error) VALUES ('cmd_old', 'demo', 'claude', "
                 "'[\"claude\"]', 'succeeded', 'normal', 1, '2026-11-01 00:00:00', 60, '{}', 0, "
                 "0, 0, 0)")
        )  # fmt: skip
    store = build_store(Settings(database_url=f"sqlite:///{path}"))
    try:
        await store.db.migrate()
        got = await store.commands.get("cmd_old")
        assert got is not None and got.claude.is_error is False
        assert (got.claude.subtype, got.claude.permission_denials) == (None, ())
    finally:
        await store.close()
