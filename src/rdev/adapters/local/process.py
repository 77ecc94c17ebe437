"""A local subprocess as an Execution: merged stdout/stderr chunks, exit status, and a cancel
that ends the whole process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import IO

from rdev.domain.errors import ExecFailed
from rdev.ports import ExitStatus, OutputChunk, StreamName

_READ_SIZE = 64 * 1024
_DONE = None


class LocalExecution:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        exited: asyncio.Future[int],
    ) -> None:
        self._proc = proc
        self._pgid = proc.pid  # start_new_session makes the child its group leader
        self._exited = exited
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue(maxsize=64)
        self._readers = [
            asyncio.create_task(self._pump(stdout, "stdout")),
            asyncio.create_task(self._pump(stderr, "stderr")),
        ]
        self._cancelled = False

    async def _pump(self, stream: asyncio.StreamReader, name: StreamName) -> None:
        try:
            while data := await stream.read(_READ_SIZE):
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
        code = await asyncio.shield(self._exited)
        # Whatever the command left behind in its group (`sleep 1000 &`) ends with it.
        self._signal_group(signal.SIGKILL)
        return ExitStatus(exit_code=code)

    async def cancel(self, *, grace_seconds: float) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), timeout=grace_seconds)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)


async def start_process(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], stdin: bytes | None
) -> LocalExecution:
    """Start `argv` in its own session and process group.

    The child is made by `subprocess.Popen`, which uses vfork: about a millisecond however large
    this process is. (uvloop's own spawn forks, which copies the page tables of the whole server
    and blocks the event loop for 10-20 ms at ~100 MB.) The pipes are then handed to the loop, and
    the exit is awaited on a pidfd, so no child watcher or thread is involved."""
    try:
        proc = subprocess.Popen(  # noqa: ASYNC220 (vfork: about a millisecond, see above)
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise ExecFailed(f"executable not found: {argv[0]}", details={"reason": "not_found"}) from e
    except PermissionError as e:
        raise ExecFailed(
            f"executable not permitted: {argv[0]}", details={"reason": "permission"}
        ) from e
    loop = asyncio.get_running_loop()
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = await _reader(loop, proc.stdout), await _reader(loop, proc.stderr)
    exited = _exit_future(loop, proc)
    if stdin is not None and proc.stdin is not None:
        await _feed(loop, proc.stdin, stdin)
    return LocalExecution(proc, stdout, stderr, exited)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes]) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


async def _feed(loop: asyncio.AbstractEventLoop, pipe: IO[bytes], data: bytes) -> None:
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    writer.write(data)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


def _exit_future(
    loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]
) -> asyncio.Future[int]:
    """A future of the exit code (negative: killed by that signal), resolved when the child
    ends: by a pidfd becoming readable, or where there are no pidfds, by a thread in wait()."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return asyncio.ensure_future(asyncio.to_thread(proc.wait))
    exited: asyncio.Future[int] = loop.create_future()

    def reap() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        code = proc.wait()  # it has ended: this only reaps it
        if not exited.done():
            exited.set_result(code)

    loop.add_reader(pidfd, reap)
    return exited


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
