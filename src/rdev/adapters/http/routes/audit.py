"""The audit log, newest first, filterable and paginated with a cursor, within the reader's
grants (see services/audit.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import AuditRead, Services, ok
from rdev.adapters.http.responses import AuditPage
from rdev.adapters.http.schemas import audit_view
from rdev.ports import AuditFilter

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
async def list_audit(
    request: Request,
    caller: AuditRead,
    svc: Services,
    action: Annotated[
        str | None,
        Query(max_length=64, description="Only this action", examples=["command.submit"]),
    ] = None,
    key_id: Annotated[
        str | None, Query(max_length=32, description="Only what this key did")
    ] = None,
    since: Annotated[
        AwareDatetime | None,
        Query(description="Only entries at or after this time (ISO 8601, with offset)"),
    ] = None,
    until: Annotated[
        AwareDatetime | None,
        Query(description="Only entries before this time (ISO 8601, with offset)"),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`meta.next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Entries per page")] = 50,
) -> JSONResponse:
    page = await svc.audit.list(
        AuditFilter(
            action=action, key_id=key_id, since=since, until=until, cursor=cursor, limit=limit
        ),
        by=caller.key,
    )
    return ok([audit_view(e) for e in page.items], request, next_cursor=page.next_cursor)
