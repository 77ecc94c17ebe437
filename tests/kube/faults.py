"""Fault injection and the request log, so tests can break the server on purpose.

Clients must survive 5xx answers, slow answers, expired watch history, dropped watch
connections and an API server that is down altogether; these switches produce each case on
demand, and the request log lets tests assert how the client reacted (e.g. that it relisted).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .objects import truthy
from .state import Store


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; ``query`` keeps repeated keys in order."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...] = ()

    def param(self, key: str) -> str | None:
        return next((v for k, v in self.query if k == key), None)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def watch(self) -> bool:
        return truthy(self.param("watch"))


@dataclass
class Rule:
    """Applies to the next ``remaining`` matching requests."""

    remaining: int
    status: int | None = None
    delay: float = 0.0
    path: re.Pattern[str] | None = None
    method: str | None = None
    watch: bool | None = None

    def matches(self, rec: RequestRecord) -> bool:
        if self.remaining <= 0:
            return False
        if self.path is not None and not self.path.search(rec.path):
            return False
        if self.method is not None and rec.method != self.method.upper():
            return False
        return self.watch is None or rec.watch == self.watch


@dataclass
class Action:
    """What the middleware must do for a request: wait, then maybe fail."""

    delay: float = 0.0
    status: int | None = None


@dataclass
class Faults:
    """Switches tests flip to make the fake API server misbehave."""

    store: Store
    drop_connections: Callable[[], int]
    forbid_exec: bool = False
    down: str | None = None  # None (up), "503" or "reset"
    rules: list[Rule] = field(default_factory=list)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        path: str | None = None,
        method: str | None = None,
        watch: bool | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` and a Status body.

        ``path`` is a regular expression searched in the URL path.
        """
        self.rules.append(Rule(n, status=status, path=_compile(path), method=method, watch=watch))

    def delay_next(
        self,
        n: int = 1,
        seconds: float = 1.0,
        *,
        path: str | None = None,
        method: str | None = None,
        watch: bool | None = None,
    ) -> None:
        """Hold the next ``n`` matching requests for ``seconds`` before serving them."""
        rule = Rule(n, delay=seconds, path=_compile(path), method=method, watch=watch)
        self.rules.append(rule)

    def expire_history(self) -> None:
        """Compact history: any watch resuming from an already issued version gets 410."""
        self.store.expire_history()

    def drop_watches(self) -> int:
        """Abruptly cut every open watch stream; returns how many were cut."""
        return self.store.drop_watchers()

    def set_down(self, mode: str = "503") -> None:
        """Fail every request (503 Status, or "reset": close the connection) until set_up()."""
        if mode not in ("503", "reset"):
            raise ValueError(f"unknown down mode {mode!r}")
        self.down = mode
        self.drop_connections()

    def set_up(self) -> None:
        self.down = None

    def clear(self) -> None:
        self.rules.clear()
        self.forbid_exec = False
        self.down = None

    def take(self, rec: RequestRecord) -> Action:
        """Consume the rules matching ``rec`` and combine them into one action."""
        action = Action()
        for rule in self.rules:
            if rule.matches(rec):
                rule.remaining -= 1
                action.delay += rule.delay
                action.status = action.status or rule.status
        self.rules = [r for r in self.rules if r.remaining > 0]
        return action


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None


class RequestLog:
    """Every request received, with a way to await one matching a predicate."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self._changed = asyncio.Event()

    def add(self, rec: RequestRecord) -> None:
        self.records.append(rec)
        self._changed.set()

    def matching(self, predicate: Callable[[RequestRecord], bool]) -> list[RequestRecord]:
        return [r for r in self.records if predicate(r)]

    async def wait_for(
        self, predicate: Callable[[RequestRecord], bool], *, count: int = 1, within: float = 10
    ) -> list[RequestRecord]:
        """Wait until at least ``count`` logged requests satisfy ``predicate``."""
        async with asyncio.timeout(within):
            while len(found := self.matching(predicate)) < count:
                self._changed.clear()
                await self._changed.wait()
        return found
