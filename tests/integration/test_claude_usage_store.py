"""Claude usage in SQL, on SQLite and PostgreSQL: a run's figures round-trip on its command, the
session baseline is the latest earlier run with figures, and the daily sums per model are
filtered by project, key and grant, read through their indexes. Also the migration."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from rdev.adapters.sql.store import Store, build_store
from rdev.adapters.sql.usage import SqlUsageStore
from rdev.config import Settings
from rdev.domain.models import (
    ClaudeResult,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    Priority,
)
from rdev.domain.usage import ModelUsage, Reported, RunUsage, Tokens
from rdev.ports import Finish, UsageQuery
from tests.support import at_revision

DAY1 = datetime(2031, 5, 6, 23, 59, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(minutes=2)  # the next UTC day
S = "0f8e2b1c-3d4a-4b5c-8d6e-7f8091a2b3c4"
OPUS, HAIKU = "claude-opus-4-8", "claude-haiku-4-5"


async def _finished(
    store: Store, cid: str, *, project: str = "p", key: str | None = "k1",
    started: datetime = DAY1, finished: datetime = DAY1, cost: float | None = 0.5,
    models: tuple[ModelUsage, ...] = (ModelUsage(OPUS, 0.5, Tokens(10, 20, 30, 40)),),
    session: str | None = S,
) -> Command:  # fmt: skip
    cmd = Command(
        id=cid, project_id=project, kind=CommandKind.CLAUDE, argv=("claude",),
        status=CommandStatus.QUEUED, priority=Priority.NORMAL, created_at=started,
        timeout_seconds=60, key_id=key,
    )  # fmt: skip
    await store.commands.add(cmd, Event(cid, 1, EventType.STATUS, {"status": "queued"}))
    await store.commands.claim(
        owner="r", lease_until=started + timedelta(hours=1), now=started, slots=100,
        project_limit=lambda _p: 100,
    )  # fmt: skip
    reported = Reported(cost, models, Tokens(1, 2, 3, 4)) if cost is not None else None
    usage = RunUsage(cost, models) if cost is not None else None
    claude = ClaudeResult(session_id=session, total_cost_usd=cost, usage=usage, reported=reported)
    fin = Finish(status=CommandStatus.SUCCEEDED, finished_at=finished, exit_code=0, claude=claude)
    assert await store.commands.finish(cid, fin, [])
    got = await store.commands.get(cid)
    assert got is not None
    return got


async def test_a_runs_usage_round_trips_on_its_command(store: Store) -> None:
    models = (ModelUsage(OPUS, 0.25, Tokens(1, 2, 3, 4)), ModelUsage(HAIKU, 0.125, Tokens(5)))
    got = await _finished(store, "cmd_a", cost=0.375, models=models)
    assert got.claude.total_cost_usd == 0.375
    assert got.claude.usage == RunUsage(0.375, models)
    assert got.claude.reported == Reported(0.375, models, Tokens(1, 2, 3, 4))


async def test_a_run_without_a_result_stores_no_usage(store: Store) -> None:
    got = await _finished(store, "cmd_x", cost=None)
    assert got.claude.usage is None and got.claude.reported is None
    rows = await store.usage.daily(UsageQuery(DAY1.date(), DAY2.date(), project_id="p"))
    assert rows == []


async def test_the_baseline_is_the_latest_earlier_run_of_the_session_with_figures(
    store: Store,
) -> None:
    t = DAY1 - timedelta(hours=1)
    await _finished(store, "cmd_1", started=t, finished=t + timedelta(minutes=1), cost=0.25)
    await _finished(store, "cmd_2", started=t + timedelta(minutes=2),
                    finished=t + timedelta(minutes=3), cost=0.5)  # fmt: skip
    # cancelled without a result: no figures, passed over
    await _finished(store, "cmd_3", started=t + timedelta(minutes=4),
                    finished=t + timedelta(minutes=5), cost=None)  # fmt: skip
    # another session, another project: not this session's baseline
    await _finished(store, "cmd_4", finished=t + timedelta(minutes=6), cost=9.0, session="other")
    await _finished(store, "cmd_5", project="q", finished=t + timedelta(minutes=6), cost=9.0)
    base = await store.commands.claude_baseline("p", S, t + timedelta(minutes=10))
    assert base is not None and base.cost_usd == 0.5
    assert base.run_tokens == Tokens(1, 2, 3, 4)
    # a run that started before cmd_2 finished (they overlapped) resumed from cmd_1
    base = await store.commands.claude_baseline("p", S, t + timedelta(minutes=2, seconds=30))
    assert base is not None and base.cost_usd == 0.25
    assert await store.commands.claude_baseline("p", S, t) is None
    assert await store.commands.claude_baseline("p", "nope", DAY2) is None


async def _three_days(store: Store) -> None:
    opus, haiku = ModelUsage(OPUS, 0.5, Tokens(10, 20, 30, 40)), ModelUsage(HAIKU, 0.25, Tokens(1))
    await _finished(store, "cmd_1", finished=DAY1, cost=0.75, models=(opus, haiku))
    await _finished(store, "cmd_2", finished=DAY1, cost=0.5, models=(opus,))
    await _finished(store, "cmd_3", finished=DAY2, cost=0.5, models=(opus,))
    await _finished(store, "cmd_4", key="k2", finished=DAY2, cost=0.5, models=(opus,))
    await _finished(store, "cmd_5", project="q", finished=DAY2, cost=0.5, models=(opus,))


async def test_usage_sums_by_utc_day_and_model_for_a_project(store: Store) -> None:
    await _three_days(store)
    rows = await store.usage.daily(UsageQuery(DAY1.date(), DAY2.date(), project_id="p"))
    assert [(r.day, r.model, r.cost_usd, r.commands) for r in rows] == [
        (DAY1.date(), HAIKU, 0.25, 1),
        (DAY1.date(), OPUS, 1.0, 2),
        (DAY2.date(), OPUS, 1.0, 2),
    ]
    assert rows[1].tokens == Tokens(20, 40, 60, 80)


async def test_usage_of_a_key_is_filtered_by_day_and_grant(store: Store) -> None:
    await _three_days(store)
    rows = await store.usage.daily(UsageQuery(DAY2.date(), DAY2.date(), key_id="k1"))
    assert [(r.day, r.model, r.cost_usd) for r in rows] == [(DAY2.date(), OPUS, 1.0)]
    granted = UsageQuery(DAY1.date(), DAY2.date(), key_id="k1", projects=frozenset({"q"}))
    assert [r.cost_usd for r in await store.usage.daily(granted)] == [0.5]
    none = UsageQuery(DAY1.date(), DAY2.date(), key_id="k1", projects=frozenset())
    assert await store.usage.daily(none) == []


async def test_spent_sums_one_day_of_a_key_or_a_project(store: Store) -> None:
    await _three_days(store)
    assert await store.usage.spent(DAY1.date(), key_id="k1") == 1.25
    assert await store.usage.spent(DAY2.date(), key_id="k1") == 1.0
    assert await store.usage.spent(DAY2.date(), project_id="p") == 1.0
    assert await store.usage.spent(DAY2.date(), project_id="q") == 0.5
    assert await store.usage.spent(date(2031, 1, 1), project_id="p") == 0.0


@pytest.mark.parametrize(("column", "index"),
                         [("project_id", "ix_claude_usage_project"),
                          ("key_id", "ix_claude_usage_key")])  # fmt: skip
async def test_the_sums_read_through_an_index(store: Store, column: str, index: str) -> None:
    await _three_days(store)
    where = f"WHERE {column} = 'p' AND day >= '2031-05-01' AND day <= '2031-05-31'"
    query = f"SELECT day, model, sum(cost_usd) FROM claude_usage {where} GROUP BY day, model"

    def plan(conn: object) -> str:
        if store.db.is_sqlite:
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + query))  # type: ignore[attr-defined]
            return " ".join(str(r[-1]) for r in rows)
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # type: ignore[attr-defined]
        return " ".join(r[0] for r in conn.execute(text("EXPLAIN " + query)))  # type: ignore[attr-defined]

    assert index in await store.db.write(plan)


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_migration_0006_keeps_existing_claude_costs_as_the_clis_figure(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db_url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if database == "sqlite"
        else str(request.getfixturevalue("own_pg_url"))  # an empty database of its own
    )
    with at_revision(db_url, "0005") as conn:
        conn.execute(
            text("INSERT INTO commands (id, project_id, kind, argv, status, priority, "
                 "priority_rank, created_at, timeout_seconds, env, cancel_requested, "
                 "output_bytes, truncated, claude_cost_usd, claude_session_id, finished_at) "
                 "VALUES ('cmd_old', 'p', 'claude', '[\"claude\"]', 'succeeded', 'normal', 1, "
                 "'2026-11-01 00:00:00+00', 60, '{}', false, 0, false, 0.5, 's1', "
                 "'2026-11-01 00:01:00+00')")
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO api_keys (id, name, secret_hash, scopes, projects, allowed_ips, "
                 "created_at) VALUES ('k_old', 'old', 'h', '[\"admin\"]', '[]', '[]', "
                 "'2026-11-01 00:00:00+00')")
        )  # fmt: skip
    store = build_store(Settings(database_url=db_url))
    try:
        await store.db.migrate()
        got = await store.commands.get("cmd_old")
        assert got is not None and got.claude.total_cost_usd == 0.5
        assert got.claude.usage is None
        # an old run is still the baseline of a run resumed from it
        base = await store.commands.claude_baseline("p", "s1", datetime.now(UTC))
        assert base == Reported(0.5)
        assert await SqlUsageStore(store.db).spent(date(2026, 11, 1), project_id="p") == 0.0
        key = await store.keys.get("k_old")
        assert key is not None and key.daily_budget_usd is None  # the server default applies
    finally:
        await store.close()
