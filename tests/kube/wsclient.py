"""A minimal raw exec client, so tests control subprotocols and see every frame exactly.

``kubernetes_asyncio``'s ``WsApiClient`` hides frames and always offers v4; tests of the
protocol itself (v5 CLOSE, split frames, status frames, abrupt closes) use this instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"


def exec_url(
    base: str, pod: str, command: Sequence[str], namespace: str = "default", **flags: str
) -> str:
    params = [("command", c) for c in command]
    params += [("stdout", "true"), ("stderr", "true"), *flags.items()]
    return f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(params)}"


@dataclass
class ExecStream:
    """Frames received so far on one exec websocket, as (channel, payload) pairs."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    closed_with: aiohttp.WSMsgType | None = None

    def data(self, channel: int) -> bytes:
        return b"".join(p for ch, p in self.frames if ch == channel)

    @property
    def stdout(self) -> str:
        return self.data(1).decode()

    @property
    def stderr(self) -> str:
        return self.data(2).decode()

    @property
    def status(self) -> dict[str, Any] | None:
        raw = self.data(3)
        return json.loads(raw) if raw else None

    async def send(self, channel: int, payload: bytes = b"") -> None:
        await self.ws.send_bytes(bytes([channel]) + payload)

    async def read_until(self, done: Callable[[ExecStream], bool]) -> None:
        """Read frames until ``done(self)`` or the socket closes."""
        while not done(self) and self.closed_with is None:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append((msg.data[0], msg.data[1:]))
            else:
                self.closed_with = msg.type

    async def finish(self) -> ExecStream:
        await self.read_until(lambda _: False)
        return self


async def open_exec(
    session: aiohttp.ClientSession,
    url: str,
    token: str | None,
    protocols: Sequence[str] = (V5,),
) -> ExecStream:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await session.ws_connect(url, protocols=tuple(protocols), headers=headers)
    return ExecStream(ws)
