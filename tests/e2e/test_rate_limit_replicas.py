"""The per-key rate limit across replicas: two `rdev serve` processes on one PostgreSQL and the
real Redis at 127.0.0.1:6379 (through a relay the test can cut) share one budget per key; when
Redis goes away each replica limits on its own (a warning once per outage, never a 500, never
no limit), and they share again when it returns."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import httpx
import redis

from tests.e2e.test_throttle import REDIS, _Relay, redis_keys, redis_prefix
from tests.support import eventually, make_project, two_replicas

__all__ = ["redis_prefix"]  # the fixture, for pytest

# RATE_LIMIT_RPS=1000 with a burst of 10000 makes a 10-second window; a key of 0.5/s then
# has 5 requests in any 10 seconds (q=5;w=10), enough time for a dozen requests to land.
ENV = {"RATE_LIMIT_RPS": "1000", "RDEV_RATE_LIMIT_BURST": "10000", "RDEV_REDIS_RETRY_SECONDS": "1"}
QUOTA = 5


async def slow_key(admin: httpx.AsyncClient) -> str:
    resp = await admin.post(
        "/keys", json={"name": "slow", "scopes": ["projects:read"], "rate_limit_rps": 0.5}
    )
    assert resp.status_code == 201, resp.text
    secret: str = resp.json()["data"]["key"]
    return secret


async def spread(clients: list[httpx.AsyncClient], key: str, n: int) -> collections.Counter[int]:
    """`n` requests by `key`, alternating between the replicas: how many of each status."""
    headers = {"Authorization": f"Bearer {key}"}
    statuses: collections.Counter[int] = collections.Counter()
    for i in range(n):
        resp = await clients[i % 2].get("/projects", headers=headers)
        statuses[resp.status_code] += 1
        if resp.status_code == 429:
            assert int(resp.headers["retry-after"]) >= 1
            assert resp.headers["ratelimit"].startswith('"key";r=0;')
    return statuses


def warnings(stderr_dir: Path, replica: int) -> int:
    return (stderr_dir / f"r{replica}.log").read_text().count("ratelimit.redis_unavailable")


async def writes_to_redis(client: httpx.AsyncClient, prefix: str) -> bool:
    """Whether this replica counts in Redis: with the prefix's keys removed, one request
    recreates them."""
    with redis.Redis.from_url(REDIS) as r:
        for name in r.scan_iter(match=f"*{prefix}*"):
            r.delete(name)
    assert (await client.get("/projects")).status_code == 200
    return bool(redis_keys(prefix))


async def test_the_budget_is_shared_and_survives_redis_going_away(
    pg_url: str, tmp_path: Path, redis_prefix: str
) -> None:
    relay = _Relay(int(REDIS.rsplit(":", 1)[1].split("/")[0]))
    port = await relay.start()
    root = tmp_path / "ws"
    make_project(root, "demo")
    env = {
        **ENV,
        "RDEV_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "RDEV_REDIS_KEY_PREFIX": redis_prefix,
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        async with two_replicas(pg_url, root, tmp_path, stderr_dir=logs, **env) as clients:
            # shared: a dozen requests over both replicas get one budget, not two
            assert await spread(clients, await slow_key(clients[0]), 12) == {200: QUOTA, 429: 7}
            assert redis_keys(redis_prefix)

            await relay.cut()
            # degraded: each replica limits on its own, in memory; no 500, no unlimited key
            assert await spread(clients, await slow_key(clients[0]), 12) == {
                200: 2 * QUOTA,
                429: 2,
            }
            await asyncio.sleep(1.2)  # time passes: a retry period ends inside the outage
            assert await spread(clients, await slow_key(clients[0]), 4) == {200: 4}
            assert [warnings(logs, i) for i in (0, 1)] == [1, 1]  # once per outage

            await relay.start(port)
            for client in clients:  # each replica tries Redis again after its retry period
                await eventually(lambda c=client: writes_to_redis(c, redis_prefix), timeout=10)
            assert await spread(clients, await slow_key(clients[0]), 12) == {200: QUOTA, 429: 7}
            assert [warnings(logs, i) for i in (0, 1)] == [1, 1]
    finally:
        await relay.cut()
