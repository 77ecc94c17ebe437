"""The delivery worker, one per replica: claims due deliveries, sends each in its own task
(at most `concurrency` at once, so a slow receiver holds one slot and delays nothing else),
records every attempt, schedules the next or gives up, and disables a webhook that has been
failing for longer than `disable_after` (with a `webhook.disabled` audit entry).

It wakes when this replica adds a delivery (the outbox's `flush`) or another replica announces
one on the bus (WEBHOOKS_TOPIC), when the next retry falls due, and every `poll_seconds`
otherwise. Stopping cancels the attempts in flight: their leases run out and any replica
sends them again, with the same `webhook-id`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from rdev.adapters.sql.webhooks import SqlWebhookStore
from rdev.adapters.webhooks.sender import Sender
from rdev.domain.webhooks import Claimed, RetrySchedule
from rdev.ports import Bus
from rdev.services.audit import Actor, AuditService

log = structlog.get_logger(__name__)

WEBHOOKS_TOPIC = "webhooks"
LEASE_MARGIN_SECONDS = 30.0


class DeliveryWorker:
    def __init__(
        self,
        store: SqlWebhookStore,
        sender: Sender,
        *,
        bus: Bus,
        audit: AuditService,
        replica: str,
        schedule: RetrySchedule,
        concurrency: int,
        timeout_seconds: float,
        disable_after: timedelta,
        poll_seconds: float,
        clock: Callable[[], datetime],
        on_outcome: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        self._on_outcome = on_outcome  # rdev_webhook_deliveries_total
        self._store = store
        self._sender = sender
        self._bus = bus
        self._audit = audit
        self._replica = replica
        self._schedule = schedule
        self._concurrency = concurrency
        self._lease = timedelta(seconds=timeout_seconds + LEASE_MARGIN_SECONDS)
        self._disable_after = disable_after
        self._poll = poll_seconds
        self._clock = clock
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        bus.subscribe(WEBHOOKS_TOPIC, lambda _payload: self._wake.set())
        store.outbox.wake = self._added

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-deliveries")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight))
        await self._sender.close()

    def _added(self) -> None:
        self._wake.set()
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        with contextlib.suppress(Exception):
            await self._bus.publish(WEBHOOKS_TOPIC, self._replica)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self._poll
            try:
                await self._claim_once()
                wait = await self._until_next_due()
            except Exception as e:  # a database blip must not end the loop
                log.warning("webhooks.claim_failed", error=type(e).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _claim_once(self) -> None:
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return
        claimed = await self._store.claim(
            owner=self._replica, lease_until=self._clock() + self._lease, limit=free
        )
        for item in claimed:
            task = asyncio.create_task(self._deliver(item), name=f"webhook-{item.delivery.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def _until_next_due(self) -> float:
        if len(self._inflight) >= self._concurrency:
            return self._poll
        due = await self._store.next_due()
        if due is None:
            return self._poll
        return min(self._poll, max(0.0, (due - self._clock()).total_seconds()))

    async def _deliver(self, claimed: Claimed) -> None:
        attempt, succeeded = await self._sender.send(claimed)
        delay = None if succeeded else self._schedule.delay(claimed.attempt)
        # counted from the end of the failed attempt: a slow failure does not eat the wait
        next_at = self._clock() + timedelta(seconds=delay) if delay is not None else None
        try:
            disabled = await self._store.record(
                claimed,
                attempt,
                owner=self._replica,
                succeeded=succeeded,
                next_at=next_at,
                disable_after=self._disable_after,
            )
        except Exception as e:  # the lease runs out; the attempt is made again
            log.warning("webhooks.record_failed", error=type(e).__name__)
            return
        self._on_outcome(
            "delivered" if succeeded else "retried" if next_at is not None else "failed"
        )
        if disabled:
            await self._audit.record(
                "webhook.disabled",
                actor=Actor(request_id="webhooks"),
                target=claimed.delivery.webhook_id,
                reason="failing",
                failing_for_seconds=self._disable_after.total_seconds(),
            )
