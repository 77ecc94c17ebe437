"""Projects as a key may see them: the backend's list filtered by the key's grants."""

from __future__ import annotations

from rdev.domain.errors import NotFound
from rdev.domain.models import ApiKey, Project
from rdev.ports import Backend


class ProjectService:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def list(self, key: ApiKey) -> list[Project]:
        return [p for p in await self._backend.list_projects() if key.may_see(p.id)]

    async def get(self, key: ApiKey, project_id: str) -> Project:
        """A project the key may not see is indistinguishable from one that does not exist."""
        if not key.may_see(project_id):
            raise NotFound(f"project {project_id} not found")
        return await self._backend.get_project(project_id)
