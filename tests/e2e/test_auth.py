"""Authentication and authorization through the real server: one generic 401, 403 for scope,
IP and project, trusted proxies, throttling of failures, audit of failures, rotation and
revocation."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rdev.config import Settings
from rdev.domain import keys as keyfmt
from rdev.domain.models import ApiKey, Scope
from tests.e2e.conftest import Launch
from tests.support import Running, eventually, make_project, serve

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def backend() -> str:
    """Keys, auth and the HTTP edge do not depend on the backend: the local one serves them."""
    return "local"


def key_id(raw: str) -> str:
    parsed = keyfmt.parse_key(raw)
    assert parsed is not None
    return parsed[0]


def assert_generic_401(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 401, resp.text
    assert "Traceback" not in resp.text
    body = resp.json()
    assert body["meta"]["request_id"] == resp.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


async def test_every_401_has_the_same_generic_body(rdev: Running) -> None:
    good = await rdev.new_key(scopes=["projects:read"])
    good_id = key_id(good)
    revoked = await rdev.new_key(scopes=["projects:read"])
    await rdev.admin.delete(f"/keys/{key_id(revoked)}")
    # an expired key, written straight to the store (the service refuses past expiry)
    expired_secret = keyfmt.new_secret()
    now = datetime.now(UTC)
    await rdev.app.store.keys.add(
        ApiKey(
            id="expired00001",
            name="old",
            secret_hash=keyfmt.hash_secret(expired_secret),
            scopes=frozenset({Scope.PROJECTS_READ}),
            created_at=now - timedelta(days=2),
            expires_at=now - timedelta(days=1),
        )
    )
    cases: dict[str, dict[str, str]] = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {good}"},
        "malformed": {"Authorization": "Bearer rdev_sk_nope"},
        "unknown": {"Authorization": f"Bearer {keyfmt.format_key('z' * 12, keyfmt.new_secret())}"},
        "wrong_secret": {
            "Authorization": f"Bearer {keyfmt.format_key(good_id, keyfmt.new_secret())}"
        },
        "expired": {"Authorization": f"Bearer {keyfmt.format_key('expired00001', expired_secret)}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "x-api-key wrong": {"X-API-Key": keyfmt.format_key(good_id, keyfmt.new_secret())},
    }
    client = rdev.client()
    errors = {}
    for name, headers in cases.items():
        errors[name] = assert_generic_401(await client.get("/projects", headers=headers))
    assert len({repr(e) for e in errors.values()}) == 1, errors
    assert errors["missing"]["code"] == "UNAUTHORIZED"
    # and the good key, by either header, works
    assert (await client.get("/projects", headers={"Authorization": f"Bearer {good}"})).is_success
    assert (await client.get("/projects", headers={"X-API-Key": good})).is_success


async def test_key_expiring_soon_stops_working_when_it_expires(rdev: Running) -> None:
    raw = await rdev.new_key(
        scopes=["projects:read"], expires_at=datetime.now(UTC) + timedelta(seconds=2)
    )
    client = rdev.client(raw)
    assert (await client.get("/projects")).status_code == 200

    async def rejected() -> bool:
        return (await client.get("/projects")).status_code == 401

    await eventually(rejected, timeout=5)
    entries = (await rdev.admin.get("/audit", params={"action": "auth.failure"})).json()["data"]
    assert entries[0]["details"]["reason"] == "expired"


async def test_missing_scope_is_403(rdev: Running) -> None:
    client = rdev.client(await rdev.new_key(scopes=["projects:read"]))
    resp = await client.get("/keys")
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "FORBIDDEN"
    assert resp.json()["error"]["details"] == {"reason": "scope", "scope": "keys:admin"}
    assert (await client.get("/audit")).status_code == 403
    assert (await client.get("/projects")).status_code == 200


async def test_ip_outside_the_allow_list_is_403(rdev: Running) -> None:
    outside = rdev.client(await rdev.new_key(scopes=["admin"], allowed_ips=["10.0.0.0/8"]))
    resp = await outside.get("/projects")
    assert resp.status_code == 403
    assert resp.json()["error"]["details"] == {"reason": "ip"}
    inside = rdev.client(
        await rdev.new_key(scopes=["projects:read"], allowed_ips=["10.0.0.0/8", "127.0.0.0/8"])
    )
    assert (await inside.get("/projects")).status_code == 200
    v6_only = rdev.client(await rdev.new_key(scopes=["projects:read"], allowed_ips=["::1/128"]))
    assert (await v6_only.get("/projects")).status_code == 403


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_allow_lists_over_ipv6(settings_factory: SettingsFactory) -> None:
    async with serve(settings_factory(), host="::1") as running:

        async def status(*cidrs: str) -> int:
            raw = await running.new_key(scopes=["projects:read"], allowed_ips=cidrs)
            return (await running.client(raw).get("/projects")).status_code

        assert await status("::1/128") == 200
        assert await status("::/0") == 200
        assert await status("2001:db8::/32") == 403
        assert await status("127.0.0.1/32") == 403
        assert await status("2001:db8::/32", "::1") == 200


@pytest.mark.parametrize(
    "backend", ["local", pytest.param("kubernetes", marks=pytest.mark.kubernetes)]
)
async def test_project_grants(launch: Launch) -> None:
    async with launch(projects={"demo": {}, "other": {}, "third": {}}) as rdev:
        await _check_project_grants(rdev)


async def _check_project_grants(rdev: Running) -> None:
    client = rdev.client(
        await rdev.new_key(
            scopes=["projects:read", "commands:shell", "commands:read"], projects=["other"]
        )
    )
    listed = (await client.get("/projects")).json()["data"]
    assert [p["id"] for p in listed] == ["other"]
    all_ids = {p["id"] for p in (await rdev.admin.get("/projects")).json()["data"]}
    assert {"demo", "other", "third"} <= all_ids
    assert (await client.get("/projects/other")).status_code == 200
    hidden = await client.get("/projects/demo")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "NOT_FOUND"
    missing = await client.get("/projects/nonexistent")
    assert missing.status_code == 404
    assert hidden.json()["error"]["message"].replace("demo", "X") == missing.json()["error"][
        "message"
    ].replace("nonexistent", "X")
    shell = await client.post("/projects/demo/shell", json={"argv": ["true"]})
    assert shell.status_code == 403
    assert shell.json()["error"]["code"] == "FORBIDDEN"
    assert (await client.get("/projects/demo/commands")).status_code == 404


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings_factory: SettingsFactory,
) -> None:
    async with serve(settings_factory()) as running:
        raw = await running.new_key(scopes=["projects:read"], allowed_ips=["10.0.0.0/8"])
        resp = await running.client(raw).get("/projects", headers={"X-Forwarded-For": "10.1.2.3"})
        assert resp.status_code == 403
        assert resp.json()["error"]["details"] == {"reason": "ip"}


@pytest.fixture
async def proxied(settings_factory: SettingsFactory) -> AsyncIterator[Running]:
    settings = settings_factory(trusted_proxies="127.0.0.1/32", auth_failures_per_minute=5)
    make_project(settings.workspace_root, "demo")
    async with serve(settings) as running:
        yield running


async def test_forwarded_for_from_a_trusted_proxy_is_honoured(proxied: Running) -> None:
    client = proxied.client(
        await proxied.new_key(scopes=["projects:read"], allowed_ips=["10.0.0.0/8"])
    )
    assert (await client.get("/projects")).status_code == 403
    ok = await client.get("/projects", headers={"X-Forwarded-For": "10.1.2.3"})
    assert ok.status_code == 200
    # the right-most untrusted hop counts, not what the client wrote first
    spoof = await client.get("/projects", headers={"X-Forwarded-For": "10.1.2.3, 192.0.2.1"})
    assert spoof.status_code == 403
    via_proxy = await client.get(
        "/projects", headers={"X-Forwarded-For": "192.0.2.1, 10.1.2.3, 127.0.0.1"}
    )
    assert via_proxy.status_code == 200


async def test_failures_are_throttled_per_client_ip(proxied: Running) -> None:
    good = await proxied.new_key(scopes=["projects:read"])
    bad = keyfmt.format_key(key_id(good), keyfmt.new_secret())
    a = {"X-Forwarded-For": "203.0.113.1"}
    client = proxied.client(bad)
    for _ in range(5):
        assert (await client.get("/projects", headers=a)).status_code == 401
    throttled = await client.get("/projects", headers=a)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["error"]["code"] == "RATE_LIMITED"
    # a good key from the throttled address is served: the throttle hits failures only
    a_good = await client.get("/projects", headers={**a, "Authorization": f"Bearer {good}"})
    assert a_good.status_code == 200
    # another client is not slowed
    b = {"X-Forwarded-For": "203.0.113.2"}
    b_good = await client.get("/projects", headers={**b, "Authorization": f"Bearer {good}"})
    assert b_good.status_code == 200
    other_bad = {**b, "Authorization": f"Bearer {keyfmt.format_key('y' * 12, 'b' * 43)}"}
    assert (await client.get("/projects", headers=other_bad)).status_code == 401
    # but wrong secrets for that key's id count against the id from any address
    assert (await client.get("/projects", headers=b)).status_code == 429


async def test_a_key_over_its_rate_is_429_with_retry_after(
    settings_factory: SettingsFactory,
) -> None:
    async with serve(settings_factory(rate_limit_rps=1)) as running:  # 10 per 10 s window
        raw = await running.new_key(scopes=["projects:read"])
        client = running.client(raw)
        statuses = [(await client.get("/projects")).status_code for _ in range(30)]
        assert statuses[:10] == [200] * 10
        assert 429 in statuses[10:]  # a window boundary may allow a few more first
        throttled = await client.get("/projects/demo")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        assert throttled.json()["error"] == {
            "code": "RATE_LIMITED",
            "message": "rate limit exceeded",
            "details": {},
        }
        other = running.client(await running.new_key(scopes=["projects:read"]))
        assert (await other.get("/projects")).status_code == 200


async def test_failed_authentications_are_audited_with_reason_and_ip(proxied: Running) -> None:
    client = proxied.client()
    await client.get("/projects", headers={"X-Forwarded-For": "198.51.100.7"})
    unknown = keyfmt.format_key("q" * 12, keyfmt.new_secret())
    await client.get(
        "/projects",
        headers={"Authorization": f"Bearer {unknown}", "X-Request-ID": "req-aud-1"},
    )
    resp = await proxied.admin.get("/audit", params={"action": "auth.failure"})
    assert resp.status_code == 200
    entries = resp.json()["data"]
    assert [(e["details"]["reason"], e["client_ip"]) for e in entries[:2]] == [
        ("unknown", "127.0.0.1"),
        ("missing", "198.51.100.7"),
    ]
    assert entries[0]["key_id"] == "q" * 12
    assert entries[0]["request_id"] == "req-aud-1"
    assert entries[0]["outcome"] == "denied"
    assert unknown not in resp.text


async def test_huge_authorization_header_is_a_clean_4xx(rdev: Running) -> None:
    client = rdev.client()
    resp = await client.get("/projects", headers={"Authorization": "Bearer " + "a" * 65536})
    assert resp.status_code in (400, 401, 431), resp.status_code
    assert "Traceback" not in resp.text
    if resp.status_code == 401:
        assert assert_generic_401(resp)["message"] == "missing or invalid API key"
    assert (await rdev.admin.get("/projects")).status_code == 200
    assert (await rdev.client().get("/health")).status_code == 200


async def test_rotation_old_secret_401_new_works(rdev: Running) -> None:
    old = await rdev.new_key(scopes=["projects:read"])
    old_client = rdev.client(old)
    assert (await old_client.get("/projects")).status_code == 200  # cached now
    resp = await rdev.admin.post(f"/keys/{key_id(old)}/rotate")
    assert resp.status_code == 200, resp.text
    new = resp.json()["data"]["key"]
    assert new != old and key_id(new) == key_id(old)
    assert_generic_401(await old_client.get("/projects"))
    assert (await rdev.client(new).get("/projects")).status_code == 200


async def test_revocation_works_at_once_on_the_same_replica(rdev: Running) -> None:
    raw = await rdev.new_key(scopes=["projects:read"])
    client = rdev.client(raw)
    assert (await client.get("/projects")).status_code == 200
    assert (await rdev.admin.delete(f"/keys/{key_id(raw)}")).status_code == 200
    assert_generic_401(await client.get("/projects"))
