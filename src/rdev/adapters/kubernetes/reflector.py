"""List-then-watch for one resource, keeping its objects in memory.

Reads never touch the API: list_projects() serves from here. A watch resumes from the last
resourceVersion it saw (bookmarks keep that fresh); 410 Gone (an ERROR event or an HTTP 410)
means the history is gone, so it relists. Connection errors and 5xx back off exponentially with
jitter and retry forever; `healthy` says whether the last list/watch worked, for /ready.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from rdev.adapters.kubernetes.breaker import ApiBreaker
from rdev.domain.errors import BackendUnavailable

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
Request = Callable[..., Awaitable[Any]]
GONE = 410


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential, capped, with jitter so replicas do not retry in step."""
    return float(min(cap, base * 2.0 ** min(attempt, 30)) * random.uniform(0.5, 1.0))


def apply_event(items: dict[str, Obj], event: Obj) -> tuple[str | None, bool]:
    """Apply one watch event; returns (new resourceVersion or None, whether items changed).

    Raises LookupError for 410 Gone and BackendUnavailable for any other ERROR event.
    """
    kind = event.get("type")
    obj = event.get("object") or {}
    if kind == "ERROR":
        if obj.get("code") == GONE:
            raise LookupError("watch history expired")
        raise BackendUnavailable(f"watch error: {obj.get('message', obj)}")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if kind in ("ADDED", "MODIFIED") and name:
        items[name] = obj
    elif kind == "DELETED" and name:
        items.pop(name, None)
    else:
        return meta.get("resourceVersion"), False
    return meta.get("resourceVersion"), True


class Reflector:
    def __init__(
        self,
        name: str,
        request: Request,
        breaker: ApiBreaker,
        *,
        on_change: Callable[[], None],
        backoff: tuple[float, float],
        watch_seconds: int,
    ) -> None:
        self.name = name
        self.items: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.healthy = False
        self.error: str | None = "not listed yet"
        self._request = request
        self._breaker = breaker
        self._on_change = on_change
        self._backoff = backoff
        self._watch_seconds = watch_seconds
        self._rv: str | None = None
        self._failures = 0

    async def run(self) -> None:
        while True:
            try:
                if self._rv is None:
                    await self._list()
                await self._watch()
            except BackendUnavailable as e:
                log.warning("kubernetes.watch_failed", resource=self.name, error=e.message)
                await self._pause(e.message)
            except Exception as e:  # a malformed object must not end the watch for good
                log.exception("kubernetes.watch_crashed", resource=self.name)
                self._rv = None
                await self._pause(f"unexpected {type(e).__name__}")

    async def _pause(self, error: str) -> None:
        self.healthy, self.error = False, error
        delay = backoff_delay(self._failures, base=self._backoff[0], cap=self._backoff[1])
        self._failures += 1
        await asyncio.sleep(delay)

    async def _call(self, **params: Any) -> Any:
        """One request through the breaker; returns the raw response (status unchecked)."""
        async with self._breaker.guard():
            try:
                resp = await self._request(_preload_content=False, **params)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise BackendUnavailable(f"cannot reach the Kubernetes API: {e}") from e
            if resp.status not in (200, GONE):
                resp.close()
                raise BackendUnavailable(
                    f"listing {self.name} answered HTTP {resp.status}",
                    details={"status": resp.status},
                )
        return resp

    async def _list(self) -> None:
        resp = await self._call(_request_timeout=aiohttp.ClientTimeout(total=30))
        try:
            doc = json.loads(await resp.read()) if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise BackendUnavailable(f"listing {self.name} failed: {e}") from e
        finally:
            resp.close()
        if not isinstance(doc, dict):
            raise BackendUnavailable(f"listing {self.name} gave no list")
        self.items = {o["metadata"]["name"]: o for o in doc.get("items") or [] if o.get("metadata")}
        self._rv = (doc.get("metadata") or {}).get("resourceVersion")
        self._healthy()
        self.synced.set()
        self._on_change()

    async def _watch(self) -> None:
        """One watch request: returns when it ends normally or on 410 (then relist)."""
        resp = await self._call(
            watch=True,
            resource_version=self._rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_seconds,
            _request_timeout=aiohttp.ClientTimeout(
                sock_connect=10, sock_read=self._watch_seconds + 30
            ),
        )
        try:
            if resp.status == GONE:
                self._rv = None
                return
            self._healthy()
            async for line in resp.content:
                if line.strip() and not self._apply(json.loads(line)):
                    return
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise BackendUnavailable(f"watch of {self.name} broke: {type(e).__name__}") from e
        finally:
            resp.close()

    def _apply(self, event: Obj) -> bool:
        try:
            rv, changed = apply_event(self.items, event)
        except LookupError:
            log.info("kubernetes.watch_expired", resource=self.name)
            self._rv = None
            return False
        self._rv = rv or self._rv
        if changed:
            self._on_change()
        return True

    def _healthy(self) -> None:
        self.healthy, self.error, self._failures = True, None, 0
