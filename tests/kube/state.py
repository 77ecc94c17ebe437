"""Versioned object storage with a bounded event history, the heart of list and watch.

Every mutation bumps one global ``resourceVersion`` (like etcd's revision) and is recorded so
watches can resume from any retained version; versions older than the history are "expired"
and a resuming watch gets 410 Gone, exactly the case clients must handle by relisting.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .objects import Obj

DROP = "DROP"  # queued to a watcher to make its stream drop the connection


@dataclass(frozen=True)
class Event:
    """One change: ``old`` is the prior state (MODIFIED only), ``new`` the resulting state."""

    rv: int
    type: str
    resource: str
    namespace: str
    new: Obj
    old: Obj | None = None


@dataclass(eq=False)
class Watcher:
    resource: str
    namespace: str | None
    queue: asyncio.Queue[Event | str] = field(default_factory=asyncio.Queue)

    def wants(self, event: Event) -> bool:
        if event.resource != self.resource:
            return False
        return self.namespace is None or event.namespace == self.namespace


class Expired(Exception):
    """The requested resourceVersion is older than the retained history (HTTP 410)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")


class Store:
    """Objects keyed by resource, namespace and name, plus history and live watchers."""

    def __init__(self, history_limit: int = 1000) -> None:
        self.rv = 1
        self.compacted_rv = 1  # a watch may resume from any rv >= this
        self.history: deque[Event] = deque(maxlen=history_limit)
        self.watchers: set[Watcher] = set()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.namespaces: set[str] = {"default", "kube-system"}  # implicit: created on first use
        self.on_watchers_changed: Callable[[], None] = lambda: None

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(resource, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None) -> list[Obj]:
        items = self._objects.get(resource, {})
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [copy.deepcopy(items[k]) for k in keys]

    def put(self, resource: str, obj: Obj) -> Obj:
        """Create or replace ``obj``; emits ADDED or MODIFIED and returns the stored copy."""
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self._objects.setdefault(resource, {}).get(key)
        new = copy.deepcopy(obj)
        self.namespaces.add(key[0])
        self._emit(resource, "MODIFIED" if old else "ADDED", new, old)
        self._objects[resource][key] = new
        return copy.deepcopy(new)

    def remove(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(resource, {}).pop((namespace, name), None)
        if obj is not None:
            self._emit(resource, "DELETED", copy.deepcopy(obj), None)
        return obj

    def _emit(self, resource: str, kind: str, new: Obj, old: Obj | None) -> None:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        event = Event(self.rv, kind, resource, new["metadata"]["namespace"], new, old)
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        self.history.append(event)
        for watcher in self.watchers:
            if watcher.wants(event):
                watcher.queue.put_nowait(event)

    def subscribe(self, resource: str, namespace: str | None, since: int | None) -> Watcher:
        """Register a watcher pre-loaded with what it missed since ``since``.

        ``since=None`` means "start now": synthetic ADDED events for current objects, which is
        what real servers do for an unset or "0" resourceVersion.
        """
        if since is not None and since < self.compacted_rv:
            raise Expired(since, self.compacted_rv)
        watcher = Watcher(resource, namespace)
        if since is None:
            for obj in self.list(resource, namespace):
                rv = int(obj["metadata"]["resourceVersion"])
                ns = obj["metadata"]["namespace"]
                watcher.queue.put_nowait(Event(rv, "ADDED", resource, ns, obj))
        else:
            for event in self.history:
                if event.rv > since and watcher.wants(event):
                    watcher.queue.put_nowait(event)
        self.watchers.add(watcher)
        self.on_watchers_changed()
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        self.on_watchers_changed()

    def expire_history(self) -> None:
        """Advance the revision (as if elsewhere in the cluster) and compact all history."""
        self.rv += 1
        self.compacted_rv = self.rv
        self.history.clear()

    def drop_watchers(self) -> int:
        for watcher in self.watchers:
            watcher.queue.put_nowait(DROP)
        return len(self.watchers)
