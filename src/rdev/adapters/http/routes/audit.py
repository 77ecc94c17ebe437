"""The audit log, newest first, filterable and paginated with a cursor, within the reader's
grants (see services/audit.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import AuditRead, Services, ok
from rdev.adapters.http.schemas import audit_view
from rdev.ports import AuditFilter

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
async def list_audit(
    request: Request,
    caller: AuditRead,
    svc: Services,
    action: Annotated[str | None, Query(max_length=64)] = None,
    key_id: Annotated[str | None, Query(max_length=32)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    page = await svc.audit.list(
        AuditFilter(
            action=action, key_id=key_id, since=since, until=until, cursor=cursor, limit=limit
        ),
        by=caller.key,
    )
    return ok([audit_view(e) for e in page.items], request, next_cursor=page.next_cursor)
