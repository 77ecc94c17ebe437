"""API key administration (scope keys:admin), within the caller's own authority (see
services/keys.py). The secret appears only in create and rotate."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import KeysAdmin, Services, ok
from rdev.adapters.http.documented import KeyId
from rdev.adapters.http.responses import IssuedKeyResponse, KeyList, KeyResponse
from rdev.adapters.http.schemas import KeyCreate, issued_view, key_view
from rdev.services.keys import NewKey

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=201, response_model=IssuedKeyResponse)
async def create_key(
    body: KeyCreate, request: Request, caller: KeysAdmin, svc: Services
) -> JSONResponse:
    issued = await svc.keys.issue(
        NewKey(
            name=body.name,
            scopes=body.scopes,
            projects=body.projects,
            allowed_ips=body.allowed_ips,
            expires_at=body.expires_at,
            daily_budget_usd=body.daily_budget_usd,
            rate_limit_rps=body.rate_limit_rps,
        ),
        actor=caller.actor,
        by=caller.key,
    )
    return ok(issued_view(issued), request, status=201)


@router.get("", response_model=KeyList)
async def list_keys(request: Request, caller: KeysAdmin, svc: Services) -> JSONResponse:
    return ok([key_view(k) for k in await svc.keys.list(by=caller.key)], request)


@router.get("/{key_id}", response_model=KeyResponse)
async def get_key(
    key_id: KeyId, request: Request, caller: KeysAdmin, svc: Services
) -> JSONResponse:
    return ok(key_view(await svc.keys.get(key_id, by=caller.key)), request)


@router.delete("/{key_id}", response_model=KeyResponse)
async def revoke_key(
    key_id: KeyId, request: Request, caller: KeysAdmin, svc: Services
) -> JSONResponse:
    return ok(key_view(await svc.keys.revoke(key_id, actor=caller.actor, by=caller.key)), request)


@router.post("/{key_id}/rotate", response_model=IssuedKeyResponse)
async def rotate_key(
    key_id: KeyId, request: Request, caller: KeysAdmin, svc: Services
) -> JSONResponse:
    return ok(
        issued_view(await svc.keys.rotate(key_id, actor=caller.actor, by=caller.key)), request
    )
