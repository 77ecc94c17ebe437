"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for timing rdev's start path.

Hand-written for a measured reason: httpx's own work per request (building the request,
anyio locks and checkpoints in httpcore's pool, h11) runs before the first byte leaves, and
after the 20 ms pauses bench.latency leaves between runs it costs milliseconds on a small VM
(2.6 ms from the pool to the socket write for one POST; an anyio lock 131 us cold against
5 us warm), all of it counted as rdev's. This client does one write per request and one
parse per response, so what is timed is the server. It speaks only what the benchmark needs:
a Content-Length request, a Content-Length or chunked response, and no redirects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class RawHttpError(Exception):
    pass


class RawConnection:
    """One keep-alive connection; requests on it run one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def head(self) -> tuple[int, dict[str, str]]:
        """The status and headers (lower-cased names) of the next response."""
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise RawHttpError(f"bad status line {status_line!r}")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self._reader.readexactly(int(headers["content-length"]))
        return b"".join([chunk async for chunk in self.chunks(headers)])

    async def chunks(self, headers: dict[str, str]) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (chunked transfer encoding), to its last."""
        if headers.get("transfer-encoding") != "chunked":
            raise RawHttpError(f"expected a chunked body, got {headers}")
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")  # no trailers
                return
            chunk = await self._reader.readexactly(size + 2)
            yield chunk[:-2]

    async def json(
        self, method: str, path: str, headers: dict[str, str], payload: Any = None
    ) -> tuple[int, Any]:
        body = b"" if payload is None else json.dumps(payload).encode()
        extra = {"Content-Type": "application/json"} if payload is not None else {}
        self.send(method, path, headers | extra, body)
        status, got = await self.head()
        return status, json.loads(await self.body(got) or b"null")
