"""Projects as folders under a root; `<root>/.settings/<project>.toml` tunes a project (parsed
by `domain.settings`, so an invalid file leaves the project `failed`, never with defaults).

The settings live beside the workspaces, not in them: commands, git checkouts and Claude's own
edit tools write the workspace, and the settings widen what keys may do there (raw shell,
Claude with a shell's power) and say where Claude's credentials go (`claude_env`). A
`project.toml` found in a workspace is not read; the project says so in `status_reason`.

Every command runs as the server's user with the server's HOME, so the Claude CLI would keep
one state (sessions, transcripts, settings) for all projects, and a key granted one project
could resume another's conversation. Claude therefore gets a config dir per project, outside
the workspace: `CLAUDE_CONFIG_DIR=<claude_state>/<project>` whenever the claude binary runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from rdev.adapters.local import tree
from rdev.adapters.local.process import LocalExecution, scrubbed_env, start_process
from rdev.domain import policy, settings
from rdev.domain.errors import BackendUnavailable, InvalidInput, InvalidSettings, NotFound
from rdev.domain.models import Project, ProjectStatus
from rdev.ports import Execution, ExitStatus, OutputChunk

SETTINGS_DIR = ".settings"  # in the root: `<root>/.settings/<project>.toml`
WORKSPACE_FILE = "project.toml"  # where the settings used to be: not read any more


def settings_file(root: Path, project: str) -> Path:
    """Where a project's settings are read from."""
    return root / SETTINGS_DIR / f"{project}.toml"


class LocalBackend:
    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        cache_seconds: float = 1.0,
        claude_bin: str | None = None,
        claude_state: Path | None = None,
        claude_temp: Path | None = None,
    ) -> None:
        self._root = root
        self._cache_seconds = cache_seconds
        self._claude_bin = claude_bin
        self._claude_state = claude_state
        self._claude_temp_root = claude_temp
        # (read at, root folder mtime, projects): settings edits show within cache_seconds,
        # new or removed folders at once (they change the root's mtime)
        self._cache: tuple[float, float, dict[str, Project]] | None = None

    async def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        if not self._root.is_dir() or not os.access(self._root, os.R_OK | os.X_OK):
            raise BackendUnavailable(f"workspace root {self._root} is not readable")

    async def list_projects(self) -> list[Project]:
        return list((await self._projects()).values())

    async def get_project(self, project_id: str) -> Project:
        project = (await self._projects()).get(project_id)
        if project is None:
            raise NotFound(f"project {project_id} not found")
        return project

    async def _projects(self) -> dict[str, Project]:
        try:
            mtime = self._root.stat().st_mtime
        except OSError:
            mtime = -1.0
        now = time.monotonic()
        if self._cache is not None:
            read_at, seen_mtime, projects = self._cache
            if now - read_at < self._cache_seconds and seen_mtime == mtime:
                return projects
        projects = {p.id: p for p in await asyncio.to_thread(self._scan)}
        self._cache = (now, mtime, projects)
        return projects

    def _scan(self) -> list[Project]:
        if not self._root.is_dir():
            return []
        projects = []
        for folder in sorted(self._root.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                with contextlib.suppress(InvalidInput):
                    policy.check_name(folder.name, field="project")
                    projects.append(_load_project(folder))
        return projects

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
        workdir = self._inside(project, cwd or "")
        if not workdir.is_dir():
            raise InvalidInput(f"cwd {cwd!r} is not a directory", details={"field": "cwd"})
        marker = command_id or f"run_{secrets.token_hex(12)}"
        temp = await self._claude_temp(argv, marker)
        env = {**env, **await self._claude_env(project, argv)}
        if temp is not None:
            env["TMPDIR"] = str(temp)
        try:
            execution = await start_process(
                argv, cwd=str(workdir), env=scrubbed_env(env), stdin=stdin, marker=marker
            )
        except BaseException:
            if temp is not None:
                await asyncio.to_thread(shutil.rmtree, temp, True)
            raise
        return execution if temp is None else TempDirExecution(execution, temp)

    async def kill_command(self, project_id: str, command_id: str) -> int:
        """Any process on this machine still carrying the command's marker (a crashed replica's
        command, swept to lost) is killed; the project need not exist any more."""
        return await asyncio.to_thread(tree.end, command_id)

    async def _claude_temp(self, argv: Sequence[str], marker: str) -> Path | None:
        """A claude command's own TMPDIR (the CLI leaves a folder per run in it), removed when
        the command ends: `<claude_temp>/<marker>-XXXX`, private to rdev's user."""
        if self._claude_temp_root is None or not argv or argv[0] != self._claude_bin:
            return None
        root = self._claude_temp_root
        await asyncio.to_thread(root.mkdir, mode=0o700, parents=True, exist_ok=True)
        return Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"{marker}-", dir=root))

    async def _claude_env(self, project: Project, argv: Sequence[str]) -> dict[str, str]:
        if self._claude_state is None or not argv or argv[0] != self._claude_bin:
            return {}
        state = self._claude_state / project.id
        await asyncio.to_thread(state.mkdir, mode=0o700, parents=True, exist_ok=True)
        return {"CLAUDE_CONFIG_DIR": str(state.resolve())}

    async def list_dir(self, project: Project, path: str) -> list[str]:
        folder = self._inside(project, path)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir())

    async def read_file(self, project: Project, path: str) -> bytes:
        file = self._inside(project, path)
        try:
            return await asyncio.to_thread(file.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise NotFound(f"{path} not found") from e

    async def write_file(self, project: Project, path: str, data: bytes) -> None:
        await asyncio.to_thread(_atomic_write, self._inside(project, path), data)

    async def delete(self, project: Project, path: str) -> None:
        target = self._inside(project, path)
        if not target.exists():
            raise NotFound(f"{path} not found")
        if target.is_dir():
            await asyncio.to_thread(shutil.rmtree, target)
        else:
            target.unlink()

    def _inside(self, project: Project, path: str) -> Path:
        """Resolve a workspace-relative path; symlinks may not lead outside the workspace."""
        base = (self._root / project.id).resolve()
        rel = policy.check_relative_path(path, field="path") if path else ""
        target = (base / rel).resolve()
        if target != base and base not in target.parents:
            raise InvalidInput("path leaves the workspace", details={"field": "path"})
        return target


class TempDirExecution:
    """A process whose temporary folder is removed once it has ended (and its tree with it)."""

    def __init__(self, inner: LocalExecution, folder: Path) -> None:
        self._inner = inner
        self._folder = folder

    def output(self) -> AsyncIterator[OutputChunk]:
        return self._inner.output()

    async def wait(self) -> ExitStatus:
        try:
            return await self._inner.wait()
        finally:
            await asyncio.to_thread(shutil.rmtree, self._folder, True)

    async def cancel(self, *, grace_seconds: float) -> None:
        await self._inner.cancel(grace_seconds=grace_seconds)


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".rdev-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _load_project(folder: Path) -> Project:
    workspace = str(folder.resolve())
    file = settings_file(folder.parent, folder.name)
    try:
        cfg = _read_settings(file)
    except InvalidSettings as e:
        return Project(
            id=folder.name,
            status=ProjectStatus.FAILED,
            status_reason=settings.failure_reason(f"{SETTINGS_DIR}/{file.name}", e),
            workspace=workspace,
            allowed_kinds=frozenset(),  # takes nothing even if a caller forgets the status
        )
    ignored = (folder / WORKSPACE_FILE).exists()
    return Project(
        id=folder.name,
        status=ProjectStatus.RUNNING,
        status_reason=(
            f"{WORKSPACE_FILE} in the workspace is not read (commands can write it); "
            f"the settings are {SETTINGS_DIR}/{file.name} in the projects' root"
        )
        if ignored
        else None,
        description=cfg.description,
        workspace=workspace,
        allowed_kinds=cfg.allowed_kinds,
        max_concurrent=cfg.max_concurrent,
        allow_raw_shell=cfg.allow_raw_shell,
        allow_claude_shell=cfg.allow_claude_shell,
        claude_env=cfg.claude_env,
        daily_budget_usd=cfg.daily_budget_usd,
    )


def _read_settings(file: Path) -> settings.ProjectSettings:
    """No file means the defaults; a file that cannot be read, decoded or parsed is an error."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return settings.ProjectSettings()
    except OSError as e:
        raise InvalidSettings([f"cannot be read ({e.strerror or type(e).__name__})"]) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidSettings([f"is not UTF-8 (byte {e.start})"]) from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidSettings([f"not valid TOML: {e}"]) from e
    return settings.parse_settings(doc)
