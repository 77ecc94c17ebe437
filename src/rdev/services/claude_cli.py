"""Is the Claude CLI there? Asked before a claude command is accepted, so a missing CLI is a
503 CLAUDE_UNAVAILABLE at once (with how to install it), not a command that is accepted and then
fails with `executable not found`.

The probe runs `<RDEV_CLAUDE_BIN> --version` where the command would run: on the local backend
once for the server (every project shares its PATH; `server_probe`, adapters/local/
claude_probe.py), on Kubernetes once per project (each pod is its own image) with Backend.exec,
so it sees exactly what a command would see. Answers are
cached: a found CLI for `ttl` seconds, a missing one for at most NEGATIVE_TTL seconds, so
installing it takes effect soon. `/ready` shows what is known and never fails because of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rdev.domain.errors import ClaudeUnavailable, RdevError
from rdev.domain.models import Project
from rdev.ports import Backend

ServerProbe = Callable[[], Awaitable[tuple[str | None, str | None]]]  # (version, why not)

NEGATIVE_TTL = 10.0
PROBE_SECONDS = 30.0
MAX_VERSION_CHARS = 100
INSTALL_HINT = (
    "install Claude Code where commands run (the native binary needs no Node.js: "
    "`curl -fsSL https://claude.ai/install.sh | bash`, or `npm install -g "
    "@anthropic-ai/claude-code`) and point RDEV_CLAUDE_BIN at it; see docs/claude.md"
)


@dataclass(frozen=True, slots=True)
class Probe:
    found: bool
    version: str | None
    error: str | None
    at: float  # monotonic


class ClaudeCli:
    def __init__(
        self,
        backend: Backend,
        binary: str,
        *,
        server_probe: ServerProbe | None = None,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self.binary = binary
        self._server_probe = server_probe
        self._per_project = server_probe is None
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, Probe] = {}
        self._pending: dict[str, asyncio.Task[Probe]] = {}

    def _key(self, project: Project) -> str:
        return project.id if self._per_project else "*"

    async def check(self, project: Project) -> str:
        """The CLI's version where `project`'s commands run, or ClaudeUnavailable."""
        probe = await self.probe(project)
        if not probe.found:
            where = f"in project {project.id}" if self._per_project else "on this server"
            raise ClaudeUnavailable(
                f"the Claude CLI ({self.binary}) is not available {where}: {probe.error}; "
                + INSTALL_HINT,
                details={"binary": self.binary, "project": project.id},
            )
        return probe.version or ""

    async def probe(self, project: Project) -> Probe:
        return await self._cached(self._key(project), project)

    async def _cached(self, key: str, project: Project | None) -> Probe:
        known = self._known.get(key)
        if known is not None and self._clock() - known.at < (
            self._ttl if known.found else min(self._ttl, NEGATIVE_TTL)
        ):
            return known
        task = self._pending.get(key)
        if task is None:  # one probe at a time per key; concurrent callers share it
            task = asyncio.ensure_future(self._run(project))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        probe = await asyncio.shield(task)
        self._known[key] = probe
        return probe

    async def server(self) -> Probe | None:
        """The server-wide answer (probed if stale), or None when the CLI is checked per project."""
        if self._server_probe is None:
            return None
        return await self._cached("*", None)

    async def _run(self, project: Project | None) -> Probe:
        if self._server_probe is not None:
            version, error = await self._server_probe()
            return Probe(version is not None, version, error, self._clock())
        assert project is not None
        try:
            execution = await self._backend.exec(project, (self.binary, "--version"), env={})
        except RdevError as e:
            return Probe(False, None, e.message, self._clock())
        out = bytearray()
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                async for chunk in execution.output():
                    if chunk.stream == "stdout" and len(out) < 4096:
                        out += chunk.data
                status = await execution.wait()
        except TimeoutError:
            await execution.cancel(grace_seconds=1.0)
            return Probe(False, None, f"`--version` gave no answer in {PROBE_SECONDS:g} s", 0.0)
        text = out.decode("utf-8", "replace").strip().splitlines()
        version = text[0][:MAX_VERSION_CHARS] if text else None
        if status.exit_code != 0:
            why = status.error or f"`--version` exited with {status.exit_code}"
            return Probe(False, None, why, self._clock())
        return Probe(True, version, None, self._clock())

    async def report(self) -> dict[str, Any]:
        """For `/ready`: on the local backend the server's answer (probed when stale), on
        Kubernetes what is known per project (probed on a project's first claude command)."""
        await self.server()

        def one(p: Probe) -> dict[str, Any]:
            return {"found": p.found, "version": p.version, "error": p.error}

        if self._per_project:
            projects = {k: one(p) for k, p in sorted(self._known.items())}
            return {"binary": self.binary, "per_project": True, "projects": projects}
        known = self._known.get("*")
        return {"binary": self.binary, "per_project": False, **(one(known) if known else {})}
