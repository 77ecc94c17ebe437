"""Chunked watch streams: replay, live events, bookmarks, timeouts, 410 and dropped links.

A watch is a long-lived 200 response of newline-delimited JSON events. Clients resume from
the last resourceVersion they saw, so replay from history, selector transitions (an object
leaving a selection is a DELETED for that watcher) and bookmarks all follow the real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from .objects import Obj, status_doc
from .state import DROP, Event, Expired, Store, Watcher

KINDS = {"pods": "Pod", "configmaps": "ConfigMap"}


@dataclass(frozen=True)
class WatchParams:
    resource: str
    namespace: str | None
    since: int | None
    matches: Callable[[Obj], bool]
    bookmarks: bool
    timeout: float | None


def translate(event: Event, matches: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    """The event a watcher with this selector sees, or None if it sees nothing."""
    now_in = matches(event.new)
    if event.type != "MODIFIED" or event.old is None:
        return (event.type, event.new) if now_in else None
    was_in = matches(event.old)
    if was_in and now_in:
        return ("MODIFIED", event.new)
    if now_in:
        return ("ADDED", event.new)
    return ("DELETED", event.new) if was_in else None


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def _open(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


class WatchStream:
    """Serves one watch request until timeout, client disconnect or an injected drop."""

    def __init__(self, store: Store, params: WatchParams, bookmark_interval: float) -> None:
        self.store = store
        self.params = params
        self.bookmark_interval = bookmark_interval

    async def serve(self, request: web.Request) -> web.StreamResponse:
        p = self.params
        try:
            watcher = self.store.subscribe(p.resource, p.namespace, p.since)
        except Expired as exc:
            resp = await _open(request)
            await resp.write(_line("ERROR", status_doc(410, "Expired", str(exc))))
            await resp.write_eof()
            return resp
        try:
            resp = await _open(request)
            if await self._pump(resp, watcher):
                await resp.write_eof()
            elif request.transport is not None:  # None: the client already went away
                request.transport.abort()
        finally:
            self.store.unsubscribe(watcher)
        return resp

    def _bookmark(self) -> bytes:
        kind = KINDS[self.params.resource]
        obj = {
            "kind": kind,
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.store.rv)},
        }
        return _line("BOOKMARK", obj)

    async def _pump(self, resp: web.StreamResponse, watcher: Watcher) -> bool:
        """Stream events; True when the watch ended normally, False when it must be dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.params.timeout if self.params.timeout else None
        while True:
            waits = [self.bookmark_interval] if self.params.bookmarks else []
            if deadline is not None:
                waits.append(deadline - loop.time())
            try:
                async with asyncio.timeout(min(waits) if waits else None):
                    item = await watcher.queue.get()
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    return True
                if watcher.queue.empty():
                    await resp.write(self._bookmark())
                continue
            if item == DROP:
                return False
            assert isinstance(item, Event)
            seen = translate(item, self.params.matches)
            if seen is not None:
                await resp.write(_line(*seen))
