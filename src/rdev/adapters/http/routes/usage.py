"""Claude usage reports: cost and tokens per UTC day and model, of a project or of a key
(services/usage.py decides who may read which). Scope `commands:read`."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import CommandsRead, Services, ok
from rdev.adapters.http.documented import KeyId, ProjectId
from rdev.adapters.http.responses import KeyUsageResponse, ProjectUsageResponse
from rdev.services.usage import Report

router = APIRouter(tags=["usage"])
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: object) -> object:
    """A day as YYYY-MM-DD only: pydantic would also take a number, as a Unix time."""
    if isinstance(value, str) and not _DAY.fullmatch(value):
        raise ValueError("a day is YYYY-MM-DD")
    return value


Day = Annotated[date | None, BeforeValidator(_iso_day)]
From = Annotated[Day, Query(alias="from", description="first UTC day (default: to - 29)")]
To = Annotated[Day, Query(alias="to", description="last UTC day (default: today)")]
_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")


def _view(report: Report, **subject: str) -> dict[str, Any]:
    days: list[dict[str, Any]] = [
        {
            "day": r.day.isoformat(),
            "model": r.model,
            "cost_usd": r.cost_usd,
            "input_tokens": r.tokens.input,
            "output_tokens": r.tokens.output,
            "cache_read_tokens": r.tokens.cache_read,
            "cache_creation_tokens": r.tokens.cache_creation,
            "commands": r.commands,
        }
        for r in report.rows
    ]
    total: dict[str, float] = {"cost_usd": sum(r.cost_usd for r in report.rows)}
    total |= {name: sum(d[name] for d in days) for name in _FIELDS}
    return {
        **subject,
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        "total": total,
        "days": days,
    }


@router.get(
    "/projects/{project_id}/usage",
    operation_id="project_usage",
    response_model=ProjectUsageResponse,
)
async def project_usage(
    project_id: ProjectId, request: Request, caller: CommandsRead, svc: Services,
    first: From = None, last: To = None,
) -> JSONResponse:  # fmt: skip
    report = await svc.usage.for_project(caller.key, project_id, first=first, last=last)
    return ok(_view(report, project=project_id), request)


@router.get("/keys/{key_id}/usage", operation_id="key_usage", response_model=KeyUsageResponse)
async def key_usage(
    key_id: KeyId, request: Request, caller: CommandsRead, svc: Services,
    first: From = None, last: To = None,
) -> JSONResponse:  # fmt: skip
    report = await svc.usage.for_key(caller.key, key_id, first=first, last=last)
    return ok(_view(report, key_id=key_id), request)
