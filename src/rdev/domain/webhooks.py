"""Webhooks: subscriptions, deliveries and their attempts, the events they carry, who may see
which event, and the retry schedule.

A webhook belongs to the key that created it (its owner). It receives an event only while the
owner is live (not revoked, not expired) and only what the owner could see itself: command
events of the projects within the owner's grants (and the webhook's own project filter), key
events of the keys the owner's authority covers (domain/authority.py)."""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from rdev.domain.authority import covers
from rdev.domain.models import ApiKey


class WebhookEvent(StrEnum):
    COMMAND_QUEUED = "command.queued"
    COMMAND_STARTED = "command.started"
    COMMAND_COMPLETED = "command.completed"
    COMMAND_OUTPUT_TRUNCATED = "command.output_truncated"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    PING = "webhook.ping"  # only ever sent by POST /webhooks/{id}/test


SUBSCRIBABLE = tuple(e for e in WebhookEvent if e is not WebhookEvent.PING)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    owner_key_id: str
    url: str
    events: frozenset[WebhookEvent]
    projects: frozenset[str]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    failing_since: datetime | None = None
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    response_prefix: str


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # the `webhook-id` header: the same for every attempt of this delivery
    webhook_id: str
    event: WebhookEvent
    payload: str  # the exact body sent, fixed when the delivery is made
    status: DeliveryStatus
    created_at: datetime
    next_attempt_at: datetime | None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed by one replica for one attempt, with what sending it needs."""

    delivery: Delivery
    url: str
    secret: str
    attempt: int  # 1-based number of this attempt within the current schedule


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Something that happened, before it becomes deliveries: `project` for command events,
    `subject` (the key it is about) for key events. `data` is built only if a webhook wants
    it."""

    event: WebhookEvent
    project: str | None = None
    subject: ApiKey | None = None


def wants(webhook: Webhook, owner: ApiKey | None, what: Occurrence, now: datetime) -> bool:
    if not webhook.enabled or what.event not in webhook.events or not live(owner, now):
        return False
    assert owner is not None
    if what.project is not None:
        if webhook.projects and what.project not in webhook.projects:
            return False
        return owner.may_see(what.project)
    return what.subject is not None and covers(owner, what.subject)


def live(key: ApiKey | None, now: datetime) -> bool:
    return (
        key is not None
        and key.revoked_at is None
        and (key.expires_at is None or key.expires_at > now)
    )


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential back-off with jitter: the delay before attempt n+1 is
    `first * factor**(n-1)`, at most `cap`, times a random factor in [1-jitter, 1+jitter].
    The defaults (11 attempts over ~21 hours) span about a day."""

    attempts: int = 12
    first_seconds: float = 10.0
    factor: float = 3.0
    cap_seconds: float = 5 * 3600.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait after failed attempt `attempt` (1-based); None: give up."""
        if attempt >= self.attempts:
            return None
        base = min(self.cap_seconds, self.first_seconds * self.factor ** (attempt - 1))
        return base * (1 - self.jitter + 2 * self.jitter * rand())

    def span(self) -> float:
        """The nominal time from the first attempt to the last (without jitter)."""
        return sum(
            min(self.cap_seconds, self.first_seconds * self.factor ** (n - 1))
            for n in range(1, self.attempts)
        )


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(10)


def new_delivery_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_signing_secret() -> str:
    """`whsec_` and 32 random bytes in base64, as the Standard Webhooks libraries read it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def envelope(event: WebhookEvent, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The body of a delivery, in the Standard Webhooks shape."""
    return {"type": event.value, "timestamp": at.isoformat(), "data": data}
