"""A local subprocess as an Execution: merged stdout/stderr chunks, exit status, and an end that
takes every process the command started with it (tree.py finds them by their marker).

The status follows the main process. When it exits, what it left behind is killed at once, and
the output pipes get `DRAIN_SECONDS` to reach EOF: a process that escaped the marker could hold
them open forever, so after that they are read to what is buffered and closed. Cancel sends
SIGTERM to the group and every marked process, waits up to the grace for all of them to exit,
then kills what is left. A program that cannot start raises ExecFailed naming the errno."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import IO

from rdev.adapters.local import tree
from rdev.domain.errors import ExecFailed, spawn_failure
from rdev.ports import ExitStatus, OutputChunk, StreamName

_READ_SIZE = 64 * 1024
_DONE = None


_QUEUED_CHUNKS = 32  # per execution; past it the pipes pause and the command blocks on write
DRAIN_SECONDS = 0.5  # after the main process and its tree are gone, for the pipes to reach EOF
_TREE_POLL_SECONDS = 0.05  # during a cancel's grace: has every process exited?
_LAST_READ_BYTES = 1024 * 1024  # what a closing pipe still reads of what is buffered


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

    def finish(self) -> None:
        """Take what is buffered and close, though a writer may still hold the pipe open."""
        if self._closed:
            return
        taken = 0
        while taken < _LAST_READ_BYTES:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except OSError:  # nothing buffered (EAGAIN), or the pipe broke
                break
            if not data:
                break
            taken += len(data)
            self._queue.put_nowait(OutputChunk(self._name, data))
        self.close()
        self._queue.put_nowait(_DONE)


class LocalExecution:
    def __init__(
        self, proc: subprocess.Popen[bytes], exited: asyncio.Future[int], *, marker: str
    ) -> None:
        self._proc = proc
        self._pgid = proc.pid  # start_new_session makes the child its group leader
        self._exited = exited
        self._marker = marker
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue()
        self._pipes = [
            _Pipe(_take_fd(proc.stdout), "stdout", self._queue),
            _Pipe(_take_fd(proc.stderr), "stderr", self._queue),
        ]
        self._ending: asyncio.Future[None] | None = None
        self._terminating: asyncio.Future[None] | None = None

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
        if self._terminating is not None:
            await asyncio.shield(self._terminating)  # the cancel's grace runs its course
        else:
            await self._end_tree()
        return ExitStatus(exit_code=code)

    async def cancel(self, *, grace_seconds: float) -> None:
        if self._terminating is None:
            self._terminating = asyncio.ensure_future(self._terminate(grace_seconds))
        await asyncio.shield(self._terminating)

    async def _terminate(self, grace_seconds: float) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, signal.SIGTERM)
        await asyncio.to_thread(tree.signal_all, self._marker, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while loop.time() < deadline:
            if self._exited.done() and not await asyncio.to_thread(tree.find, self._marker):
                break
            await asyncio.sleep(min(_TREE_POLL_SECONDS, max(0.0, deadline - loop.time())))
        await self._end_tree()

    async def _end_tree(self) -> None:
        """Kill the group and every marked process (once), then give the pipes DRAIN_SECONDS."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._kill_tree())
        await asyncio.shield(self._ending)

    async def _kill_tree(self) -> None:
        await asyncio.to_thread(tree.end, self._marker, group=self._pgid)
        asyncio.get_running_loop().call_later(DRAIN_SECONDS, self._finish_pipes)

    def _finish_pipes(self) -> None:
        for pipe in self._pipes:
            pipe.finish()


def _take_fd(pipe: IO[bytes] | None) -> int:
    """The descriptor of one of Popen's pipe objects, which no longer owns it."""
    assert pipe is not None
    fd = os.dup(pipe.fileno())
    pipe.close()
    return fd


async def start_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdin: bytes | None,
    marker: str,
) -> LocalExecution:
    """Start `argv` in its own session and process group, with `RDEV_COMMAND_ID=marker` in its
    environment (tree.py); any failure to start is an ExecFailed naming the errno.

    The child is made by `subprocess.Popen`, which uses vfork: about a millisecond however large
    this process is. (uvloop's own spawn forks, which copies the page tables of the whole server
    and blocks the event loop for 10-20 ms at ~100 MB.) The pipes are then read by the loop, and
    the exit is awaited on a pidfd, so no child watcher or thread is involved."""
    try:
        proc = subprocess.Popen(  # noqa: ASYNC220 (vfork: about a millisecond, see above)
            argv,
            cwd=cwd,
            env=dict(env) | tree.marker_env(marker),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError) as e:
        raise _spawn_error(argv[0], cwd, e) from e
    exited = _exit_future(asyncio.get_running_loop(), proc)
    execution = LocalExecution(proc, exited, marker=marker)
    if stdin is not None and proc.stdin is not None:
        await asyncio.to_thread(_feed, proc.stdin, stdin)
    return execution


def _spawn_error(program: str, cwd: str, e: OSError | ValueError) -> ExecFailed:
    """Popen names the file it failed on: the program, or the cwd when chdir failed."""
    if not isinstance(e, OSError) or e.errno is None:
        return ExecFailed(f"cannot run {program[:80]}: {e}", details={"reason": "invalid"})
    name = errno.errorcode.get(e.errno, f"errno {e.errno}")
    if e.filename == cwd and program != cwd:
        message = f"cannot enter the working directory: {e.strerror} ({name})"
        return ExecFailed(message, details={"reason": "cwd", "errno": name})
    return ExecFailed(spawn_failure(program, name, e.strerror or ""), details={"errno": name})


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
