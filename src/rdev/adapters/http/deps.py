"""Dependencies for routes: the services, the caller's key (authenticated, throttled, scoped),
and the audit actor. `Annotated` aliases keep route signatures short."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import JSONResponse

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


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[: len(_BEARER)].lower() == _BEARER:
        return auth[len(_BEARER) :].strip()
    return request.headers.get("x-api-key")


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey
    actor: Actor


async def _authenticate(request: Request, svc: HttpServices) -> ApiKey:
    ip = request.state.client_ip or "unknown"
    wait = await svc.limits.auth_blocked(ip)
    if wait is not None:
        raise RateLimited("too many failed authentication attempts", retry_after=wait)
    try:
        return await svc.keys.authenticate(_presented_key(request))
    except AuthFailure as failure:
        await svc.limits.auth_failed(ip)
        await svc.keys.record_failure(failure, actor=actor_of(request))
        raise


async def caller_for(request: Request, svc: HttpServices, scope: Scope) -> Caller:
    """Authenticate, throttle and authorize a request for `scope`."""
    key = await _authenticate(request, svc)
    svc.keys.authorize(key, scope, client_ip=request.state.client_ip)
    await svc.limits.check_key(key.id)
    return Caller(key=key, actor=actor_of(request, key))


def require(scope: Scope) -> Callable[[Request, HttpServices], Awaitable[Caller]]:
    async def dependency(request: Request, svc: Services) -> Caller:
        return await caller_for(request, svc, scope)

    return dependency


ProjectsRead = Annotated[Caller, Depends(require(Scope.PROJECTS_READ))]
KeysAdmin = Annotated[Caller, Depends(require(Scope.KEYS_ADMIN))]
AuditRead = Annotated[Caller, Depends(require(Scope.AUDIT_READ))]
CommandsRead = Annotated[Caller, Depends(require(Scope.COMMANDS_READ))]
CommandsCancel = Annotated[Caller, Depends(require(Scope.COMMANDS_CANCEL))]
ClaudeRun = Annotated[Caller, Depends(require(Scope.COMMANDS_CLAUDE))]
ShellRun = Annotated[Caller, Depends(require(Scope.COMMANDS_SHELL))]
GitRun = Annotated[Caller, Depends(require(Scope.COMMANDS_GIT))]
ConfigRead = Annotated[Caller, Depends(require(Scope.CONFIG_READ))]
ConfigWrite = Annotated[Caller, Depends(require(Scope.CONFIG_WRITE))]


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
