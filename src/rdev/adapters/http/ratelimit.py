"""Request limits with the `limits` library: per key (RATE_LIMIT_RPS), per client IP for
failed authentication, and per key and reason for audit entries about refusals. In memory on
one replica; Redis when RDEV_REDIS_URL is set."""

from __future__ import annotations

import time

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from rdev.domain.errors import RateLimited

_WINDOW = 60.0  # seconds: the failed-authentication window
_MAX_TRACKED = 10_000


class Limits:
    def __init__(
        self,
        *,
        rps: float,
        auth_failures_per_minute: int,
        redis_url: str = "",
        refusal_entries_per_minute: int = 10,
    ) -> None:
        self._storage: Storage = (
            storage_from_string(redis_url.replace("redis://", "async+redis://", 1))  # type: ignore[assignment]
            if redis_url
            else MemoryStorage()
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        # RATE_LIMIT_RPS on average over a sliding ten-second window
        self._per_key = RateLimitItemPerSecond(max(1, round(rps * 10)), 10)
        self._auth = RateLimitItemPerMinute(auth_failures_per_minute)
        self._refusals = RateLimitItemPerMinute(refusal_entries_per_minute)
        self._failed_at: dict[str, float] = {}  # client IP -> last failure seen here

    async def check_key(self, key_id: str) -> None:
        if not await self._limiter.hit(self._per_key, "key", key_id):
            raise RateLimited(
                "rate limit exceeded", retry_after=await self._reset(self._per_key, "key", key_id)
            )

    async def auth_blocked(self, client_ip: str) -> float | None:
        """Seconds to wait when this IP has failed too often, else None. IPs that have not
        failed here lately skip the limiter: the common, honest request pays nothing."""
        if self._failed_at.get(client_ip, -_WINDOW) < time.monotonic() - _WINDOW:
            self._failed_at.pop(client_ip, None)
            return None
        if await self._limiter.test(self._auth, "authfail", client_ip):
            return None
        return await self._reset(self._auth, "authfail", client_ip)

    async def auth_failed(self, client_ip: str) -> None:
        now = time.monotonic()
        if len(self._failed_at) >= _MAX_TRACKED:  # many distinct IPs: forget the stale ones
            self._failed_at = {ip: t for ip, t in self._failed_at.items() if t > now - _WINDOW}
        self._failed_at[client_ip] = now
        await self._limiter.hit(self._auth, "authfail", client_ip)

    async def refusal_entry_allowed(self, *ids: str) -> bool:
        """Whether one more audit entry about a refusal by `ids` (key, action, reason) fits in
        this minute's allowance."""
        return await self._limiter.hit(self._refusals, "refusal", *ids)

    async def _reset(
        self, item: RateLimitItemPerSecond | RateLimitItemPerMinute, *ids: str
    ) -> float:
        stats = await self._limiter.get_window_stats(item, *ids)
        return max(1.0, stats.reset_time - time.time())
