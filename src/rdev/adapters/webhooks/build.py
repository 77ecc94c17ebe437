"""Webhooks wired from settings: the SSRF-checked URL test, the pinned transport, the sender,
the worker and the service. `resolver` and `transport` are for tests (a lying DNS, a fake
receiver)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from rdev.adapters.sql.store import Store
from rdev.adapters.webhooks.sender import Sender
from rdev.adapters.webhooks.transport import PinnedTransport, Resolver, resolve_checked
from rdev.adapters.webhooks.transport import system_resolver as _system
from rdev.adapters.webhooks.worker import DeliveryWorker
from rdev.config import Settings
from rdev.domain.ssrf import check_url, parse_cidrs
from rdev.domain.webhooks import RetrySchedule
from rdev.ports import Bus
from rdev.services.audit import AuditService
from rdev.services.webhooks import UrlCheck, WebhookService


def url_checker(settings: Settings, resolver: Resolver = _system) -> UrlCheck:
    allowed = parse_cidrs(settings.webhook_allowed_cidrs)

    async def check(url: str) -> None:
        target = check_url(url, allow_http=settings.webhook_allow_http)
        await resolve_checked(target.host, target.port, resolver=resolver, allowed=allowed)

    return check


def schedule_of(settings: Settings) -> RetrySchedule:
    return RetrySchedule(
        attempts=settings.webhook_max_attempts,
        first_seconds=settings.webhook_retry_first_seconds,
        factor=settings.webhook_retry_factor,
        cap_seconds=settings.webhook_retry_max_seconds,
        jitter=settings.webhook_retry_jitter,
    )


def build_webhooks(
    settings: Settings,
    store: Store,
    bus: Bus,
    audit: AuditService,
    *,
    clock: Callable[[], datetime],
    resolver: Resolver = _system,
    transport: httpx.AsyncBaseTransport | None = None,
    on_outcome: Callable[[str], None] = lambda _outcome: None,
) -> tuple[WebhookService, DeliveryWorker]:
    allowed = parse_cidrs(settings.webhook_allowed_cidrs)
    pinned = PinnedTransport(allowed=allowed, resolver=resolver, inner=transport)
    sender = Sender(pinned, timeout_seconds=settings.webhook_timeout_seconds, clock=clock)
    worker = DeliveryWorker(
        store.webhooks,
        sender,
        bus=bus,
        audit=audit,
        replica=settings.replica,
        schedule=schedule_of(settings),
        concurrency=settings.webhook_concurrency,
        timeout_seconds=settings.webhook_timeout_seconds,
        disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
        poll_seconds=settings.webhook_poll_seconds,
        clock=clock,
        on_outcome=on_outcome,
    )
    service = WebhookService(
        store.webhooks,
        store.keys,
        audit,
        check_url=url_checker(settings, resolver),
        clock=clock,
    )
    return service, worker
