"""Failed authentication is throttled per client IP and per real key id, and a valid key is
never refused for what others did: through the real server, with the failure counts in memory
and in the real Redis at 127.0.0.1:6379 (shared by replicas; degrading to memory when it goes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import structlog

from rdev.adapters.http.ratelimit import Limits
from rdev.config import Settings
from rdev.domain import keys as keyfmt
from tests.support import Running, free_port, make_project, serve, start_replica

SettingsFactory = Callable[..., Settings]
REDIS = os.environ.get("RDEV_TEST_REDIS", "redis://127.0.0.1:6379/0")
LIMIT = 5  # failures per minute per IP (and per key id) in these tests


def key_id(raw: str) -> str:
    parsed = keyfmt.parse_key(raw)
    assert parsed is not None
    return parsed[0]


def wrong_secret(raw: str) -> str:
    return keyfmt.format_key(key_id(raw), keyfmt.new_secret())


def from_ip(ip: str, key: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": ip}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _settings(factory: SettingsFactory, **overrides: object) -> Settings:
    settings = factory(trusted_proxies="127.0.0.1/32", auth_failures_per_minute=LIMIT, **overrides)
    make_project(settings.workspace_root, "demo")
    return settings


@pytest.fixture
async def proxied(settings_factory: SettingsFactory) -> AsyncIterator[Running]:
    async with serve(_settings(settings_factory)) as running:
        yield running


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis, removed afterwards."""
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.ConnectionError as e:
        pytest.skip(f"Redis is not reachable at {REDIS}: {e}")
    prefix = f"rdev-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        for name in client.scan_iter(match=f"*{prefix}*"):
            client.delete(name)
        client.close()


def redis_keys(prefix: str) -> list[bytes]:
    with redis.Redis.from_url(REDIS) as client:
        return list(client.scan_iter(match=f"*{prefix}*"))


async def failing_requests(running: Running) -> dict[str, Callable[[], dict[str, str]]]:
    """Every way a presented key can fail, as header factories (the IP is added by the test)."""
    revoked = await running.new_key(scopes=["projects:read"])
    assert (await running.admin.delete(f"/keys/{key_id(revoked)}")).status_code == 200
    real = await running.new_key(scopes=["projects:read"])
    return {
        "missing": lambda: {},
        "malformed": lambda: {"Authorization": "Bearer not-a-key"},
        "x-api-key malformed": lambda: {"X-API-Key": "rdev_sk_short"},
        "unknown id": lambda: {
            "Authorization": f"Bearer {keyfmt.format_key('z' * 12, keyfmt.new_secret())}"
        },
        "wrong secret": lambda: {"Authorization": f"Bearer {wrong_secret(real)}"},
        "revoked": lambda: {"Authorization": f"Bearer {revoked}"},
    }


async def assert_throttled_after_limit(
    client: httpx.AsyncClient, headers: Callable[[], dict[str, str]], ip: str
) -> None:
    for i in range(LIMIT):
        resp = await client.get("/projects", headers={**headers(), **from_ip(ip)})
        assert resp.status_code == 401, (i, resp.text)
    throttled = await client.get("/projects", headers={**headers(), **from_ip(ip)})
    assert throttled.status_code == 429, throttled.text
    assert throttled.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60


@pytest.mark.parametrize(
    "kind",
    ["missing", "malformed", "x-api-key malformed", "unknown id", "wrong secret", "revoked"],
)
async def test_every_kind_of_failure_counts_against_the_ip_but_never_a_valid_key(
    proxied: Running, kind: str
) -> None:
    cases = await failing_requests(proxied)
    good = await proxied.new_key(scopes=["projects:read"])
    client = proxied.client()
    await assert_throttled_after_limit(client, cases[kind], "203.0.113.10")
    # the office behind that address keeps working with its valid keys, in every form
    for headers in (
        from_ip("203.0.113.10", good),
        {**from_ip("203.0.113.10"), "X-API-Key": good},
        from_ip("203.0.113.10", proxied.admin_key),
    ):
        for _ in range(3):
            resp = await client.get("/projects", headers=headers)
            assert resp.status_code == 200, resp.text
    # authorization still answers for itself: a valid key without the scope is 403, not 429
    assert (await client.get("/keys", headers=from_ip("203.0.113.10", good))).status_code == 403
    # and the throttled address keeps failing fast with 429, every kind of failure
    for other in cases.values():
        resp = await client.get("/projects", headers={**other(), **from_ip("203.0.113.10")})
        assert resp.status_code == 429, (kind, resp.text)
    # another address is not slowed (but wrong secrets also count against their key id)
    resp = await client.get("/projects", headers={**cases[kind](), **from_ip("203.0.113.11")})
    assert resp.status_code == (429 if kind == "wrong secret" else 401), resp.text
    assert (await client.get("/projects", headers=from_ip("203.0.113.11"))).status_code == 401


async def test_valid_requests_neither_count_nor_reset_the_failure_budget(
    proxied: Running,
) -> None:
    good = await proxied.new_key(scopes=["projects:read"])
    client = proxied.client()
    ip = "198.51.100.20"
    for _ in range(LIMIT):
        for _ in range(4):
            assert (await client.get("/projects", headers=from_ip(ip, good))).status_code == 200
        assert (await client.get("/projects", headers=from_ip(ip))).status_code == 401
    assert (await client.get("/projects", headers=from_ip(ip))).status_code == 429
    assert (await client.get("/projects", headers=from_ip(ip, good))).status_code == 200


async def test_wrong_secrets_for_a_real_key_id_are_throttled_from_any_address(
    proxied: Running,
) -> None:
    target = await proxied.new_key(scopes=["projects:read"])
    other = await proxied.new_key(scopes=["projects:read"])
    client = proxied.client()
    for i in range(LIMIT):  # one guess from each of many addresses
        resp = await client.get("/projects", headers=from_ip(f"192.0.2.{i}", wrong_secret(target)))
        assert resp.status_code == 401, resp.text
    fresh = "192.0.2.200"
    throttled = await client.get("/projects", headers=from_ip(fresh, wrong_secret(target)))
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    # the key's owner is not locked out by the guesses, from that address or any other
    for ip in (fresh, "192.0.2.0", "127.0.0.1"):
        assert (await client.get("/projects", headers=from_ip(ip, target))).status_code == 200
    # other keys' ids and ids that do not exist are not touched by that count
    resp = await client.get("/projects", headers=from_ip("192.0.2.201", wrong_secret(other)))
    assert resp.status_code == 401
    unknown = keyfmt.format_key("u" * 12, keyfmt.new_secret())
    for i in range(LIMIT + 2):  # unknown ids have no count of their own (only the address's)
        resp = await client.get("/projects", headers=from_ip(f"192.0.2.{100 + i}", unknown))
        assert resp.status_code == 401


async def test_throttled_failures_are_not_each_audited(proxied: Running) -> None:
    client = proxied.client()
    ip = "198.51.100.30"
    for _ in range(LIMIT + 25):
        await client.get("/projects", headers=from_ip(ip))
    resp = await proxied.admin.get("/audit", params={"action": "auth.failure", "limit": 100})
    assert resp.status_code == 200
    from_there = [e for e in resp.json()["data"] if e["client_ip"] == ip]
    assert len(from_there) == LIMIT  # a flood cannot grow the audit log without bound


async def test_failure_counts_are_shared_by_replicas_through_redis(
    settings_factory: SettingsFactory, redis_prefix: str
) -> None:
    settings = _settings(settings_factory, redis_url=REDIS, redis_key_prefix=redis_prefix)
    async with serve(settings) as a, serve(settings) as b:
        ip = "203.0.113.50"
        clients = [a.client(), b.client()]
        for i in range(LIMIT):  # spread over both replicas
            resp = await clients[i % 2].get("/projects", headers=from_ip(ip))
            assert resp.status_code == 401
        for client in clients:
            assert (await client.get("/projects", headers=from_ip(ip))).status_code == 429
        good = await a.new_key(scopes=["projects:read"])
        for client in clients:
            assert (await client.get("/projects", headers=from_ip(ip, good))).status_code == 200
        assert redis_keys(redis_prefix), "the counts live in Redis under the configured prefix"


async def test_unreachable_redis_degrades_to_counting_in_memory_with_a_warning(
    settings_factory: SettingsFactory,
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with structlog.testing.capture_logs() as logs:
        async with serve(_settings(settings_factory, redis_url=closed)) as running:
            good = await running.new_key(scopes=["projects:read"])
            client = running.client()
            assert (
                await client.get("/projects", headers=from_ip("1.2.3.4", good))
            ).status_code == 200
            await assert_throttled_after_limit(client, lambda: {}, "203.0.113.60")
            resp = await client.get("/projects", headers=from_ip("203.0.113.60", good))
            assert resp.status_code == 200
    warnings = [e for e in logs if e["event"] == "ratelimit.redis_unavailable"]
    assert warnings and warnings[0]["log_level"] == "warning"
    assert len(warnings) <= 2, "one warning per outage, not one per request"


class _Relay:
    """A TCP relay to Redis that the test can cut: Redis 'going away' mid-run without
    touching the shared Redis server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()


async def test_redis_going_away_mid_run_degrades_without_a_500(
    settings_factory: SettingsFactory, redis_prefix: str
) -> None:
    relay = _Relay(int(REDIS.rsplit(":", 1)[1].split("/")[0]))
    port = await relay.start()
    url = f"redis://127.0.0.1:{port}/0"
    settings = _settings(settings_factory, redis_url=url, redis_key_prefix=redis_prefix)
    with structlog.testing.capture_logs() as logs:
        async with serve(settings) as running:
            good = await running.new_key(scopes=["projects:read"])
            client = running.client()
            ip = "203.0.113.70"
            for _ in range(2):
                assert (await client.get("/projects", headers=from_ip(ip))).status_code == 401
            assert redis_keys(redis_prefix)
            await relay.cut()
            statuses = [
                (await client.get("/projects", headers=from_ip(ip))).status_code
                for _ in range(LIMIT + 2)
            ]
            assert 500 not in statuses and set(statuses) <= {401, 429}, statuses
            assert statuses[-1] == 429  # still counted, now in memory
            resp = await client.get("/projects", headers=from_ip(ip, good))
            assert resp.status_code == 200
    assert any(e["event"] == "ratelimit.redis_unavailable" for e in logs)


@pytest.mark.slow
async def test_rdev_serve_starts_and_throttles_with_redis_url(
    tmp_path: Path, redis_prefix: str
) -> None:
    """The finding: `rdev serve` with RDEV_REDIS_URL exited at start-up (no Redis client)."""
    env = {
        "RDEV_DATA_DIR": str(tmp_path / "data"),
        "RDEV_LOCAL_ROOT": str(tmp_path / "ws"),
        "RDEV_REDIS_URL": REDIS,
        "RDEV_REDIS_KEY_PREFIX": redis_prefix,
        "RDEV_AUTH_FAILURES_PER_MINUTE": str(LIMIT),
    }
    replica = await start_replica(env, cwd=tmp_path)
    try:
        async with httpx.AsyncClient(base_url=replica.url, timeout=10) as client:
            statuses = [(await client.get("/projects")).status_code for _ in range(LIMIT + 1)]
            assert statuses == [401] * LIMIT + [429]
        assert redis_keys(redis_prefix)
    finally:
        assert await replica.stop() in (0, -15)  # uvicorn re-raises SIGTERM once drained


async def test_counting_returns_to_redis_once_it_answers_again(redis_prefix: str) -> None:
    relay = _Relay(int(REDIS.rsplit(":", 1)[1].split("/")[0]))
    port = await relay.start()
    now = [0.0]
    limits = Limits(
        rps=1000,
        auth_failures_per_minute=LIMIT,
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_key_prefix=redis_prefix,
        redis_retry_seconds=30,
        monotonic=lambda: now[0],
    )

    def in_redis(ip: str) -> bool:
        return any(ip.encode() in k for k in redis_keys(redis_prefix))

    try:
        assert await limits.auth_failed("192.0.2.1") is None
        assert in_redis("192.0.2.1")
        await relay.cut()
        with structlog.testing.capture_logs() as logs:
            for _ in range(LIMIT):
                assert await limits.auth_failed("192.0.2.2") is None  # counted in memory
            assert await limits.auth_failed("192.0.2.2") is not None
        assert [e["event"] for e in logs] == ["ratelimit.redis_unavailable"]
        await relay.start(port)  # Redis is back; it is tried again after the retry period
        assert await limits.auth_failed("192.0.2.3") is None
        assert not in_redis("192.0.2.3")
        now[0] += 31
        assert await limits.auth_failed("192.0.2.3") is None
        assert in_redis("192.0.2.3")
    finally:
        await limits.close()
        await relay.cut()
