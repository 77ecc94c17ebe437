"""Request limits with the `limits` library: per key (RATE_LIMIT_RPS), failed authentication
per client IP and per real key id, and audit entries about refusals per key and reason.

The failure throttle hits attackers, not users. It is consulted only once a presented key has
failed: a valid key is never refused for what others did from the same address (one office
behind one NAT, one bad script), and the honest hot path never touches it. A failure counts
against the client IP, and — when the key id exists but the secret is wrong — against that key
id too, from wherever it comes; unknown ids get no count of their own (nothing to protect, and
an attacker could make them without end). Over either budget the failure is answered 429 with
Retry-After instead of 401.

Counts live in memory on one replica, in Redis (RDEV_REDIS_URL, under RDEV_REDIS_KEY_PREFIX)
when replicas share them. When Redis cannot be reached the counts go on in memory — a warning
is logged once per outage and Redis is tried again after `redis_retry_seconds` — so Redis going
away weakens sharing between replicas, never availability."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from rdev.domain.errors import RateLimited

log = structlog.get_logger(__name__)

_REDIS_TIMEOUT = 1.0  # seconds to connect to or hear from Redis before counting in memory
_STORAGE_ERRORS = (StorageError, OSError, TimeoutError)


class _Counter:
    """A sliding-window limiter on Redis, with one in memory standing in while Redis is down."""

    def __init__(
        self, redis_url: str, key_prefix: str, retry_seconds: float, monotonic: Callable[[], float]
    ) -> None:
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis: SlidingWindowCounterRateLimiter | None = None
        self._pool: Any = None
        if redis_url:
            self._redis, self._pool = _redis_limiter(redis_url, key_prefix)
        self._retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._down_until: float | None = None  # while set, Redis is down: count in memory

    async def hit(self, item: RateLimitItem, *ids: str) -> bool:
        limiter = self._live()
        if limiter is not None:
            try:
                return await limiter.hit(item, *ids)
            except _STORAGE_ERRORS as e:
                self._went_down(e)
        return await self._memory.hit(item, *ids)

    async def reset_in(self, item: RateLimitItem, *ids: str) -> float:
        """Seconds until `ids` may try again under `item` (at least one)."""
        limiter = self._live() or self._memory
        try:
            stats = await limiter.get_window_stats(item, *ids)
        except _STORAGE_ERRORS as e:
            self._went_down(e)
            stats = await self._memory.get_window_stats(item, *ids)
        return max(1.0, stats.reset_time - time.time())

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    def _live(self) -> SlidingWindowCounterRateLimiter | None:
        if self._redis is None:
            return None
        if self._down_until is not None:
            if self._monotonic() < self._down_until:
                return None
            self._down_until = None  # try Redis again; back to memory at the next error
            log.info("ratelimit.redis_retry")
        return self._redis

    def _went_down(self, error: BaseException) -> None:
        self._down_until = self._monotonic() + self._retry_seconds
        log.warning(
            "ratelimit.redis_unavailable",
            error=f"{type(error).__name__}: {error}"[:200],
            retry_seconds=self._retry_seconds,
            detail="counting in memory on this replica until Redis answers again",
        )


def _redis_limiter(url: str, key_prefix: str) -> tuple[SlidingWindowCounterRateLimiter, Any]:
    """The limiter on Redis through redis-py's asyncio client, failing fast: no client retries
    and short timeouts, so a Redis outage costs a request at most `_REDIS_TIMEOUT` once per
    retry period. Imported here: a replica without Redis does not load the client."""
    from limits.aio.storage import RedisStorage
    from redis.asyncio import ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "socket_connect_timeout": _REDIS_TIMEOUT,
        "socket_timeout": _REDIS_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    pool = ConnectionPool.from_url(url, **options)
    storage: Storage = RedisStorage(
        "async+" + url,
        implementation="redispy",
        key_prefix=key_prefix,
        wrap_exceptions=True,
        connection_pool=pool,  # type: ignore[arg-type]  # passed on to redis-py
        retry=options["retry"],
    )
    return SlidingWindowCounterRateLimiter(storage), pool


class Limits:
    def __init__(
        self,
        *,
        rps: float,
        auth_failures_per_minute: int,
        redis_url: str = "",
        redis_key_prefix: str = "rdev",
        redis_retry_seconds: float = 30.0,
        refusal_entries_per_minute: int = 10,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = _Counter(redis_url, redis_key_prefix, redis_retry_seconds, monotonic)
        # RATE_LIMIT_RPS on average over a sliding ten-second window
        self._per_key = RateLimitItemPerSecond(max(1, round(rps * 10)), 10)
        self._auth = RateLimitItemPerMinute(auth_failures_per_minute)
        self._refusals = RateLimitItemPerMinute(refusal_entries_per_minute)

    async def check_key(self, key_id: str) -> None:
        if not await self._counter.hit(self._per_key, "key", key_id):
            raise RateLimited(
                "rate limit exceeded",
                retry_after=await self._counter.reset_in(self._per_key, "key", key_id),
            )

    async def auth_failed(self, client_ip: str, *, real_key_id: str | None = None) -> float | None:
        """Count one failed authentication from `client_ip` (and against `real_key_id`, a key
        that exists but was presented with the wrong secret). Seconds to wait when either is
        over its budget, else None."""
        counts = [("authfail", client_ip)]
        if real_key_id is not None:
            counts.append(("authfail-key", real_key_id))
        over = [c for c in counts if not await self._counter.hit(self._auth, *c)]
        if not over:
            return None
        return max([await self._counter.reset_in(self._auth, *c) for c in over])

    async def refusal_entry_allowed(self, *ids: str) -> bool:
        """Whether one more audit entry about a refusal by `ids` (key, action, reason) fits in
        this minute's allowance."""
        return await self._counter.hit(self._refusals, "refusal", *ids)

    async def close(self) -> None:
        await self._counter.close()
