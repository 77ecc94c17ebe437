"""Projects the caller's key may see.

Listing and reading projects are the hottest authenticated requests, so they are served by
lean routes (see `lean.py`): `twins` declares them for OpenAPI, and the lean routes are built
from that declaration."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import Caller, ProjectsRead, ok
from rdev.adapters.http.documented import KEYED, PROJECTS, ProjectId
from rdev.adapters.http.lean import serves
from rdev.adapters.http.responses import ProjectResponse
from rdev.adapters.http.schemas import project_view
from rdev.adapters.http.state import HttpServices

twins = APIRouter(prefix="/projects", tags=["projects"], responses=KEYED)


async def _list(request: Request, caller: Caller, svc: HttpServices) -> JSONResponse:
    return ok([project_view(p) for p in await svc.projects.list(caller.key)], request)


async def _get(request: Request, caller: Caller, svc: HttpServices) -> JSONResponse:
    project_id: str = request.path_params["project_id"]
    return ok(project_view(await svc.projects.get(caller.key, project_id)), request)


@twins.get("", operation_id="list_projects", responses=PROJECTS)
@serves(_list)
async def list_projects(caller: ProjectsRead) -> None:
    """The projects this key may see."""


@twins.get("/{project_id}", operation_id="get_project", response_model=ProjectResponse)
@serves(_get)
async def get_project(project_id: ProjectId, caller: ProjectsRead) -> None:
    """One project: whether it takes commands, and which kinds."""
