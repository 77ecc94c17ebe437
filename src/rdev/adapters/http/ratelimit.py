"""Request limits with the `limits` library: per key (RATE_LIMIT_RPS with a burst, or the
key's own `rate_limit_rps`), failed authentication per client IP and per real key id, and audit
entries about refusals per key and reason.

The per-key limit is a moving window: at most `q` requests in any `w` seconds, where
`w = RDEV_RATE_LIMIT_BURST / RATE_LIMIT_RPS` (whole seconds, at least one, and long enough for
one request at a key's own rate) and `q = rps * w`. A moving window rather than a sliding-window
counter because it is exact — a burst never exceeds `q`, on one replica or many, so the budget
the headers announce is the budget enforced — at the cost of one timestamp per request in the
window (bounded: `q` <= rps * w, both bounded by settings and key validation). A GCRA would need
a hand-written Redis script; `limits` has none. Each authenticated response carries the policy
and what is left of it (`RateLimit-Policy: "key";q=20;w=2`, `RateLimit: "key";r=19;t=1`,
draft-ietf-httpapi-ratelimit-headers-11), and a 429 carries `Retry-After` too.

The failure throttle hits attackers, not users. It is consulted only once a presented key has
failed: a valid key is never refused for what others did from the same address (one office
behind one NAT, one bad script), and the honest hot path never touches it. A failure counts
against the client IP, and — when the key id exists but the secret is wrong — against that key
id too, from wherever it comes; unknown ids get no count of their own (nothing to protect, and
an attacker could make them without end). Over either budget the failure is answered 429 with
Retry-After instead of 401.

Counts live in memory on one replica, in Redis (RDEV_REDIS_URL, under RDEV_REDIS_KEY_PREFIX)
when replicas share them. When Redis cannot be reached the counts go on in memory — a warning
is logged once per outage (not once per failed retry) and Redis is tried again every
`redis_retry_seconds` — so Redis going away weakens sharing between replicas (each replica then
allows the whole budget), never availability, and never lifts the limit."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError

from rdev.adapters.http.movingwindow import MovingWindows
from rdev.domain.errors import RateLimited

log = structlog.get_logger(__name__)

_REDIS_TIMEOUT = 1.0  # seconds to connect to or hear from Redis before counting in memory
_STORAGE_ERRORS = (StorageError, OSError, TimeoutError)


class KeyRateLimited(RateLimited):
    """A key over its per-key limit; `quota` is what the 429's RateLimit headers announce."""

    def __init__(self, quota: KeyQuota) -> None:
        super().__init__("rate limit exceeded", retry_after=quota.reset)
        self.quota = quota


class _Counter:
    """Limiters on Redis (a moving window and a sliding-window counter on one connection pool),
    with the same in memory (the moving window: `MovingWindows`) standing in while Redis is
    down."""

    def __init__(
        self, redis_url: str, key_prefix: str, retry_seconds: float, monotonic: Callable[[], float]
    ) -> None:
        self._memory = _limiters(MemoryStorage())
        self._windows = MovingWindows(monotonic)
        self._redis: dict[type, RateLimiter] | None = None
        self._pool: Any = None
        if redis_url:
            storage, self._pool = _redis_storage(redis_url, key_prefix)
            self._redis = _limiters(storage)
        self._retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._down_until: float | None = None  # while set, Redis is down: count in memory
        self._outage = False  # from the first failure until Redis answers again

    async def hit(self, kind: type, item: RateLimitItem, *ids: str) -> bool:
        limiter = self._live(kind)
        if limiter is not None:
            try:
                allowed = await limiter.hit(item, *ids)
            except _STORAGE_ERRORS as e:
                self._went_down(e)
            else:
                self._answered()
                return allowed
        return await self._memory[kind].hit(item, *ids)

    async def take(self, item: RateLimitItem, key_id: str) -> tuple[bool, float, int]:
        """One request by `key_id` in its moving window `item`: (allowed, seconds until the
        window frees a request (at least one), requests left)."""
        limiter = self._live(MovingWindowRateLimiter)
        if limiter is not None:
            try:
                allowed = await limiter.hit(item, "key", key_id)
                stats = await limiter.get_window_stats(item, "key", key_id)
            except _STORAGE_ERRORS as e:
                self._went_down(e)
            else:
                self._answered()
                return allowed, max(1.0, stats.reset_time - time.time()), max(0, stats.remaining)
        allowed, reset, left = self._windows.take(key_id, item.amount, item.get_expiry())
        return allowed, max(1.0, reset), left

    async def reset_in(self, item: RateLimitItem, *ids: str) -> float:
        """Seconds until `ids` may try again under the sliding-window `item` (at least one)."""
        kind = SlidingWindowCounterRateLimiter
        limiter = self._live(kind) or self._memory[kind]
        try:
            stats = await limiter.get_window_stats(item, *ids)
        except _STORAGE_ERRORS as e:
            self._went_down(e)
            stats = await self._memory[kind].get_window_stats(item, *ids)
        return max(1.0, stats.reset_time - time.time())

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    def _live(self, kind: type) -> RateLimiter | None:
        if self._redis is None:
            return None
        if self._down_until is not None:
            if self._monotonic() < self._down_until:
                return None
            self._down_until = None  # try Redis again; back to memory at the next error
            log.info("ratelimit.redis_retry")
        return self._redis[kind]

    def _answered(self) -> None:
        if self._outage:
            self._outage = False
            log.info("ratelimit.redis_restored", detail="limits are shared by replicas again")

    def _went_down(self, error: BaseException) -> None:
        self._down_until = self._monotonic() + self._retry_seconds
        if self._outage:
            return  # one warning per outage, not one per failed retry
        self._outage = True
        log.warning(
            "ratelimit.redis_unavailable",
            error=f"{type(error).__name__}: {error}"[:200],
            retry_seconds=self._retry_seconds,
            detail="counting in memory on this replica until Redis answers again",
        )


def _limiters(storage: Storage) -> dict[type, RateLimiter]:
    return {
        MovingWindowRateLimiter: MovingWindowRateLimiter(storage),
        SlidingWindowCounterRateLimiter: SlidingWindowCounterRateLimiter(storage),
    }


def _redis_storage(url: str, key_prefix: str) -> tuple[Storage, Any]:
    """The storage on Redis through redis-py's asyncio client, failing fast: no client retries
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
    return storage, pool


@functools.lru_cache(maxsize=1024)
def key_item(rps: float, window: int) -> RateLimitItem:
    """The moving window for a key at `rps`: the default window, or longer when the rate is too
    low for one request in it, holding `rps * w` requests."""
    w = max(window, math.ceil(1 / rps))
    return RateLimitItemPerSecond(max(1, round(rps * w)), w)


def default_window(rps: float, burst: int) -> int:
    """Whole seconds of RATE_LIMIT_RPS that make the burst (at least one)."""
    return max(1, round(burst / rps))


@dataclass(frozen=True, slots=True)
class KeyQuota:
    """One key's per-key limit as a response announces it (draft-ietf-httpapi-ratelimit-headers):
    the policy (`q` requests per `w` seconds), the requests left and the seconds until the
    window frees one (`t`)."""

    quota: int
    window: int
    remaining: int
    reset: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-policy", b'"key";q=%d;w=%d' % (self.quota, self.window)),
            (b"ratelimit", b'"key";r=%d;t=%d' % (self.remaining, self.reset)),
        ]


class Limits:
    def __init__(
        self,
        *,
        rps: float,
        auth_failures_per_minute: int,
        burst: int | None = None,
        redis_url: str = "",
        redis_key_prefix: str = "rdev",
        redis_retry_seconds: float = 30.0,
        refusal_entries_per_minute: int = 10,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = _Counter(redis_url, redis_key_prefix, redis_retry_seconds, monotonic)
        self._rps = rps
        self._window = default_window(rps, burst if burst is not None else max(1, round(rps * 2)))
        self._auth = RateLimitItemPerMinute(auth_failures_per_minute)
        self._refusals = RateLimitItemPerMinute(refusal_entries_per_minute)

    async def check_key(self, key_id: str, rps: float | None = None) -> KeyQuota:
        """Count one request by the key (at its own `rps`, or RATE_LIMIT_RPS): what is left of
        its budget, or RateLimited (carrying that, for the headers) when it is spent."""
        item = key_item(rps or self._rps, self._window)
        allowed, reset, remaining = await self._counter.take(item, key_id)
        quota = KeyQuota(item.amount, item.multiples, remaining, math.ceil(reset))
        if not allowed:
            raise KeyRateLimited(quota)
        return quota

    async def auth_failed(self, client_ip: str, *, real_key_id: str | None = None) -> float | None:
        """Count one failed authentication from `client_ip` (and against `real_key_id`, a key
        that exists but was presented with the wrong secret). Seconds to wait when either is
        over its budget, else None."""
        counts = [("authfail", client_ip)]
        if real_key_id is not None:
            counts.append(("authfail-key", real_key_id))
        over = [
            c
            for c in counts
            if not await self._counter.hit(SlidingWindowCounterRateLimiter, self._auth, *c)
        ]
        if not over:
            return None
        return max([await self._counter.reset_in(self._auth, *c) for c in over])

    async def refusal_entry_allowed(self, *ids: str) -> bool:
        """Whether one more audit entry about a refusal by `ids` (key, action, reason) fits in
        this minute's allowance."""
        return await self._counter.hit(
            SlidingWindowCounterRateLimiter, self._refusals, "refusal", *ids
        )

    async def close(self) -> None:
        await self._counter.close()
