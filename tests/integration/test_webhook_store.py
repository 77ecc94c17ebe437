"""The webhook store on SQLite and PostgreSQL: deliveries are added in the transaction of the
change they report (and vanish with it when it rolls back), only for webhooks that may see the
change; claims never hand one delivery to two workers; attempts are logged; a webhook failing
for long is disabled; deliveries page with a cursor; redelivery restarts the schedule."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from rdev.adapters.sql.store import Store, build_store
from rdev.config import Settings
from rdev.domain.errors import InvalidInput, QueueFull
from rdev.domain.lifecycle import CLAIMED_LAST_SEQ
from rdev.domain.models import (
    ApiKey,
    ClaudeResult,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    Priority,
    Scope,
)
from rdev.domain.webhooks import Attempt, DeliveryStatus, Webhook, WebhookEvent
from rdev.ports import Finish, StartNow
from tests.support import at_revision

NOW = datetime.now(UTC)
ALL = frozenset(e for e in WebhookEvent if e is not WebhookEvent.PING)


def key(kid: str, *scopes: Scope, projects: frozenset[str] = frozenset()) -> ApiKey:
    return ApiKey(
        id=kid, name=kid, secret_hash="0" * 64, scopes=frozenset(scopes), created_at=NOW,
        projects=projects,
    )  # fmt: skip


def hook(hid: str, owner: str, projects: frozenset[str] = frozenset()) -> Webhook:
    return Webhook(
        id=hid, owner_key_id=owner, url="https://example.com/h", events=ALL, projects=projects,
        description="", enabled=True, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def command(cid: str, project: str = "a", kind: CommandKind = CommandKind.SHELL) -> Command:
    return Command(
        id=cid, project_id=project, kind=kind, argv=("true",), status=CommandStatus.QUEUED,
        priority=Priority.NORMAL, created_at=datetime.now(UTC), timeout_seconds=60,
    )  # fmt: skip


def first(cid: str) -> Event:
    return Event(cid, 1, EventType.STATUS, {"status": "queued"})


async def setup(store: Store) -> None:
    await store.keys.add(key("admin", Scope.ADMIN))
    await store.keys.add(key("only_a", Scope.WEBHOOKS_MANAGE, projects=frozenset({"a"})))
    await store.webhooks.add(hook("wh_all", "admin"), "whsec_x")
    await store.webhooks.add(hook("wh_a", "only_a"), "whsec_x")
    await store.webhooks.add(hook("wh_b_filter", "admin", frozenset({"b"})), "whsec_x")


async def events_of(store: Store, webhook_id: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    page = await store.webhooks.deliveries(webhook_id, cursor=None, limit=100)
    return [(d.event.value, json.loads(d.payload)) for d in reversed(page.items)]


async def test_command_changes_add_deliveries_within_grants_and_filters(store: Store) -> None:
    await setup(store)
    # key.created for the two keys: admin's webhooks see both, only_a's sees neither (not
    # covered: the admin key is stronger, and only_a does not cover itself... it does)
    await store.commands.enqueue(command("c1", "a"), lambda _p: first("c1"), max_queue=10)
    await store.commands.enqueue(command("c2", "b"), lambda _p: first("c2"), max_queue=10)
    on_all = [e for e, _ in await events_of(store, "wh_all") if e.startswith("command.")]
    on_a = [(e, b["data"]["command_id"]) for e, b in await events_of(store, "wh_a")]
    on_b = [(e, b["data"]["command_id"]) for e, b in await events_of(store, "wh_b_filter")]
    assert on_all == ["command.queued", "command.queued"]
    assert ("command.queued", "c1") in on_a and all(c != "c2" for _, c in on_a)
    assert on_b == [("command.queued", "c2")]


async def test_a_rolled_back_change_leaves_no_delivery(store: Store) -> None:
    await setup(store)
    await store.commands.enqueue(command("c1"), lambda _p: first("c1"), max_queue=1)
    with pytest.raises(QueueFull):
        await store.commands.enqueue(command("c2"), lambda _p: first("c2"), max_queue=1)
    ids = [b["data"].get("command_id") for _, b in await events_of(store, "wh_all")]
    assert "c1" in ids and "c2" not in ids


async def test_a_command_started_at_submission_is_reported_queued_then_started(
    store: Store,
) -> None:
    """One transaction, two occurrences: each webhook that wants them gets both, in order."""
    await setup(store)
    now = datetime.now(UTC)
    start = StartNow(owner="r", now=now, lease_until=now + timedelta(minutes=1), project_limit=1)
    for cid, project in (("c1", "a"), ("c2", "b")):
        got = await store.commands.enqueue(
            command(cid, project), lambda _p, cid=cid: first(cid), max_queue=10, start=start
        )
        assert got.started
    on_all = [(e, b["data"]) for e, b in await events_of(store, "wh_all")]
    assert [(e, d["command_id"]) for e, d in on_all if e.startswith("command.")] == [
        ("command.queued", "c1"), ("command.started", "c1"),
        ("command.queued", "c2"), ("command.started", "c2"),
    ]  # fmt: skip
    started = next(d for e, d in on_all if e == "command.started")
    assert started["started_at"] == now.isoformat()
    on_b = [(e, b["data"]["command_id"]) for e, b in await events_of(store, "wh_b_filter")]
    assert on_b == [("command.queued", "c2"), ("command.started", "c2")]


async def test_start_and_finish_report_duration_exit_code_claude_and_truncation(
    store: Store,
) -> None:
    await setup(store)
    await store.commands.enqueue(
        command("c1", kind=CommandKind.CLAUDE), lambda _p: first("c1"), max_queue=10
    )
    started = datetime.now(UTC)
    (_claimed,) = await store.commands.claim(
        owner="r", lease_until=started + timedelta(minutes=1), now=started, slots=1,
        project_limit=lambda _p: 5,
    )  # fmt: skip
    finish = Finish(
        CommandStatus.SUCCEEDED, started + timedelta(seconds=2.5), exit_code=0,
        claude=ClaudeResult(session_id="s-1", total_cost_usd=0.25, num_turns=3),
        output_bytes=99, truncated=True,
    )  # fmt: skip
    final = [Event("c1", CLAIMED_LAST_SEQ + 1, EventType.STATUS, {"status": "succeeded"})]
    assert await store.commands.finish("c1", finish, final)
    got = {e: b["data"] for e, b in await events_of(store, "wh_a")}
    assert got["command.started"]["started_at"] == started.isoformat()
    done = got["command.completed"]
    assert (done["status"], done["exit_code"], done["duration_seconds"]) == ("succeeded", 0, 2.5)
    assert done["claude"] == {"session_id": "s-1", "cost_usd": 0.25, "num_turns": 3}
    assert got["command.output_truncated"]["output_bytes"] == 99


async def test_key_events_reach_only_webhooks_whose_owner_covers_the_key(store: Store) -> None:
    await setup(store)
    await store.keys.add(key("k_a", Scope.PROJECTS_READ, projects=frozenset({"a"})))
    await store.keys.add(key("k_any", Scope.PROJECTS_READ))
    await store.keys.revoke("k_a", datetime.now(UTC))
    on_all = [(e, b["data"]["key_id"]) for e, b in await events_of(store, "wh_all")]
    on_a = [(e, b["data"]["key_id"]) for e, b in await events_of(store, "wh_a")]
    assert [x for x in on_all if x[1].startswith("k_")] == [
        ("key.created", "k_a"), ("key.created", "k_any"), ("key.revoked", "k_a"),
    ]  # fmt: skip
    # only_a lacks projects:read, so it covers neither key
    assert all(k not in ("k_a", "k_any") for _, k in on_a)


async def test_claims_never_hand_a_delivery_to_two_workers(store: Store) -> None:
    await setup(store)
    for i in range(12):
        await store.webhooks.add_delivery("wh_all", WebhookEvent.PING, json.dumps({"i": i}))
    until = datetime.now(UTC) + timedelta(minutes=1)
    first_, second = await asyncio.gather(
        store.webhooks.claim(owner="r1", lease_until=until, limit=8),
        store.webhooks.claim(owner="r2", lease_until=until, limit=8),
    )
    ids1, ids2 = {c.delivery.id for c in first_}, {c.delivery.id for c in second}
    assert not ids1 & ids2
    assert len(ids1 | ids2) == 12
    assert await store.webhooks.claim(owner="r3", lease_until=until, limit=8) == []


async def test_attempts_are_logged_and_a_long_failing_webhook_is_disabled(store: Store) -> None:
    await setup(store)
    await store.webhooks.add_delivery("wh_all", WebhookEvent.PING, "{}")
    until = datetime.now(UTC) + timedelta(minutes=1)
    (c,) = await store.webhooks.claim(owner="r", lease_until=until, limit=5)
    t0 = datetime.now(UTC)
    failed = Attempt(t0, 500, 12, "HTTP 500", "nope")
    disabled = await store.webhooks.record(
        c, failed, owner="r", succeeded=False, next_at=t0, disable_after=timedelta(hours=1)
    )
    assert not disabled
    (c,) = await store.webhooks.claim(owner="r", lease_until=until, limit=5)
    assert c.attempt == 2
    later = Attempt(t0 + timedelta(hours=2), None, 5, "timeout", "")
    assert await store.webhooks.record(
        c, later, owner="r", succeeded=False, next_at=t0, disable_after=timedelta(hours=1)
    )
    hook_now = await store.webhooks.get("wh_all")
    assert hook_now is not None and not hook_now.enabled
    assert hook_now.disabled_reason == "failing"
    # a disabled webhook's deliveries are not claimed
    assert await store.webhooks.claim(owner="r", lease_until=until, limit=5) == []
    item = await store.webhooks.delivery("wh_all", c.delivery.id)
    assert item is not None
    assert [(x.status_code, x.error, x.response_prefix) for x in item.attempts] == [
        (500, "HTTP 500", "nope"), (None, "timeout", ""),
    ]  # fmt: skip


async def test_a_lost_lease_does_not_record_twice(store: Store) -> None:
    await setup(store)
    await store.webhooks.add_delivery("wh_all", WebhookEvent.PING, "{}")
    past = datetime.now(UTC) - timedelta(seconds=1)
    (c1,) = await store.webhooks.claim(owner="r1", lease_until=past, limit=5)
    (c2,) = await store.webhooks.claim(owner="r2", lease_until=past + timedelta(hours=1), limit=5)
    ok = Attempt(datetime.now(UTC), 200, 3, None, "ok")
    stale = await store.webhooks.record(
        c1, ok, owner="r1", succeeded=True, next_at=None, disable_after=timedelta(days=1)
    )
    assert not stale
    await store.webhooks.record(
        c2, ok, owner="r2", succeeded=True, next_at=None, disable_after=timedelta(days=1)
    )
    item = await store.webhooks.delivery("wh_all", c1.delivery.id)
    assert item is not None and item.status is DeliveryStatus.SUCCEEDED
    assert len(item.attempts) == 1


async def test_deliveries_page_with_a_cursor_and_redeliver_restarts(store: Store) -> None:
    await setup(store)
    made = [
        (await store.webhooks.add_delivery("wh_all", WebhookEvent.PING, "{}")).id for _ in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.webhooks.deliveries("wh_all", cursor=cursor, limit=3)
        seen += [d.id for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 7
    with pytest.raises(InvalidInput):
        await store.webhooks.deliveries("wh_all", cursor="!!", limit=3)
    until = datetime.now(UTC) + timedelta(minutes=1)
    claimed = await store.webhooks.claim(owner="r", lease_until=until, limit=10)
    target = claimed[0]
    await store.webhooks.record(
        target, Attempt(datetime.now(UTC), 410, 1, "HTTP 410", ""), owner="r",
        succeeded=False, next_at=None, disable_after=timedelta(days=1),
    )  # fmt: skip
    gave_up = await store.webhooks.delivery("wh_all", target.delivery.id)
    assert gave_up is not None and gave_up.status is DeliveryStatus.FAILED
    assert await store.webhooks.redeliver("wh_all", target.delivery.id)
    assert not await store.webhooks.redeliver("wh_a", target.delivery.id)  # not its webhook
    (again,) = [
        c
        for c in await store.webhooks.claim(owner="r", lease_until=until, limit=10)
        if c.delivery.id == target.delivery.id
    ]
    assert again.attempt == 1 and again.delivery.payload == target.delivery.payload


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_migration_0007_upgrades_a_database_with_data(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if kind == "sqlite"
        else str(request.getfixturevalue("own_pg_url"))
    )
    with at_revision(url, "0005") as conn:
        conn.execute(
            text("INSERT INTO commands (id, project_id, kind, argv, status, priority, "
                 "priority_rank, created_at, timeout_seconds, env, cancel_requested, "
                 "output_bytes, truncated, lease_owner) VALUES ('cmd_old', 'a', 'shell', "
                 "'[\"true\"]', 'running', 'normal', 1, '2026-11-01 00:00:00+00', 60, '{}', "
                 "false, 0, false, 'r')")
        )  # fmt: skip
    store = build_store(Settings(database_url=url))
    try:
        await store.db.migrate()
        await setup(store)
        final = [Event("cmd_old", 2, EventType.STATUS, {"status": "succeeded"})]
        done = Finish(CommandStatus.SUCCEEDED, datetime.now(UTC), exit_code=0)
        assert await store.commands.finish("cmd_old", done, final)
        got = [b["data"]["command_id"] for _, b in await events_of(store, "wh_a")]
        assert "cmd_old" in got
    finally:
        await store.close()
