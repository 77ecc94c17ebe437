"""In-process bus: one replica (SQLite). Listeners run on the event loop, never inline."""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from collections.abc import Callable

from rdev.ports import Listener


class InProcessBus:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def publish(self, topic: str, payload: str) -> None:
        deliver(self._listeners.get(topic, ()), payload, self._tasks)

    def subscribe(self, topic: str, listener: Listener) -> Callable[[], None]:
        self._listeners[topic].append(listener)

        def remove() -> None:
            if listener in self._listeners[topic]:
                self._listeners[topic].remove(listener)

        return remove


def deliver(
    listeners: list[Listener] | tuple[Listener, ...], payload: str, tasks: set[asyncio.Task[None]]
) -> None:
    """Call each listener; awaitable results are run as tasks kept alive in `tasks`."""
    for listener in list(listeners):
        result = listener(payload)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
