"""Projects the caller's key may see.

Listing and reading projects are the hottest authenticated requests, so they are served by
plain Starlette routes (`lean_routes`, matched before the routers; see `deps.lean_get`). The
FastAPI declarations below document the same endpoints in OpenAPI and share the code."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import Caller, ProjectsRead, Services, lean_get, ok
from rdev.adapters.http.documented import PROJECTS
from rdev.adapters.http.schemas import project_view
from rdev.adapters.http.state import HttpServices
from rdev.domain.models import Scope

router = APIRouter(prefix="/projects", tags=["projects"])


async def _list(request: Request, caller: Caller, svc: HttpServices) -> JSONResponse:
    return ok([project_view(p) for p in await svc.projects.list(caller.key)], request)


async def _get(request: Request, caller: Caller, svc: HttpServices) -> JSONResponse:
    project_id: str = request.path_params["project_id"]
    return ok(project_view(await svc.projects.get(caller.key, project_id)), request)


lean_routes = [
    lean_get("/projects", Scope.PROJECTS_READ, _list),
    lean_get("/projects/{project_id}", Scope.PROJECTS_READ, _get),
]


@router.get("", responses=PROJECTS)
async def list_projects(request: Request, caller: ProjectsRead, svc: Services) -> JSONResponse:
    return await _list(request, caller, svc)


@router.get("/{project_id}", operation_id="get_project")
async def get_project(
    project_id: str, request: Request, caller: ProjectsRead, svc: Services
) -> JSONResponse:
    return await _get(request, caller, svc)  # reads project_id from request.path_params
