"""Webhook administration (scope `webhooks:manage`).

A webhook belongs to the key that created it. A key sees and manages its own webhooks and
those of the keys its authority covers (domain/authority.py; so `admin` sees all); any other
webhook is answered 404, as if it did not exist. A project filter must lie within the
creating key's grants (403 otherwise), and events reach a webhook only within its owner's
grants (domain/webhooks.py:wants). The signing secret is returned only by create and
rotate-secret."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from rdev.domain.authority import covers
from rdev.domain.errors import Forbidden, InvalidInput, NotFound
from rdev.domain.models import ApiKey, Page, Scope
from rdev.domain.webhooks import (
    SUBSCRIBABLE,
    Delivery,
    Webhook,
    WebhookEvent,
    envelope,
    new_signing_secret,
    new_webhook_id,
)
from rdev.ports import KeyStore, WebhookStore
from rdev.services.audit import Actor, AuditService

UrlCheck = Callable[[str], Awaitable[None]]  # raises WebhookUrlRefused


@dataclass(frozen=True, slots=True)
class NewWebhook:
    url: str
    events: frozenset[WebhookEvent]
    projects: frozenset[str] = frozenset()
    description: str = ""


@dataclass(frozen=True, slots=True)
class WebhookChange:
    url: str | None = None
    events: frozenset[WebhookEvent] | None = None
    projects: frozenset[str] | None = None
    description: str | None = None
    enabled: bool | None = None


class WebhookService:
    def __init__(
        self,
        store: WebhookStore,
        keys: KeyStore,
        audit: AuditService,
        *,
        check_url: UrlCheck,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keys = keys
        self._audit = audit
        self._check_url = check_url
        self._clock = clock

    async def create(self, new: NewWebhook, *, by: ApiKey, actor: Actor) -> tuple[Webhook, str]:
        _check_events(new.events)
        _check_projects(by, new.projects)
        await self._check_url(new.url)
        now = self._clock()
        hook = Webhook(
            id=new_webhook_id(),
            owner_key_id=by.id,
            url=new.url,
            events=new.events,
            projects=new.projects,
            description=new.description,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        secret = new_signing_secret()
        await self._store.add(hook, secret)
        await self._audit.record(
            "webhook.create", actor=actor, target=hook.id, events=sorted(hook.events)
        )
        return hook, secret

    async def list(self, *, by: ApiKey) -> list[Webhook]:
        hooks = await self._store.all()
        owners = {h.owner_key_id for h in hooks}
        visible = {o for o in owners if await self._may_manage(by, o)}
        return [h for h in hooks if h.owner_key_id in visible]

    async def get(self, webhook_id: str, *, by: ApiKey) -> Webhook:
        hook = await self._store.get(webhook_id)
        if hook is None or not await self._may_manage(by, hook.owner_key_id):
            raise NotFound(f"webhook {webhook_id} not found")
        return hook

    async def update(
        self, webhook_id: str, change: WebhookChange, *, by: ApiKey, actor: Actor
    ) -> Webhook:
        hook = await self.get(webhook_id, by=by)
        if change.events is not None:
            _check_events(change.events)
        if change.projects is not None:
            owner = await self._keys.get(hook.owner_key_id)
            _check_projects(by, change.projects)
            if owner is not None:
                _check_projects(owner, change.projects)
        if change.url is not None:
            await self._check_url(change.url)
        updated = _changed(hook, change, self._clock())
        await self._store.update(updated)
        await self._audit.record("webhook.update", actor=actor, target=hook.id)
        return updated

    async def delete(self, webhook_id: str, *, by: ApiKey, actor: Actor) -> None:
        hook = await self.get(webhook_id, by=by)
        await self._store.delete(hook.id)
        await self._audit.record("webhook.delete", actor=actor, target=hook.id)

    async def rotate_secret(self, webhook_id: str, *, by: ApiKey, actor: Actor) -> str:
        hook = await self.get(webhook_id, by=by)
        secret = new_signing_secret()
        await self._store.set_secret(hook.id, secret)
        await self._audit.record("webhook.rotate_secret", actor=actor, target=hook.id)
        return secret

    async def ping(self, webhook_id: str, *, by: ApiKey) -> Delivery:
        hook = await self.get(webhook_id, by=by)
        body = envelope(WebhookEvent.PING, self._clock(), {"webhook_id": hook.id})
        payload = json.dumps(body, separators=(",", ":"))
        return await self._store.add_delivery(hook.id, WebhookEvent.PING, payload)

    async def deliveries(
        self, webhook_id: str, *, by: ApiKey, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        hook = await self.get(webhook_id, by=by)
        return await self._store.deliveries(hook.id, cursor=cursor, limit=limit)

    async def redeliver(self, webhook_id: str, delivery_id: str, *, by: ApiKey) -> Delivery:
        hook = await self.get(webhook_id, by=by)
        if not await self._store.redeliver(hook.id, delivery_id):
            raise NotFound(f"delivery {delivery_id} not found")
        delivery = await self._store.delivery(hook.id, delivery_id)
        assert delivery is not None
        return delivery

    async def _may_manage(self, by: ApiKey, owner_id: str) -> bool:
        if owner_id == by.id:
            return True
        owner = await self._keys.get(owner_id)
        return covers(by, owner) if owner is not None else by.has_scope(Scope.ADMIN)


def _check_events(events: Iterable[WebhookEvent]) -> None:
    events = set(events)
    if not events:
        raise InvalidInput("events must name at least one event", details={"field": "events"})
    bad = sorted(e.value for e in events if e not in SUBSCRIBABLE)
    if bad:
        raise InvalidInput(
            f"{bad[0]} cannot be subscribed to", details={"field": "events", "event": bad[0]}
        )


def _check_projects(key: ApiKey, projects: Iterable[str]) -> None:
    for project in sorted(projects):
        if not key.may_see(project):
            raise Forbidden(
                f"this key cannot subscribe to the project {project}",
                details={"reason": "project", "project": project},
            )


def _changed(hook: Webhook, change: WebhookChange, now: datetime) -> Webhook:
    updated = replace(
        hook,
        url=change.url if change.url is not None else hook.url,
        events=change.events if change.events is not None else hook.events,
        projects=change.projects if change.projects is not None else hook.projects,
        description=change.description if change.description is not None else hook.description,
        updated_at=now,
    )
    if change.enabled is True and not hook.enabled:
        updated = replace(updated, enabled=True, failing_since=None, disabled_reason=None)
    elif change.enabled is False:
        updated = replace(updated, enabled=False, disabled_reason="by_request")
    return updated
