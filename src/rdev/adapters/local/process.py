"""A local subprocess as an Execution: merged stdout/stderr chunks, exit status, and a cancel
that ends the whole process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence

from rdev.domain.errors import ExecFailed
from rdev.ports import ExitStatus, OutputChunk, StreamName

_READ_SIZE = 64 * 1024
_DONE = None


class LocalExecution:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._pgid = proc.pid  # start_new_session makes the child its group leader
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue(maxsize=64)
        self._readers = [
            asyncio.create_task(self._pump(proc.stdout, "stdout")),
            asyncio.create_task(self._pump(proc.stderr, "stderr")),
        ]
        self._cancelled = False

    async def _pump(self, stream: asyncio.StreamReader | None, name: StreamName) -> None:
        try:
            while stream is not None and (data := await stream.read(_READ_SIZE)):
                await self._queue.put(OutputChunk(name, data))
        finally:
            await self._queue.put(_DONE)

    async def output(self) -> AsyncIterator[OutputChunk]:
        open_streams = len(self._readers)
        while open_streams:
            chunk = await self._queue.get()
            if chunk is _DONE:
                open_streams -= 1
            else:
                yield chunk

    async def wait(self) -> ExitStatus:
        code = await self._proc.wait()
        # Whatever the command left behind in its group (`sleep 1000 &`) ends with it.
        self._signal_group(signal.SIGKILL)
        return ExitStatus(exit_code=code)

    async def cancel(self, *, grace_seconds: float) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), timeout=grace_seconds)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)


async def start_process(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], stdin: bytes | None
) -> LocalExecution:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise ExecFailed(f"executable not found: {argv[0]}", details={"reason": "not_found"}) from e
    except PermissionError as e:
        raise ExecFailed(
            f"executable not permitted: {argv[0]}", details={"reason": "permission"}
        ) from e
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
    return LocalExecution(proc)


def scrubbed_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment: rdev's own secrets and settings never reach a command."""
    base = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER")
        if name in os.environ
    }
    base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    base["TERM"] = "dumb"
    return base | dict(extra)
