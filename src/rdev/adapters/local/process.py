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


_QUEUED_CHUNKS = 32  # per execution; past it the pipes pause and the command blocks on write


class _Pipe:
    """One of the child's output pipes, read by the event loop into the execution's queue.

    The descriptor is this object's alone: it is read from a reader callback and closed here
    (never handed to a loop transport, which under uvloop would close it behind the back of the
    Python file object that also owns it)."""

    def __init__(self, fd: int, name: StreamName, queue: asyncio.Queue[OutputChunk | None]) -> None:
        self._fd = fd
        self._name = name
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False
        os.set_blocking(fd, False)
        self.resume()

    def resume(self) -> None:
        if not self._reading and not self._closed:
            self._reading = True
            self._loop.add_reader(self._fd, self._readable)

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            self._queue.put_nowait(_DONE)
            return
        self._queue.put_nowait(OutputChunk(self._name, data))
        if self._queue.qsize() >= _QUEUED_CHUNKS:
            self._pause()  # the consumer resumes it

    def close(self) -> None:
        if not self._closed:
            self._pause()
            self._closed = True
            os.close(self._fd)


class LocalExecution:
    def __init__(self, proc: subprocess.Popen[bytes], exited: asyncio.Future[int]) -> None:
        self._proc = proc
        self._pgid = proc.pid  # start_new_session makes the child its group leader
        self._exited = exited
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue()
        self._pipes = [
            _Pipe(_take_fd(proc.stdout), "stdout", self._queue),
            _Pipe(_take_fd(proc.stderr), "stderr", self._queue),
        ]
        self._cancelled = False

    async def output(self) -> AsyncIterator[OutputChunk]:
        open_streams = len(self._pipes)
        try:
            while open_streams:
                chunk = await self._queue.get()
                if self._queue.qsize() < _QUEUED_CHUNKS:
                    for pipe in self._pipes:
                        pipe.resume()
                if chunk is _DONE:
                    open_streams -= 1
                else:
                    yield chunk
        finally:
            for pipe in self._pipes:
                pipe.close()

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


def _take_fd(pipe: IO[bytes] | None) -> int:
    """The descriptor of one of Popen's pipe objects, which no longer owns it."""
    assert pipe is not None
    fd = os.dup(pipe.fileno())
    pipe.close()
    return fd


async def start_process(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], stdin: bytes | None
) -> LocalExecution:
    """Start `argv` in its own session and process group.

    The child is made by `subprocess.Popen`, which uses vfork: about a millisecond however large
    this process is. (uvloop's own spawn forks, which copies the page tables of the whole server
    and blocks the event loop for 10-20 ms at ~100 MB.) The pipes are then read by the loop, and
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
    execution = LocalExecution(proc, _exit_future(asyncio.get_running_loop(), proc))
    if stdin is not None and proc.stdin is not None:
        await asyncio.to_thread(_feed, proc.stdin, stdin)
    return execution


def _feed(pipe: IO[bytes], data: bytes) -> None:
    """Write stdin and close it (EOF); a command that exits without reading it is not an
    error."""
    with contextlib.suppress(BrokenPipeError), pipe:
        pipe.write(data)


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
