"""Projects the caller's key may see."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import ProjectsRead, Services, ok
from rdev.adapters.http.schemas import project_view

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("")
async def list_projects(request: Request, caller: ProjectsRead, svc: Services) -> JSONResponse:
    return ok([project_view(p) for p in await svc.projects.list(caller.key)], request)


@router.get("/{project_id}")
async def get_project(
    project_id: str, request: Request, caller: ProjectsRead, svc: Services
) -> JSONResponse:
    return ok(project_view(await svc.projects.get(caller.key, project_id)), request)
