"""PostgreSQL LISTEN/NOTIFY bus: wakes readers and dispatchers on other replicas.

Notifications can be missed while the listening connection is down; after every reconnect each
listener gets the payload "*" so it re-reads durable state.

`publish` does not wait for the server: a notification is a hint to re-read state that is
already durable, and awaiting its round trip held up every batch an event writer stored. One
sender task sends everything queued meanwhile in one statement, in order; past `_OUTBOX_MAX`
queued (the server away) the oldest are dropped, as a failed send drops them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

import psycopg
import structlog

from rdev.adapters.bus.memory import deliver
from rdev.ports import Listener

log = structlog.get_logger(__name__)
RESYNC = "*"
_OUTBOX_MAX = 10_000


def _channel(topic: str) -> str:
    return f"rdev_{topic}"


class PostgresBus:
    def __init__(self, dsn: str, topics: tuple[str, ...]) -> None:
        self._dsn = dsn
        self._topics = topics
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()
        self._listen_task: asyncio.Task[None] | None = None
        self._send: psycopg.AsyncConnection[object] | None = None
        self._outbox: list[tuple[str, str]] = []
        self._sender: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._listen_task = asyncio.create_task(self._listen_forever(), name="pg-bus-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=5)

    async def close(self) -> None:
        if self._listen_task:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
        if self._sender is not None:  # what is queued goes out, within a second
            await asyncio.wait({self._sender}, timeout=1)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await self._sender
        if self._send is not None:
            await self._send.close()
        for task in list(self._tasks):
            task.cancel()

    async def publish(self, topic: str, payload: str) -> None:
        """Queue the notification; it is sent soon after, in order, without being awaited."""
        self._outbox.append((_channel(topic), payload))
        if len(self._outbox) > _OUTBOX_MAX:
            del self._outbox[: len(self._outbox) - _OUTBOX_MAX]
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name="pg-bus-send")

    async def _send_queued(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            await self._send_batch(batch)

    async def _send_batch(self, batch: list[tuple[str, str]]) -> None:
        query = "SELECT " + ", ".join(["pg_notify(%s, %s)"] * len(batch))
        params = [value for pair in batch for value in pair]
        for attempt in range(2):
            try:
                if self._send is None or self._send.closed:
                    self._send = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                await self._send.execute(query, params)
                return
            except psycopg.OperationalError:
                self._send = None
                if attempt:
                    log.warning("bus.publish_failed", notifications=len(batch))

    def subscribe(self, topic: str, listener: Listener) -> Callable[[], None]:
        self._listeners[topic].append(listener)

        def remove() -> None:
            if listener in self._listeners[topic]:
                self._listeners[topic].remove(listener)

        return remove

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen_once()
            except (psycopg.OperationalError, OSError) as e:
                self._connected.clear()
                log.warning("bus.listen_lost", error=type(e).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            for topic in self._topics:
                await conn.execute(f'LISTEN "{_channel(topic)}"')
            self._connected.set()
            for topic in self._topics:  # anything sent while we were away is re-read
                deliver(self._listeners.get(topic, []), RESYNC, self._tasks)
            by_channel = {_channel(t): t for t in self._topics}
            async for note in conn.notifies():
                topic = by_channel.get(note.channel) or ""
                if topic is not None:
                    deliver(self._listeners.get(topic, []), note.payload, self._tasks)
