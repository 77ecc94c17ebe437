"""The workspace's `.claude/` commands, skills and agents, read and written through the backend
(atomic writes on every backend; stdin on Kubernetes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from rdev.domain import policy
from rdev.domain.errors import AlreadyExists, InvalidInput, NotFound
from rdev.domain.models import ApiKey, Project
from rdev.ports import Backend
from rdev.services.audit import Actor, AuditService

MAX_CONTENT_BYTES = 256 * 1024
_ITEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class ConfigType(StrEnum):
    COMMANDS = "commands"
    SKILLS = "skills"
    AGENTS = "agents"


@dataclass(frozen=True, slots=True)
class ConfigItem:
    type: ConfigType
    name: str
    path: str
    content: str | None = None


def item_path(type_: ConfigType, name: str) -> str:
    if type_ is ConfigType.SKILLS:
        return f".claude/skills/{name}/SKILL.md"
    return f".claude/{type_.value}/{name}.md"


def check_item_name(name: str) -> str:
    if not _ITEM_NAME.fullmatch(name):
        raise InvalidInput(
            "name must be 1-64 letters, digits, '_' or '-', starting with a letter or digit",
            details={"field": "name"},
        )
    return name


def check_content(content: str) -> bytes:
    policy.check_text(content, field="content", limit=MAX_CONTENT_BYTES, allow_empty=True)
    return content.encode("utf-8")


class ClaudeConfigService:
    def __init__(self, backend: Backend, audit: AuditService) -> None:
        self._backend = backend
        self._audit = audit

    async def _project(self, key: ApiKey, project_id: str) -> Project:
        if not key.may_see(project_id):
            raise NotFound(f"project {project_id} not found")
        return await self._backend.get_project(project_id)

    async def list(self, key: ApiKey, project_id: str, type_: ConfigType) -> list[ConfigItem]:
        project = await self._project(key, project_id)
        entries = await self._backend.list_dir(project, f".claude/{type_.value}")
        names = []
        for entry in entries:
            name = entry
            if type_ is not ConfigType.SKILLS:
                if not entry.endswith(".md"):
                    continue
                name = entry[:-3]
            if _ITEM_NAME.fullmatch(name):
                names.append(name)
        return [ConfigItem(type_, n, item_path(type_, n)) for n in sorted(names)]

    async def get(self, key: ApiKey, project_id: str, type_: ConfigType, name: str) -> ConfigItem:
        project = await self._project(key, project_id)
        path = item_path(type_, check_item_name(name))
        try:
            data = await self._backend.read_file(project, path)
        except NotFound:
            raise NotFound(f"{type_.value[:-1]} {name} not found") from None
        return ConfigItem(type_, name, path, data.decode("utf-8", "replace"))

    async def _exists(self, project: Project, path: str) -> bool:
        try:
            await self._backend.read_file(project, path)
        except NotFound:
            return False
        return True

    async def put(
        self,
        key: ApiKey,
        project_id: str,
        type_: ConfigType,
        name: str,
        content: str,
        *,
        create: bool,
        actor: Actor,
    ) -> ConfigItem:
        project = await self._project(key, project_id)
        path = item_path(type_, check_item_name(name))
        data = check_content(content)
        exists = await self._exists(project, path)
        if create and exists:
            raise AlreadyExists(f"{type_.value[:-1]} {name} already exists")
        if not create and not exists:
            raise NotFound(f"{type_.value[:-1]} {name} not found")
        await self._backend.write_file(project, path, data)
        await self._audit.record(
            "config.create" if create else "config.update", actor=actor,
            target=f"{project_id}/{path}", project=project_id, bytes=len(data),
        )  # fmt: skip
        return ConfigItem(type_, name, path, content)

    async def delete(
        self, key: ApiKey, project_id: str, type_: ConfigType, name: str, *, actor: Actor
    ) -> None:
        project = await self._project(key, project_id)
        path = item_path(type_, check_item_name(name))
        target = f".claude/skills/{name}" if type_ is ConfigType.SKILLS else path
        if not await self._exists(project, path):
            raise NotFound(f"{type_.value[:-1]} {name} not found")
        await self._backend.delete(project, target)
        await self._audit.record(
            "config.delete", actor=actor, target=f"{project_id}/{path}", project=project_id
        )
