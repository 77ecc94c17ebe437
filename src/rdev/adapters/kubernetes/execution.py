"""A command running in a pod as an Execution: its exec websocket plus the second execs that
signal its process group (cancel) and clean up after it (leftover processes, the pid file).

How it ends is reported, never raised: an exit code from the status frame; ExitStatus(None,
EXEC_FAILED) when the command could not run (the kubelet's non-exit failure, or the wrapper's
markers: not found, not permitted, not an executable format, no such directory), described as on
the local backend; ExitStatus(None, EXEC_LOST) when the connection died without a status (pod
deleted, network).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog

from rdev.adapters.kubernetes import scripts
from rdev.adapters.kubernetes.channel import ExecChannel
from rdev.adapters.kubernetes.discovery import Target
from rdev.adapters.kubernetes.podexec import PodExec
from rdev.adapters.kubernetes.protocol import Exited, Lost, Outcome, Refused
from rdev.domain.errors import RdevError, spawn_failure
from rdev.ports import ExitStatus, OutputChunk

log = structlog.get_logger(__name__)

EXEC_FAILED = "EXEC_FAILED"
EXEC_LOST = "EXEC_LOST"


_SPAWN_MARKERS = {
    scripts.NOT_FOUND: "ENOENT",
    scripts.NOT_PERMITTED: "EACCES",
    scripts.NOT_EXECUTABLE: "ENOEXEC",
}


def exit_status(outcome: Outcome, markers: frozenset[str], argv0: str) -> ExitStatus:
    for marker, errno_name in _SPAWN_MARKERS.items():
        if marker in markers:
            return ExitStatus(None, spawn_failure(argv0, errno_name), EXEC_FAILED)
    if scripts.NO_CWD in markers:
        message = "cannot enter the working directory: it does not exist (ENOENT)"
        return ExitStatus(None, message, EXEC_FAILED)
    match outcome:
        case Exited(code):
            return ExitStatus(code)
        case Refused(message):
            return ExitStatus(None, message, EXEC_FAILED)
        case Lost(message):
            return ExitStatus(None, message, EXEC_LOST)


class GroupControl:
    """Second execs addressing the command's process group through its token, and every
    process it started through its marker."""

    def __init__(
        self, pods: PodExec, target: Target, token: str, *, marker: str, timeout: float
    ) -> None:
        self._pods = pods
        self._target = target
        self._token = token
        self._marker = marker
        self._timeout = timeout

    async def signal(self, signal: str, *, mark: bool) -> None:
        argv = scripts.signal_argv(self._token, signal, marker=self._marker, mark=mark)
        try:
            await self._pods.run(self._target, argv, seconds=self._timeout)
        except RdevError as e:
            log.warning(
                "kubernetes.signal_failed", pod=self._target.pod, signal=signal, error=e.code
            )

    async def cleanup(self) -> frozenset[str]:
        """Kill whatever is left in the group, drop the pid file; returns its markers."""
        try:
            done = await self._pods.run(
                self._target,
                scripts.cleanup_argv(self._token, marker=self._marker),
                seconds=self._timeout,
            )
        except RdevError as e:
            log.info("kubernetes.cleanup_failed", pod=self._target.pod, error=e.code)
            return frozenset()
        return scripts.markers(done.stdout)


class KubeExecution:
    def __init__(self, channel: ExecChannel, control: GroupControl, *, argv0: str) -> None:
        self._channel = channel
        self._control = control
        self._argv0 = argv0
        self._result: asyncio.Task[ExitStatus] | None = None
        self._cancelling: asyncio.Task[None] | None = None

    def output(self) -> AsyncIterator[OutputChunk]:
        return self._channel.output()

    async def wait(self) -> ExitStatus:
        if self._result is None:
            self._result = asyncio.create_task(self._finish())
        return await asyncio.shield(self._result)

    async def _finish(self) -> ExitStatus:
        outcome = await self._channel.outcome()
        markers = await self._control.cleanup()
        return exit_status(outcome, markers, self._argv0)

    async def cancel(self, *, grace_seconds: float) -> None:
        if self._cancelling is None:
            self._cancelling = asyncio.create_task(self._cancel(grace_seconds))
        await asyncio.shield(self._cancelling)

    async def _cancel(self, grace_seconds: float) -> None:
        if self._channel.done:
            return
        await self._control.signal("TERM", mark=True)
        if await self._channel.ended_within(grace_seconds):
            return
        await self._control.signal("KILL", mark=False)
