"""Tracking and killing the real processes that stand in for a pod's container processes.

Exec'd commands run as local process groups in the pod folder. A leaked background process
is the bug class tests hunt for, so processes are found both through our own bookkeeping and
by scanning ``/proc/*/cwd`` for anything still running inside a pod folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

PodKey = tuple[str, str]  # (namespace, pod name)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Signals the moment the process exits.

    ``Process.wait()`` also waits for every pipe to close, which never happens while a
    background child still holds stdout; an exec must notice the exit itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def spawn(
    argv: list[str], **kwargs: Any
) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    """Like ``asyncio.create_subprocess_exec``, plus a future resolved when the process exits."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop), argv[0], *argv[1:], **kwargs
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def processes_in_dir(directory: Path) -> list[int]:
    """PIDs of live (non-zombie) processes whose working directory is inside ``directory``."""
    root = directory.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (cwd == root or root in cwd.parents):
            found.append(int(entry.name))
    return sorted(found)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


class ProcessTracker:
    """Every exec'd process per pod; each one leads its own session and process group."""

    def __init__(self) -> None:
        self._procs: dict[PodKey, list[asyncio.subprocess.Process]] = {}
        self.background: set[asyncio.Task[Any]] = set()

    def add(self, key: PodKey, proc: asyncio.subprocess.Process) -> None:
        self._procs.setdefault(key, []).append(proc)

    def running(self, key: PodKey) -> list[int]:
        return [p.pid for p in self._procs.get(key, []) if p.returncode is None]

    def kill_pod(self, key: PodKey, pod_dir: Path) -> None:
        """What a node does when the pod goes away: every process in the container dies."""
        for proc in self._procs.pop(key, []):
            _kill_group(proc.pid)
        for pid in processes_in_dir(pod_dir):
            _kill(pid)

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to a detached task (e.g. draining a disconnected exec)."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def kill_all(self, root: Path) -> None:
        for key in list(self._procs):
            self.kill_pod(key, root / key[0] / key[1])
        for pid in processes_in_dir(root):
            _kill(pid)
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
