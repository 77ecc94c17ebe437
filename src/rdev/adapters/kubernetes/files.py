"""Workspace files in a pod (the `.claude/` config), through short helper execs.

There is no file API in Kubernetes, so each operation is one `sh` script with the path as an
argument; writes stream the content on stdin into a temp file in the same directory and `mv -f`
it into place, so a reader never sees half a file. Exit codes of the scripts carry "missing"
and "is a directory" back as domain errors.
"""

from __future__ import annotations

import secrets

from rdev.adapters.kubernetes import scripts
from rdev.adapters.kubernetes.channel import Completed
from rdev.adapters.kubernetes.discovery import Target
from rdev.adapters.kubernetes.podexec import PodExec
from rdev.adapters.kubernetes.protocol import Exited
from rdev.domain.errors import ExecFailed, InvalidInput, NotFound


def _check(done: Completed, path: str, what: str) -> None:
    outcome = done.outcome
    if isinstance(outcome, Exited):
        if outcome.code == 0:
            return
        if outcome.code == scripts.EXIT_MISSING:
            raise NotFound(f"{path} not found")
        if outcome.code == scripts.EXIT_IS_DIR:
            raise InvalidInput(f"{path} is a directory", details={"field": "path"})
        if outcome.code == scripts.EXIT_NO_PARENT:
            raise InvalidInput(f"cannot create the folders of {path}", details={"field": "path"})
        message = done.stderr.decode("utf-8", "replace").strip()[-500:]
        raise ExecFailed(
            f"{what} {path} failed with exit code {outcome.code}: {message}",
            details={"reason": "file_operation", "exit_code": outcome.code},
        )
    raise ExecFailed(f"{what} {path} failed: {outcome.message}", details={"reason": what})


class PodFiles:
    def __init__(self, pods: PodExec) -> None:
        self._pods = pods

    async def list_dir(self, target: Target, path: str) -> list[str]:
        directory = scripts.workspace_path(target.project.workspace, path)
        done = await self._pods.run(target, scripts.list_argv(directory))
        _check(done, path, "list")
        return scripts.entry_names(done.stdout)

    async def read_file(self, target: Target, path: str) -> bytes:
        file = scripts.workspace_path(target.project.workspace, path, allow_root=False)
        done = await self._pods.run(target, scripts.read_argv(file))
        _check(done, path, "read")
        return done.stdout

    async def write_file(self, target: Target, path: str, data: bytes) -> None:
        file = scripts.workspace_path(target.project.workspace, path, allow_root=False)
        argv = scripts.write_argv(file, token=secrets.token_hex(8), size=len(data))
        done = await self._pods.run(target, argv, stdin=data)
        _check(done, path, "write")

    async def delete(self, target: Target, path: str) -> None:
        file = scripts.workspace_path(target.project.workspace, path, allow_root=False)
        done = await self._pods.run(target, scripts.delete_argv(file))
        _check(done, path, "delete")
