"""The per-key rate limit through the real server: the IETF RateLimit headers on authenticated
responses (draft-ietf-httpapi-ratelimit-headers-11), Retry-After on the 429, and a key's own
`rate_limit_rps` set at creation, shown in reads and validated."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rdev.config import Settings
from tests.support import make_project, serve

SettingsFactory = Callable[..., Settings]
POLICY = re.compile(r'^"key";q=(\d+);w=(\d+)$')
LIMIT = re.compile(r'^"key";r=(\d+);t=(\d+)$')


def quota(resp: httpx.Response) -> tuple[int, int, int, int]:
    """(q, w, r, t) from a response's RateLimit-Policy and RateLimit headers."""
    policy = POLICY.match(resp.headers["ratelimit-policy"])
    limit = LIMIT.match(resp.headers["ratelimit"])
    assert policy and limit, resp.headers
    return int(policy[1]), int(policy[2]), int(limit[1]), int(limit[2])


def settings(factory: SettingsFactory, **overrides: Any) -> Settings:
    s = factory(**overrides)
    make_project(s.workspace_root, "demo")
    return s


async def test_authenticated_responses_announce_the_keys_budget_and_429_says_when(
    settings_factory: SettingsFactory,
) -> None:
    # 1 request per second with a burst of 5: at most 5 in any 5 seconds
    async with serve(settings(settings_factory, rate_limit_rps=1, rate_limit_burst=5)) as running:
        client = running.client(await running.new_key(scopes=["projects:read", "keys:admin"]))
        seen = []
        for path in ("/projects", "/projects/demo", "/keys", "/projects", "/projects"):
            resp = await client.get(path)  # lean routes and FastAPI routes alike
            assert resp.status_code == 200, resp.text
            seen.append(quota(resp))
        assert [(q, w, r) for q, w, r, _ in seen] == [(5, 5, 4), (5, 5, 3), (5, 5, 2),
                                                       (5, 5, 1), (5, 5, 0)]  # fmt: skip
        assert all(1 <= t <= 5 for *_, t in seen)
        over = await client.get("/projects")
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "RATE_LIMITED"
        q, w, r, t = quota(over)
        assert (q, w, r) == (5, 5, 0) and 1 <= t <= 5
        assert int(over.headers["retry-after"]) == t  # not before the window frees a request
        # failures to authenticate are not a key's budget: no RateLimit headers
        anonymous = await running.client().get("/projects")
        assert anonymous.status_code == 401
        assert "ratelimit" not in anonymous.headers and "ratelimit-policy" not in anonymous.headers
        # health is not authenticated
        assert "ratelimit" not in (await running.client().get("/health")).headers
        # another key has its own budget
        other = running.client(await running.new_key(scopes=["projects:read"]))
        assert quota(await other.get("/projects"))[2] == 4


async def test_a_keys_own_rate_limit_is_set_at_creation_shown_and_enforced(
    settings_factory: SettingsFactory,
) -> None:
    async with serve(
        settings(settings_factory, rate_limit_rps=100, rate_limit_burst=200)
    ) as running:
        created = await running.admin.post(
            "/keys", json={"name": "slow", "scopes": ["projects:read"], "rate_limit_rps": 0.5}
        )
        assert created.status_code == 201, created.text
        body = created.json()["data"]
        assert body["rate_limit_rps"] == 0.5
        shown = await running.admin.get(f"/keys/{body['id']}")
        assert shown.json()["data"]["rate_limit_rps"] == 0.5
        listed = {k["id"]: k for k in (await running.admin.get("/keys")).json()["data"]}
        assert listed[body["id"]]["rate_limit_rps"] == 0.5
        default = await running.admin.post("/keys", json={"name": "d", "scopes": ["admin"]})
        assert default.json()["data"]["rate_limit_rps"] is None

        slow = running.client(body["key"])
        first = await slow.get("/projects")
        assert first.status_code == 200
        assert quota(first)[:3] == (1, 2, 0)  # 0.5/s over the default's 2-second window
        assert [(await slow.get("/projects")).status_code for _ in range(2)] == [429, 429]
        # the admin key keeps the default: 100/s, 200 in 2 s
        q, w, _, _ = quota(await running.admin.get("/projects"))
        assert (q, w) == (200, 2)


@pytest.mark.parametrize(
    "value",
    [0, -1, 0.0, 10_000.5, 1e9, "1", True, [], {}, "NaN"],
)
async def test_a_keys_rate_limit_is_bounded(
    settings_factory: SettingsFactory, value: object
) -> None:
    async with serve(settings(settings_factory)) as running:
        resp = await running.admin.post(
            "/keys", json={"name": "x", "scopes": ["admin"], "rate_limit_rps": value}
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "VALIDATION_ERROR"
        assert "rate_limit_rps" in resp.text


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_non_finite_rate_limits_are_refused(
    settings_factory: SettingsFactory, raw: bytes
) -> None:
    async with serve(settings(settings_factory)) as running:
        body = b'{"name": "x", "scopes": ["admin"], "rate_limit_rps": ' + raw + b"}"
        resp = await running.admin.post(
            "/keys", content=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("value", [0.001, 1, 2.5, 10_000])
async def test_rate_limits_within_bounds_are_accepted(
    settings_factory: SettingsFactory, value: float
) -> None:
    async with serve(settings(settings_factory)) as running:
        resp = await running.admin.post(
            "/keys", json={"name": "x", "scopes": ["admin"], "rate_limit_rps": value}
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["data"]["rate_limit_rps"] == value
