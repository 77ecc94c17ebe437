"""One exec session: the channel.k8s.io framing between a websocket and a local process.

Frames are binary, first byte = channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize);
v5 adds ``255 <channel>`` to close a channel. Output may be split at any byte, even inside
a UTF-8 character, so clients are forced to reassemble streams rather than frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from .objects import Obj

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V5, V4, V1 = "v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"


@dataclass
class ExecOptions:
    """Knobs for exec; change them on ``FakeKubeApi.exec_options`` at any time."""

    workspace: str = "/workspace"  # container path mapped onto the pod folder
    frame_size: int | None = None  # split every output chunk into frames of <= N bytes
    initial_empty_frames: bool = True  # an empty frame per output channel at start
    kill_on_disconnect: bool = False  # real kubelets leave the process running
    require_running: bool = True  # refuse exec (400) unless the pod phase is Running
    io_drain_timeout: float | None = None  # None: wait for output EOF like containerd
    env: dict[str, str] = field(default_factory=dict)  # extra environment for commands


def exit_status(command: list[str], returncode: int) -> Obj:
    """The status document the kubelet sends on channel 3 when the process ends."""
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = returncode if returncode > 0 else 128 - returncode  # killed by signal N: 128+N
    cmd = "[" + " ".join(command) + "]"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"{cmd}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class ExecSession:
    """Pumps bytes between the websocket and the process, then reports the exit status."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        proc: asyncio.subprocess.Process,
        exited: asyncio.Future[None],
        protocol: str,
        options: ExecOptions,
        transport: asyncio.Transport | None,
    ) -> None:
        self.ws, self.proc, self.protocol, self.options = ws, proc, protocol, options
        self.transport, self.exited = transport, exited
        self.aborted = False
        self._send_lock = asyncio.Lock()
        self._client_gone = False
        self.waiter: asyncio.Task[int] | None = None

    async def send(self, channel: int, data: bytes) -> None:
        size = self.options.frame_size or max(len(data), 1)
        for start in range(0, max(len(data), 1), size):
            if self._client_gone or self.ws.closed:
                return
            async with self._send_lock:
                try:
                    await self.ws.send_bytes(bytes([channel]) + data[start : start + size])
                except ConnectionError:
                    self._client_gone = True

    async def pump(self, stream: asyncio.StreamReader | None, channel: int) -> None:
        """Forward one output pipe; keeps draining (and discarding) if the client left."""
        if stream is None:
            return
        while chunk := await stream.read(65536):
            await self.send(channel, chunk)

    async def read_client(self) -> None:
        """Feed stdin frames to the process and honour v5 CLOSE; returns when the client leaves."""
        async for msg in self.ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if not data:
                continue
            if data[0] == STDIN:
                await self._write_stdin(data[1:])
            elif data[0] == CLOSE and self.protocol == V5 and data[1:2] == bytes([STDIN]):
                self._close_stdin()
            # RESIZE (channel 4) frames are accepted and ignored: there is no real terminal
        self._client_gone = True
        self._close_stdin()  # websocket gone: stdin reaches EOF (the only EOF for v4)
        if self.options.kill_on_disconnect and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def _write_stdin(self, data: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            return
        stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await stdin.drain()

    def _close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def run(self, command: list[str], tty: bool) -> int | None:
        """Run to completion; returns the exit code, or None if the client went away first."""
        if self.options.initial_empty_frames:
            for ch in (STDOUT,) if tty else (STDOUT, STDERR):
                if (self.proc.stdout if ch == STDOUT else self.proc.stderr) is not None:
                    await self.send(ch, b"")
        pumps = [
            asyncio.ensure_future(self.pump(self.proc.stdout, STDOUT)),
            asyncio.ensure_future(self.pump(self.proc.stderr, STDERR)),
        ]
        reader = asyncio.ensure_future(self.read_client())
        self.waiter = waiter = asyncio.ensure_future(self._finish(pumps))
        await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            return None  # the caller keeps ``self.waiter``; the process may keep running
        reader.cancel()
        code = waiter.result()
        if not self.aborted:
            await self._send_status(command, code)
            await self.ws.close()
        return code

    async def _finish(self, pumps: list[asyncio.Task[None]]) -> int:
        """The exit code, once the process has exited and its output drained (or timed out)."""
        await self.exited
        _, pending = await asyncio.wait(pumps, timeout=self.options.io_drain_timeout)
        for task in pending:
            task.cancel()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def abort(self) -> None:
        """Drop the connection with no close handshake and no status frame."""
        self.aborted = True
        if self.transport is not None:
            self.transport.abort()

    async def _send_status(self, command: list[str], code: int) -> None:
        if not self._client_gone:
            with contextlib.suppress(ConnectionError):
                await send_status(self.ws, self.protocol, exit_status(command, code))


async def send_status(ws: web.WebSocketResponse, protocol: str, status: Obj) -> None:
    """Channel 3: a JSON Status for v4/v5; for the old v1 protocol, only a failure's text."""
    if protocol != V1:
        await ws.send_bytes(bytes([STATUS]) + json.dumps(status).encode())
    elif status["status"] != "Success":
        await ws.send_bytes(bytes([STATUS]) + status["message"].encode())
