"""One open exec websocket, read incrementally: output frames become OutputChunks as they
arrive (bounded queue, so a slow reader slows the pod rather than growing memory), and the
status frame, or its absence when the connection dies, becomes the Outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from rdev.adapters.kubernetes.protocol import (
    STATUS,
    STDERR,
    STDOUT,
    Lost,
    Outcome,
    parse_status,
    split_frame,
    stdin_frames,
)
from rdev.ports import OutputChunk, StreamName

_QUEUE_SIZE = 64
_END = None


@dataclass(frozen=True, slots=True)
class Completed:
    stdout: bytes
    stderr: bytes
    outcome: Outcome


class ExecChannel:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.protocol = ws.protocol or ""
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue(maxsize=_QUEUE_SIZE)
        self._late_end: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read())

    @property
    def done(self) -> bool:
        return self._reader.done()

    async def send_stdin(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            for frame in stdin_frames(data, protocol=self.protocol):
                await self._ws.send_bytes(frame)

    async def output(self) -> AsyncIterator[OutputChunk]:
        while (chunk := await self._queue.get()) is not _END:
            yield chunk

    async def outcome(self) -> Outcome:
        return await asyncio.shield(self._reader)

    async def ended_within(self, seconds: float) -> bool:
        done, _ = await asyncio.wait({self._reader}, timeout=max(seconds, 0))
        return bool(done)

    async def abort(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()

    async def collect(self) -> Completed:
        """Drain both streams to the end (for short helper execs)."""
        out, err = bytearray(), bytearray()
        async for chunk in self.output():
            (out if chunk.stream == "stdout" else err).extend(chunk.data)
        return Completed(bytes(out), bytes(err), await self.outcome())

    async def _read(self) -> Outcome:
        status = bytearray()
        seen_status = False
        problem = "the exec connection closed without an exit status"
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    if msg.type is aiohttp.WSMsgType.ERROR:
                        problem = f"the exec connection failed: {msg.data!r}"
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        continue
                    break
                frame = split_frame(msg.data)
                if frame is None:
                    continue
                channel, payload = frame
                if channel == STATUS:
                    status += payload
                    seen_status = True
                elif channel in (STDOUT, STDERR) and payload:
                    name: StreamName = "stdout" if channel == STDOUT else "stderr"
                    await self._queue.put(OutputChunk(name, payload))
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as e:
            problem = f"the exec connection failed: {e}"
        finally:
            await self._finish_stream()
        return parse_status(bytes(status)) if seen_status else Lost(problem)

    async def _finish_stream(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        try:
            self._queue.put_nowait(_END)
        except asyncio.QueueFull:
            # Nobody is draining right now; hand the end marker over when there is room.
            self._late_end = asyncio.get_running_loop().create_task(self._queue.put(_END))
