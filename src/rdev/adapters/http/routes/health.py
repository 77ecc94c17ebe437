"""Liveness and readiness; no authentication."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import Services, ok
from rdev.adapters.http.errors import envelope
from rdev.adapters.http.responses import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> JSONResponse:
    return ok({"status": "ok"}, request)


@router.get("/ready", response_model=ReadyResponse)
async def ready(request: Request, svc: Services) -> JSONResponse:
    results = await svc.readiness.run()
    checks = {r.name: {"ok": r.ok, **({"error": r.error} if r.error else {})} for r in results}
    # the Claude CLI is reported, never a reason to be unready: shell and git still work, and a
    # claude submission without it is refused with 503 CLAUDE_UNAVAILABLE on its own
    claude = {"claude": await svc.claude_cli.report()} if svc.claude_cli is not None else {}
    if all(r.ok for r in results):
        return ok({"status": "ready", "checks": checks, **claude}, request)
    details = {"checks": checks, **claude}
    body = envelope("NOT_READY", "service not ready", request.state.request_id, details)
    return JSONResponse(body, status_code=503)
