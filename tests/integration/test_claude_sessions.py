"""Claude sessions in the command store, on SQLite and PostgreSQL: recorded as soon as the CLI
names them, found only within their project, never erased by a run that ends without a result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rdev.bootstrap import Store
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

T0 = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
S1 = "0f8e2b1c-3d4a-4b5c-8d6e-7f8091a2b3c4"
S2 = "11111111-2222-4333-8444-555555555555"


async def _running(store: Store, command_id: str, project: str) -> Command:
    cmd = Command(
        id=command_id, project_id=project, kind=CommandKind.CLAUDE, argv=("claude",),
        status=CommandStatus.QUEUED, priority=Priority.NORMAL, created_at=T0, timeout_seconds=60,
    )  # fmt: skip
    await store.commands.add(cmd, Event(cmd.id, 1, EventType.STATUS, {"status": "queued"}))
    claimed = await store.commands.claim(
        owner="r1", lease_until=T0 + timedelta(minutes=1), now=T0, slots=10,
        project_limit=lambda _p: 10,
    )  # fmt: skip
    assert cmd.id in [c.id for c in claimed]
    return cmd


def _finish(session_id: str | None, status: CommandStatus = CommandStatus.CANCELLED) -> Finish:
    return Finish(
        status=status, finished_at=T0 + timedelta(seconds=5),
        claude=ClaudeResult(session_id=session_id),
    )  # fmt: skip


async def test_a_recorded_session_is_found_in_its_project_only(store: Store) -> None:
    cmd = await _running(store, "cmd_000000000001aaaaaaaa0001", "p")
    assert not await store.commands.has_claude_session("p", S1)
    await store.commands.record_claude_session(cmd.id, S1)
    assert await store.commands.has_claude_session("p", S1)
    assert not await store.commands.has_claude_session("q", S1)
    assert not await store.commands.has_claude_session("p", S2)
    got = await store.commands.get(cmd.id)
    assert got is not None and got.claude.session_id == S1


async def test_a_run_ending_without_a_result_keeps_the_recorded_session(store: Store) -> None:
    cmd = await _running(store, "cmd_000000000001aaaaaaaa0002", "p")
    await store.commands.record_claude_session(cmd.id, S1)
    assert await store.commands.finish(cmd.id, _finish(None), [])
    got = await store.commands.get(cmd.id)
    assert got is not None and got.status is CommandStatus.CANCELLED
    assert got.claude.session_id == S1
    assert await store.commands.has_claude_session("p", S1)


async def test_the_result_session_is_stored_at_finish(store: Store) -> None:
    cmd = await _running(store, "cmd_000000000001aaaaaaaa0003", "p")
    assert await store.commands.finish(cmd.id, _finish(S2, CommandStatus.SUCCEEDED), [])
    assert await store.commands.has_claude_session("p", S2)
    assert not await store.commands.has_claude_session("p", S1)
