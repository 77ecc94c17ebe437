"""The delivery worker against the SQL store: while an attempt is in flight (or a disabled
webhook's delivery waits) it sleeps until something changes, instead of finding the held
delivery "due" again and again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from rdev.adapters.bus.memory import InProcessBus
from rdev.adapters.sql.store import Store
from rdev.adapters.webhooks.worker import DeliveryWorker
from rdev.domain.models import ApiKey, Scope
from rdev.domain.webhooks import Attempt, Claimed, RetrySchedule, Webhook, WebhookEvent
from rdev.services.audit import AuditService

NOW = datetime.now(UTC)


class HeldSender:
    """Holds every attempt until released; counts them."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def send(self, claimed: Claimed) -> tuple[Attempt, bool]:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return Attempt(datetime.now(UTC), 200, 1, None, "ok"), True

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_worker_does_not_spin_while_an_attempt_is_in_flight(store: Store) -> None:
    owner = ApiKey(
        id="admin", name="a", secret_hash="0" * 64, scopes=frozenset({Scope.ADMIN}),
        created_at=NOW,
    )  # fmt: skip
    await store.keys.add(owner)
    hook = Webhook(
        id="wh_1", owner_key_id="admin", url="https://example.com/h",
        events=frozenset({WebhookEvent.COMMAND_COMPLETED}), projects=frozenset(),
        description="", enabled=True, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    await store.webhooks.add(hook, "whsec_x")
    sender = HeldSender()
    worker = DeliveryWorker(
        store.webhooks, sender,  # type: ignore[arg-type]
        bus=InProcessBus(), audit=AuditService(store.audit_log, clock=lambda: datetime.now(UTC)),
        replica="r", schedule=RetrySchedule(), concurrency=4, timeout_seconds=10,
        disable_after=timedelta(days=1), poll_seconds=5, clock=lambda: datetime.now(UTC),
    )  # fmt: skip
    looked = 0
    next_due = store.webhooks.next_due

    async def counted() -> datetime | None:
        nonlocal looked
        looked += 1
        return await next_due()

    store.webhooks.next_due = counted  # type: ignore[method-assign]
    await worker.start()
    try:
        await store.webhooks.add_delivery("wh_1", WebhookEvent.PING, "{}")
        await asyncio.wait_for(sender.started.wait(), 5)
        before = looked
        await asyncio.sleep(0.5)  # a measuring window, not a wait for a condition
        assert looked - before <= 2, f"{looked - before} looks in 0.5 s while one attempt held"
        sender.release.set()
    finally:
        await worker.stop()
    assert sender.calls == 1
