"""Spans around the backend's calls (exec, project reads, workspace files), for any backend: a
wrapper, so neither backend knows about tracing. The span of `exec` covers starting the
process; the command's own span (runtime/runner.py) covers its life."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind

from rdev.domain.models import Project
from rdev.ports import Backend, Execution


class TracedBackend:
    def __init__(self, inner: Backend, provider: Any) -> None:
        self._inner = inner
        self._tracer = provider.get_tracer("rdev.backend")
        self.name = inner.name

    def _span(self, op: str, **attributes: str) -> Any:
        return self._tracer.start_as_current_span(
            f"backend.{op}",
            kind=SpanKind.CLIENT,
            attributes={"rdev.backend": self.name, **attributes},
        )

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def check(self) -> None:
        await self._inner.check()

    async def list_projects(self) -> list[Project]:
        with self._span("list_projects"):
            return await self._inner.list_projects()

    async def get_project(self, project_id: str) -> Project:
        with self._span("get_project", **{"rdev.project": project_id}):
            return await self._inner.get_project(project_id)

    async def exec(
        self,
        project: Project,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
        stdin: bytes | None = None,
        command_id: str | None = None,
    ) -> Execution:
        with self._span(
            "exec", **{"rdev.project": project.id, "rdev.command.id": command_id or ""}
        ):
            return await self._inner.exec(
                project, argv, env=env, cwd=cwd, stdin=stdin, command_id=command_id
            )

    async def kill_command(self, project_id: str, command_id: str) -> int:
        with self._span("kill_command", **{"rdev.project": project_id}):
            return await self._inner.kill_command(project_id, command_id)

    async def list_dir(self, project: Project, path: str) -> list[str]:
        with self._span("list_dir", **{"rdev.project": project.id}):
            return await self._inner.list_dir(project, path)

    async def read_file(self, project: Project, path: str) -> bytes:
        with self._span("read_file", **{"rdev.project": project.id}):
            return await self._inner.read_file(project, path)

    async def write_file(self, project: Project, path: str, data: bytes) -> None:
        with self._span("write_file", **{"rdev.project": project.id}):
            await self._inner.write_file(project, path, data)

    async def delete(self, project: Project, path: str) -> None:
        with self._span("delete", **{"rdev.project": project.id}):
            await self._inner.delete(project, path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # a backend's own extras (the tests' helpers)
