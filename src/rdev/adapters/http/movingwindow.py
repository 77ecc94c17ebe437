"""The per-key moving window in memory (one replica, or while Redis is away): at most `quota`
requests in any `window` seconds, a deque of monotonic timestamps per key.

Hand-written rather than `limits`' MemoryStorage moving window, which prepends to a list (O(q)
per request: 100,000 entries at the benchmark's RATE_LIMIT_RPS) under an asyncio lock and needs a
second locked call for what the RateLimit headers announce; that cost +12 µs CPU of ~60 per
authenticated request (P4, `make bench`). Here one call, O(1) amortised, answers both. The
shared window on Redis stays `limits`' (its Lua scripts keep it atomic across replicas)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class MovingWindows:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._monotonic = monotonic

    def take(self, key: str, quota: int, window: float) -> tuple[bool, float, int]:
        """Count one request by `key` if it fits: (allowed, seconds until the window frees a
        request, requests left)."""
        now = self._monotonic()
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        cutoff = now - window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        allowed = len(hits) < quota
        if allowed:
            hits.append(now)
        while len(hits) > quota:  # the key's quota went down (a new rate_limit_rps)
            hits.popleft()
        return allowed, hits[0] + window - now, quota - len(hits)
