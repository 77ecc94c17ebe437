"""Webhooks (scope webhooks:manage): subscriptions, a test ping, secret rotation, the delivery
log and redelivery (see services/webhooks.py). The signing secret appears only in create and
rotate-secret."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import Services, WebhooksManage, ok
from rdev.adapters.http.documented import DeliveryId, WebhookId
from rdev.adapters.http.responses import (
    CreatedWebhookResponse,
    DeletedWebhookResponse,
    DeliveryPage,
    DeliveryResponse,
    WebhookList,
    WebhookResponse,
    WebhookSecretResponse,
)
from rdev.adapters.http.schemas import Strict, Text
from rdev.domain.webhooks import SUBSCRIBABLE, Delivery, Webhook, WebhookEvent
from rdev.services.webhooks import NewWebhook, WebhookChange

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

Url = Annotated[Text, Field(min_length=1, max_length=2000)]
Events = Annotated[list[WebhookEvent], Field(min_length=1, max_length=len(SUBSCRIBABLE))]
Projects = Annotated[list[Annotated[Text, Field(max_length=200)]], Field(max_length=500)]
Description = Annotated[Text, Field(max_length=500)]
_URL = (
    "Where deliveries are POSTed: https (http only if the server allows it), never a private, "
    "loopback or link-local address unless the server allows it (docs/webhooks.md)"
)
_EVENTS = "The events to receive (not `webhook.ping`, which only the test route sends)"
_PROJECTS = "Only command events of these projects (within the key's own); empty: all"
_HOOK = "https://hooks.example.com/rdev"


class WebhookCreate(BaseModel):
    model_config = Strict
    url: Url = Field(description=_URL, examples=[_HOOK])
    events: Events = Field(description=_EVENTS, examples=[["command.completed"]])
    projects: Projects = Field(default_factory=list, description=_PROJECTS, examples=[["demo"]])
    description: Description = Field(
        default="", description="What it is for, for people", examples=["CI notifications"]
    )


class WebhookPatch(BaseModel):
    """The fields to change; an absent or null field is left as it is."""

    model_config = Strict
    url: Url | None = Field(default=None, description=_URL, examples=[_HOOK])
    events: Events | None = Field(default=None, description=_EVENTS)
    projects: Projects | None = Field(default=None, description=_PROJECTS)
    description: Description | None = Field(default=None, description="What it is for")
    enabled: bool | None = Field(
        default=None,
        description="Send deliveries or not; enabling a disabled webhook clears `failing_since`",
    )


def _ts(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def webhook_view(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": sorted(hook.events),
        "projects": sorted(hook.projects),
        "description": hook.description,
        "enabled": hook.enabled,
        "disabled_reason": hook.disabled_reason,
        "failing_since": _ts(hook.failing_since),
        "owner_key_id": hook.owner_key_id,
        "created_at": _ts(hook.created_at),
        "updated_at": _ts(hook.updated_at),
    }


def delivery_view(item: Delivery) -> dict[str, Any]:
    return {
        "id": item.id,
        "event": item.event.value,
        "status": item.status.value,
        "created_at": _ts(item.created_at),
        "next_attempt_at": _ts(item.next_attempt_at),
        "attempts": [
            {
                "at": _ts(x.at),
                "status_code": x.status_code,
                "latency_ms": x.latency_ms,
                "error": x.error,
                "response_body_prefix": x.response_prefix,
            }
            for x in item.attempts
        ],
    }


@router.post("", status_code=201, response_model=CreatedWebhookResponse)
async def create_webhook(
    body: WebhookCreate, request: Request, caller: WebhooksManage, svc: Services
) -> JSONResponse:
    hook, secret = await svc.webhooks.create(
        NewWebhook(
            url=body.url,
            events=frozenset(body.events),
            projects=frozenset(body.projects),
            description=body.description,
        ),
        by=caller.key,
        actor=caller.actor,
    )
    return ok(webhook_view(hook) | {"secret": secret}, request, status=201)


@router.get("", response_model=WebhookList)
async def list_webhooks(request: Request, caller: WebhooksManage, svc: Services) -> JSONResponse:
    return ok([webhook_view(h) for h in await svc.webhooks.list(by=caller.key)], request)


@router.get("/{webhook_id}", response_model=WebhookResponse)
async def get_webhook(
    webhook_id: WebhookId, request: Request, caller: WebhooksManage, svc: Services
) -> JSONResponse:
    return ok(webhook_view(await svc.webhooks.get(webhook_id, by=caller.key)), request)


@router.patch("/{webhook_id}", response_model=WebhookResponse)
async def update_webhook(
    webhook_id: WebhookId,
    body: WebhookPatch,
    request: Request,
    caller: WebhooksManage,
    svc: Services,
) -> JSONResponse:
    change = WebhookChange(
        url=body.url,
        events=frozenset(body.events) if body.events is not None else None,
        projects=frozenset(body.projects) if body.projects is not None else None,
        description=body.description,
        enabled=body.enabled,
    )
    hook = await svc.webhooks.update(webhook_id, change, by=caller.key, actor=caller.actor)
    return ok(webhook_view(hook), request)


@router.delete("/{webhook_id}", response_model=DeletedWebhookResponse)
async def delete_webhook(
    webhook_id: WebhookId, request: Request, caller: WebhooksManage, svc: Services
) -> JSONResponse:
    await svc.webhooks.delete(webhook_id, by=caller.key, actor=caller.actor)
    return ok({"id": webhook_id, "deleted": True}, request)


@router.post("/{webhook_id}/test", status_code=202, response_model=DeliveryResponse)
async def test_webhook(
    webhook_id: WebhookId, request: Request, caller: WebhooksManage, svc: Services
) -> JSONResponse:
    delivery = await svc.webhooks.ping(webhook_id, by=caller.key)
    return ok(delivery_view(delivery), request, status=202)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookSecretResponse)
async def rotate_secret(
    webhook_id: WebhookId, request: Request, caller: WebhooksManage, svc: Services
) -> JSONResponse:
    secret = await svc.webhooks.rotate_secret(webhook_id, by=caller.key, actor=caller.actor)
    return ok({"id": webhook_id, "secret": secret}, request)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    webhook_id: WebhookId,
    request: Request,
    caller: WebhooksManage,
    svc: Services,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`meta.next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Deliveries per page")] = 50,
) -> JSONResponse:
    page = await svc.webhooks.deliveries(webhook_id, by=caller.key, cursor=cursor, limit=limit)
    return ok([delivery_view(x) for x in page.items], request, next_cursor=page.next_cursor)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryResponse,
)
async def redeliver(
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    request: Request,
    caller: WebhooksManage,
    svc: Services,
) -> JSONResponse:
    delivery = await svc.webhooks.redeliver(webhook_id, delivery_id, by=caller.key)
    return ok(delivery_view(delivery), request, status=202)
