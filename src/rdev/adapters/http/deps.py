"""Dependencies for routes: the services, the caller's key (authenticated, throttled, scoped),
and the audit actor. `Annotated` aliases keep route signatures short.

Hot authenticated reads skip FastAPI's per-request routing and dependency solving, which cost
more than everything else such a request does: they are served by lean routes (`lean.py`)
whose openers authenticate with the same `caller_for` (`authorized`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase
from starlette.responses import Response

from rdev.adapters.http.jsonresponse import JSONResponse
from rdev.adapters.http.ratelimit import KeyRateLimited
from rdev.adapters.http.schemas import ERROR_CONTENT
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import RateLimited
from rdev.domain.models import ApiKey, Scope
from rdev.services.audit import Actor
from rdev.services.keys import AuthFailure

_BEARER = "bearer "


async def services(request: Request) -> HttpServices:  # async: no worker-thread hop
    svc: HttpServices = request.app.state.services
    return svc


Services = Annotated[HttpServices, Depends(services)]


def actor_of(request: Request, key: ApiKey | None = None) -> Actor:
    return Actor(
        key_id=key.id if key else None,
        client_ip=request.state.client_ip,
        request_id=request.state.request_id,
    )


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[: len(_BEARER)].lower() == _BEARER:
        return auth[len(_BEARER) :].strip()
    return request.headers.get("x-api-key")


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey
    actor: Actor


Verify = Callable[[], Awaitable[ApiKey]]


async def _authenticate(request: Request, svc: HttpServices, verify: Verify | None) -> ApiKey:
    """The request's key (or, with `verify`, the key behind another credential: a stream
    token). Failures are counted (see `ratelimit`): over the budget of the client IP or of the
    key id, a failure is 429 and is not audited again; a valid key is never refused for others'
    failures, so nothing here runs before `authenticate`."""
    try:
        if verify is not None:
            return await verify()
        return await svc.keys.authenticate(presented_key(request))
    except AuthFailure as failure:
        real_id = failure.key_id if failure.reason == "wrong_secret" else None
        ip = request.state.client_ip or "unknown"
        wait = await svc.limits.auth_failed(ip, real_key_id=real_id)
        svc.metrics.auth_failed(failure.reason if wait is None else "rate_limited")
        if wait is not None:
            raise RateLimited("too many failed authentication attempts", retry_after=wait) from None
        await svc.keys.record_failure(failure, actor=actor_of(request))
        raise


async def caller_for(
    request: Request, svc: HttpServices, scope: Scope, verify: Verify | None = None
) -> Caller:
    """Authenticate, throttle and authorize a request for `scope`."""
    key = await _authenticate(request, svc, verify)
    request.state.key_id = key.id  # for the audit of a refusal (errors.py)
    structlog.contextvars.bind_contextvars(key_id=key.id)  # this request's task only
    svc.keys.authorize(key, scope, client_ip=request.state.client_ip)
    try:
        quota = await svc.limits.check_key(key.id, key.rate_limit_rps)
    except KeyRateLimited as over:
        request.state.ratelimit = over.quota.headers()  # the 429 announces the policy too
        raise
    request.state.ratelimit = quota.headers()  # added to the response by EdgeMiddleware
    return Caller(key=key, actor=actor_of(request, key))


class KeyAuth(SecurityBase):
    """The dependency that authenticates, throttles and authorizes a route for `scope`. Being
    a FastAPI security scheme, it also documents in OpenAPI how a key is presented."""

    scheme_name = "ApiKey"
    model = APIKey(
        **{"in": APIKeyIn.header},
        name="X-API-Key",
        description=(
            "An rdev API key (`rdev_sk_…`), sent as `X-API-Key: <key>` or "
            "`Authorization: Bearer <key>`."
        ),
    )

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, request: Request, svc: Services) -> Caller:
        return await caller_for(request, svc, self.scope)


# The errors any route behind `KeyAuth` may answer, for OpenAPI (`app.include_router`).
KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key.", "content": ERROR_CONTENT},
    403: {
        "description": "The key lacks the scope, or the client IP is not allowed for the key.",
        "content": ERROR_CONTENT,
    },
    429: {
        "description": (
            "Too many requests (or open event streams, TOO_MANY_STREAMS) for this key, or too "
            "many failed authentications from this IP or for this key id."
        ),
        "content": ERROR_CONTENT,
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
            "RateLimit-Policy": {
                "description": (
                    'The key\'s budget, e.g. `"key";q=20;w=2` (q requests in any w seconds; '
                    "draft-ietf-httpapi-ratelimit-headers). On every authenticated response."
                ),
                "schema": {"type": "string"},
            },
            "RateLimit": {
                "description": (
                    'What is left of it, e.g. `"key";r=0;t=1` (r requests; t seconds until the '
                    "window frees one). On every authenticated response."
                ),
                "schema": {"type": "string"},
            },
        },
    },
    503: {
        "description": (
            "This replica is at a capacity limit (OVERLOADED) or shutting down, or the backend "
            "is unavailable: retry after a while."
        ),
        "content": ERROR_CONTENT,
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
}

ProjectsRead = Annotated[Caller, Depends(KeyAuth(Scope.PROJECTS_READ))]
KeysAdmin = Annotated[Caller, Depends(KeyAuth(Scope.KEYS_ADMIN))]
AuditRead = Annotated[Caller, Depends(KeyAuth(Scope.AUDIT_READ))]
CommandsRead = Annotated[Caller, Depends(KeyAuth(Scope.COMMANDS_READ))]
CommandsCancel = Annotated[Caller, Depends(KeyAuth(Scope.COMMANDS_CANCEL))]
ClaudeRun = Annotated[Caller, Depends(KeyAuth(Scope.COMMANDS_CLAUDE))]
ShellRun = Annotated[Caller, Depends(KeyAuth(Scope.COMMANDS_SHELL))]
GitRun = Annotated[Caller, Depends(KeyAuth(Scope.COMMANDS_GIT))]
ConfigRead = Annotated[Caller, Depends(KeyAuth(Scope.CONFIG_READ))]
ConfigWrite = Annotated[Caller, Depends(KeyAuth(Scope.CONFIG_WRITE))]
WebhooksManage = Annotated[Caller, Depends(KeyAuth(Scope.WEBHOOKS_MANAGE))]


LeanHandler = Callable[[Request, Caller, HttpServices], Awaitable[Response]]


def ok(
    data: object,
    request: Request,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **meta: object,
) -> JSONResponse:
    """The success envelope as a finished response (FastAPI then skips validating and
    re-encoding what is already plain JSON)."""
    body = {"data": data, "meta": {"request_id": request.state.request_id, **meta}}
    return JSONResponse(body, status_code=status, headers=headers)
