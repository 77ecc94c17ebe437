"""The PostgreSQL bus against a real server: notifications reach another replica's listener,
all of them and in order, and publishing never waits for the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from rdev.adapters.bus.postgres import PostgresBus
from tests.support import eventually


def _dsn(pg_url: str) -> str:
    return "postgresql://" + pg_url.split("://", 1)[1]


@pytest.fixture
async def buses(pg_url: str) -> AsyncIterator[tuple[PostgresBus, PostgresBus]]:
    """Two replicas' buses; start() returns once each is listening."""
    sender = PostgresBus(_dsn(pg_url), ("events", "queue"))
    receiver = PostgresBus(_dsn(pg_url), ("events", "queue"))
    await sender.start()
    await receiver.start()
    try:
        yield sender, receiver
    finally:
        await sender.close()
        await receiver.close()


async def test_every_notification_arrives_in_order(buses: tuple[PostgresBus, PostgresBus]) -> None:
    sender, receiver = buses
    got: dict[str, list[str]] = {"events": [], "queue": []}
    receiver.subscribe("events", got["events"].append)
    receiver.subscribe("queue", got["queue"].append)
    for n in range(1, 501):
        await sender.publish("events", f"r1 cmd_a {n}")
        if n % 100 == 0:
            await sender.publish("queue", str(n))
    await eventually(lambda: len(got["events"]) == 500, timeout=20)
    assert got["events"] == [f"r1 cmd_a {n}" for n in range(1, 501)]
    await eventually(lambda: len(got["queue"]) == 5)
    assert got["queue"] == ["100", "200", "300", "400", "500"]


class PausableLink:
    """A TCP relay to PostgreSQL that can stop passing bytes on: a slow or stalled network."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        for a, b in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(a, b))
            self.tasks.add(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        self.flowing.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_publishing_does_not_wait_for_the_server(pg_url: str) -> None:
    """The sender's link to the server stalls: the publisher (an event writer, say) goes on
    anyway, and what it published arrives, in order, once the link flows again."""
    dsn = _dsn(pg_url)
    where = urlsplit(dsn)
    link = PausableLink(where.hostname or "127.0.0.1", where.port or 5432)
    port = await link.start()
    sender = PostgresBus(dsn.replace(f"{where.hostname}:{where.port}", f"127.0.0.1:{port}"), ())
    receiver = PostgresBus(dsn, ("events",))
    await receiver.start()
    got: list[str] = []
    receiver.subscribe("events", got.append)
    try:
        await sender.publish("events", "r1 cmd_b 0")  # the sender's connection is open
        await eventually(lambda: got == ["r1 cmd_b 0"])
        link.flowing.clear()
        for n in range(1, 4):
            await asyncio.wait_for(sender.publish("events", f"r1 cmd_b {n}"), timeout=2)
        link.flowing.set()
        await eventually(lambda: len(got) == 4)
        assert got == [f"r1 cmd_b {n}" for n in range(4)]
    finally:
        await sender.close()
        await receiver.close()
        await link.close()
