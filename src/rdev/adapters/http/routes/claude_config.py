"""The workspace's `.claude/` commands, skills and agents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import JSONResponse

from rdev.adapters.http.deps import ConfigRead, ConfigWrite, Services, ok
from rdev.adapters.http.documented import ItemName, ProjectId
from rdev.adapters.http.responses import (
    ConfigItemList,
    ConfigItemResponse,
    DeletedResponse,
)
from rdev.adapters.http.schemas import ConfigItemUpdate, ConfigItemWrite
from rdev.services.claude_config import ConfigItem, ConfigType

TypeParam = Annotated[
    ConfigType, Path(description="Which kind of item: commands, skills or agents")
]
router = APIRouter(prefix="/projects/{project_id}/claude-config", tags=["claude config"])


def _view(item: ConfigItem) -> dict[str, object]:
    view: dict[str, object] = {"type": item.type.value, "name": item.name, "path": item.path}
    if item.content is not None:
        view["content"] = item.content
    return view


@router.get("/{type_}", response_model=ConfigItemList)
async def list_items(
    project_id: ProjectId, type_: TypeParam, request: Request, caller: ConfigRead, svc: Services
) -> JSONResponse:
    items = await svc.claude_config.list(caller.key, project_id, type_)
    return ok([_view(i) for i in items], request)


@router.post("/{type_}", status_code=201, response_model=ConfigItemResponse)
async def create_item(
    project_id: ProjectId, type_: TypeParam, body: ConfigItemWrite, request: Request,
    caller: ConfigWrite, svc: Services,
) -> JSONResponse:  # fmt: skip
    item = await svc.claude_config.put(
        caller.key, project_id, type_, body.name, body.content, create=True, actor=caller.actor
    )
    return ok(_view(item), request, status=201)


@router.get("/{type_}/{name}", response_model=ConfigItemResponse)
async def get_item(
    project_id: ProjectId, type_: TypeParam, name: ItemName, request: Request, caller: ConfigRead,
    svc: Services,
) -> JSONResponse:  # fmt: skip
    return ok(_view(await svc.claude_config.get(caller.key, project_id, type_, name)), request)


@router.put("/{type_}/{name}", response_model=ConfigItemResponse)
async def update_item(
    project_id: ProjectId, type_: TypeParam, name: ItemName, body: ConfigItemUpdate,
    request: Request, caller: ConfigWrite, svc: Services,
) -> JSONResponse:  # fmt: skip
    item = await svc.claude_config.put(
        caller.key, project_id, type_, name, body.content, create=False, actor=caller.actor
    )
    return ok(_view(item), request)


@router.delete("/{type_}/{name}", response_model=DeletedResponse)
async def delete_item(
    project_id: ProjectId, type_: TypeParam, name: ItemName, request: Request, caller: ConfigWrite,
    svc: Services,
) -> JSONResponse:  # fmt: skip
    await svc.claude_config.delete(caller.key, project_id, type_, name, actor=caller.actor)
    return ok({"deleted": True, "type": type_.value, "name": name}, request)
