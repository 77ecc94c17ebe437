"""The keys API: the secret is shown once, never stored or listed; validation; revoke and
rotate; and the audit trail they leave, with its filters and pagination."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from rdev.domain import keys as keyfmt
from tests.support import Running

ISSUED_FIELDS = {
    "id", "name", "key", "scopes", "projects", "allowed_ips", "expires_at", "created_at",
    "daily_budget_usd",
    "rate_limit_rps",
}  # fmt: skip


@pytest.fixture
def backend() -> str:
    """Keys, auth and the HTTP edge do not depend on the backend: the local one serves them."""
    return "local"


def error_fields(resp: httpx.Response) -> set[str]:
    body = resp.json()
    details = body["error"]["details"]
    if "fields" in details:
        return {f["field"] for f in details["fields"]}
    return {details["field"]}


async def create(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "k")
    body.setdefault("scopes", ["projects:read"])
    resp = await admin.post("/keys", json=body)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def test_create_returns_the_secret_once(rdev: Running) -> None:
    expires = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    data = await create(
        rdev.admin,
        name="ci",
        scopes=["projects:read", "commands:shell"],
        projects=["demo"],
        allowed_ips=["10.1.0.0/16", "127.0.0.1"],
        expires_at=expires.isoformat(),
    )
    assert set(data) == ISSUED_FIELDS
    parsed = keyfmt.parse_key(data["key"])
    assert parsed is not None and parsed[0] == data["id"]
    assert data["scopes"] == ["commands:shell", "projects:read"]
    assert data["projects"] == ["demo"]
    assert data["allowed_ips"] == ["10.1.0.0/16", "127.0.0.1/32"]
    assert datetime.fromisoformat(data["expires_at"]) == expires
    assert (await rdev.client(data["key"]).get("/projects")).status_code == 200


async def test_listing_never_shows_the_secret_or_its_hash(rdev: Running) -> None:
    data = await create(rdev.admin)
    raw = data["key"]
    secret = keyfmt.parse_key(raw)[1]  # type: ignore[index]
    digest = hashlib.sha256(secret.encode()).hexdigest()
    rotated = (await rdev.admin.post(f"/keys/{data['id']}/rotate")).json()["data"]["key"]
    new_secret = keyfmt.parse_key(rotated)[1]  # type: ignore[index]
    new_digest = hashlib.sha256(new_secret.encode()).hexdigest()
    for path in ("/keys", f"/keys/{data['id']}", "/audit"):
        resp = await rdev.admin.get(path)
        assert resp.status_code == 200
        for needle in (secret, digest, new_secret, new_digest, "secret_hash"):
            assert needle not in resp.text, (path, needle)
    listed = (await rdev.admin.get("/keys")).json()["data"]
    assert data["id"] in {k["id"] for k in listed}
    one = (await rdev.admin.get(f"/keys/{data['id']}")).json()["data"]
    assert "key" not in one
    assert one["revoked_at"] is None


async def test_unknown_scope_is_422_naming_the_field(rdev: Running) -> None:
    resp = await rdev.admin.post("/keys", json={"name": "x", "scopes": ["projects:read", "root"]})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "VALIDATION_ERROR"
    assert error_fields(resp) == {"scopes"}
    assert "root" in resp.json()["error"]["message"]


async def test_invalid_cidr_is_422(rdev: Running) -> None:
    resp = await rdev.admin.post(
        "/keys", json={"name": "x", "scopes": ["admin"], "allowed_ips": ["10.0.0.0/99"]}
    )
    assert resp.status_code == 422
    assert error_fields(resp) == {"allowed_ips"}


async def test_expiry_in_the_past_or_without_zone_is_422(rdev: Running) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    resp = await rdev.admin.post(
        "/keys", json={"name": "x", "scopes": ["admin"], "expires_at": past}
    )
    assert resp.status_code == 422
    assert error_fields(resp) == {"expires_at"}
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    resp = await rdev.admin.post(
        "/keys", json={"name": "x", "scopes": ["admin"], "expires_at": naive}
    )
    assert resp.status_code == 422
    assert error_fields(resp) == {"expires_at"}


async def test_expiry_with_an_offset_is_kept_as_the_same_instant(rdev: Running) -> None:
    at = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    data = await create(
        rdev.admin, expires_at=at.astimezone(timezone(timedelta(hours=2))).isoformat()
    )
    stored = (await rdev.admin.get(f"/keys/{data['id']}")).json()["data"]
    assert datetime.fromisoformat(stored["expires_at"]) == at
    assert (await rdev.client(data["key"]).get("/projects")).status_code == 200


async def test_other_bad_bodies_are_422(rdev: Running) -> None:
    for body, field in [
        ({"scopes": ["admin"]}, "name"),
        ({"name": "x"}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["admin"], "projects": ["../x"]}, "projects"),
        ({"name": "x", "scopes": ["admin"], "extra": 1}, "extra"),
    ]:
        resp = await rdev.admin.post("/keys", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert field in error_fields(resp), (body, resp.text)


async def test_delete_revokes(rdev: Running) -> None:
    data = await create(rdev.admin)
    client = rdev.client(data["key"])
    assert (await client.get("/projects")).status_code == 200
    resp = await rdev.admin.delete(f"/keys/{data['id']}")
    assert resp.status_code == 200
    assert resp.json()["data"]["revoked_at"] is not None
    assert "key" not in resp.json()["data"]
    assert (await client.get("/projects")).status_code == 401
    listed = {k["id"]: k for k in (await rdev.admin.get("/keys")).json()["data"]}
    assert listed[data["id"]]["revoked_at"] is not None
    assert (await rdev.admin.post(f"/keys/{data['id']}/rotate")).status_code == 422


async def test_rotate_returns_a_new_secret(rdev: Running) -> None:
    data = await create(rdev.admin, name="rot", scopes=["audit:read"])
    resp = await rdev.admin.post(f"/keys/{data['id']}/rotate")
    assert resp.status_code == 200
    rotated = resp.json()["data"]
    assert set(rotated) == ISSUED_FIELDS
    assert rotated["id"] == data["id"]
    assert rotated["name"] == "rot" and rotated["scopes"] == ["audit:read"]
    assert rotated["key"] != data["key"]
    assert (await rdev.client(data["key"]).get("/audit")).status_code == 401
    assert (await rdev.client(rotated["key"]).get("/audit")).status_code == 200


async def test_unknown_key_ids_are_404(rdev: Running) -> None:
    for method, path in [
        ("GET", "/keys/zzzzzzzzzzzz"),
        ("DELETE", "/keys/zzzzzzzzzzzz"),
        ("POST", "/keys/zzzzzzzzzzzz/rotate"),
    ]:
        resp = await rdev.admin.request(method, path)
        assert resp.status_code == 404, (method, path)
        assert resp.json()["error"]["code"] == "NOT_FOUND"


async def test_keys_need_keys_admin(rdev: Running) -> None:
    target = await create(rdev.admin)
    plain = rdev.client(
        await rdev.new_key(scopes=["projects:read", "audit:read", "commands:shell"])
    )
    for method, path, body in [
        ("POST", "/keys", {"name": "x", "scopes": ["admin"]}),
        ("GET", "/keys", None),
        ("GET", f"/keys/{target['id']}", None),
        ("DELETE", f"/keys/{target['id']}", None),
        ("POST", f"/keys/{target['id']}/rotate", None),
    ]:
        resp = await plain.request(method, path, json=body)
        assert resp.status_code == 403, (method, path)
        assert resp.json()["error"]["details"] == {"reason": "scope", "scope": "keys:admin"}
    assert (await rdev.client(target["key"]).get("/projects")).status_code == 200
    keys_admin = rdev.client(await rdev.new_key(scopes=["keys:admin"]))
    made = await keys_admin.post("/keys", json={"name": "y", "scopes": ["keys:admin"]})
    assert made.status_code == 201


async def test_key_lifecycle_is_audited_newest_first(rdev: Running) -> None:
    admin_id = keyfmt.parse_key(rdev.admin_key)[0]  # type: ignore[index]
    admin = rdev.admin
    made = await admin.post(
        "/keys", json={"name": "aud", "scopes": ["admin"]}, headers={"X-Request-ID": "req-create"}
    )
    kid = made.json()["data"]["id"]
    await admin.post(f"/keys/{kid}/rotate", headers={"X-Request-ID": "req-rotate"})
    await admin.delete(f"/keys/{kid}", headers={"X-Request-ID": "req-revoke"})
    resp = await admin.get("/audit", params={"key_id": admin_id})
    assert resp.status_code == 200
    entries = [e for e in resp.json()["data"] if e["target"] == kid]
    assert [(e["action"], e["request_id"]) for e in entries] == [
        ("key.revoke", "req-revoke"),
        ("key.rotate", "req-rotate"),
        ("key.create", "req-create"),
    ]
    for e in entries:
        assert e["key_id"] == admin_id
        assert e["client_ip"] == "127.0.0.1"
        assert e["outcome"] == "ok"
        assert datetime.fromisoformat(e["at"]).tzinfo is not None
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert times == sorted(times, reverse=True)
    assert entries[2]["details"] == {"name": "aud", "scopes": ["admin"]}


async def test_audit_filters_and_pagination(rdev: Running) -> None:
    admin = rdev.admin
    made = [await create(admin, name=f"k{i}") for i in range(7)]
    other_raw = await rdev.new_key(scopes=["keys:admin"])
    other = rdev.client(other_raw)
    other_id = (await other.post("/keys", json={"name": "o", "scopes": ["keys:admin"]})).json()[
        "data"
    ]
    await admin.delete(f"/keys/{made[0]['id']}")

    async def page(**params: Any) -> tuple[list[dict[str, Any]], str | None]:
        resp = await admin.get("/audit", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return body["data"], body["meta"].get("next_cursor")

    creates, _ = await page(action="key.create", limit=500)
    assert {e["target"] for e in creates} >= {m["id"] for m in made} | {other_id["id"]}
    assert all(e["action"] == "key.create" for e in creates)
    revokes, _ = await page(action="key.revoke")
    assert [e["target"] for e in revokes] == [made[0]["id"]]
    by_other, _ = await page(key_id=keyfmt.parse_key(other_raw)[0])  # type: ignore[index]
    assert [e["target"] for e in by_other] == [other_id["id"]]

    # since/until bracket the middle of the creates (since inclusive, until exclusive)
    oldest_first = list(reversed([e for e in creates if e["target"] in {m["id"] for m in made}]))
    since, until = oldest_first[2]["at"], oldest_first[5]["at"]
    window, _ = await page(action="key.create", since=since, until=until)
    assert [e["target"] for e in window] == [oldest_first[i]["target"] for i in (4, 3, 2)]
    shifted = datetime.fromisoformat(since).astimezone(timezone(timedelta(hours=-7))).isoformat()
    same, _ = await page(action="key.create", since=shifted, until=until)
    assert same == window

    # cursor pagination over everything: no duplicates, no gaps, newest first
    everything, cursor = await page(limit=500)
    assert cursor is None
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        items, cursor = await page(**params)
        assert len(items) <= 3
        seen.extend(e["id"] for e in items)
        if cursor is None:
            break
    assert seen == [e["id"] for e in everything]
    assert len(seen) == len(set(seen)) >= 9
    assert seen == sorted(seen, reverse=True)


async def test_audit_rejects_bad_queries(rdev: Running) -> None:
    for params in (
        {"since": "2030-01-01T00:00:00"},
        {"until": "yesterday"},
        {"limit": 0},
        {"limit": 501},
        {"cursor": "abc"},
    ):
        resp = await rdev.admin.get("/audit", params=params)
        assert resp.status_code == 422, (params, resp.text)
        assert resp.json()["error"]["code"] == "VALIDATION_ERROR"


# keys within their authority (issue #8, finding 2)

SOON = datetime.now(UTC) + timedelta(days=1)


def _iso(at: datetime) -> str:
    return at.isoformat()


async def _forbidden(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "FORBIDDEN"
    details: dict[str, Any] = resp.json()["error"]["details"]
    return details


@pytest.mark.parametrize(
    ("holder", "body", "details"),
    [
        # the reported cases
        ({"scopes": ["admin"], "projects": ["a"]}, {"scopes": ["admin"]},
         {"reason": "project", "project": "*"}),
        ({"scopes": ["keys:admin"]}, {"scopes": ["admin"]}, {"reason": "scope", "scope": "admin"}),
        # and around them
        ({"scopes": ["keys:admin", "projects:read"]}, {"scopes": ["projects:read", "audit:read"]},
         {"reason": "scope", "scope": "audit:read"}),
        ({"scopes": ["admin"], "projects": ["a"]}, {"scopes": ["projects:read"], "projects": ["b"]},
         {"reason": "project", "project": "b"}),
        ({"scopes": ["admin"], "projects": ["a"]},
         {"scopes": ["projects:read"], "projects": ["a", "b"]},
         {"reason": "project", "project": "b"}),
        ({"scopes": ["admin"], "allowed_ips": ["127.0.0.0/8"]}, {"scopes": ["projects:read"]},
         {"reason": "allowed_ips", "network": "*"}),
        ({"scopes": ["admin"], "allowed_ips": ["127.0.0.0/8"]},
         {"scopes": ["projects:read"], "allowed_ips": ["127.0.0.1", "10.0.0.0/8"]},
         {"reason": "allowed_ips", "network": "10.0.0.0/8"}),
        ({"scopes": ["admin"], "expires_at": SOON}, {"scopes": ["projects:read"]},
         {"reason": "expires_at", "not_after": SOON.isoformat()}),
        ({"scopes": ["admin"], "expires_at": SOON},
         {"scopes": ["projects:read"], "expires_at": _iso(SOON + timedelta(seconds=1))},
         {"reason": "expires_at", "not_after": SOON.isoformat()}),
    ],
)  # fmt: skip
async def test_a_key_cannot_create_a_key_beyond_its_authority(
    rdev: Running, holder: dict[str, Any], body: dict[str, Any], details: dict[str, Any]
) -> None:
    client = rdev.client(await rdev.new_key(**holder))
    resp = await client.post("/keys", json={"name": "too-much", **body})
    assert await _forbidden(resp) == details
    assert "too-much" not in {k["name"] for k in (await rdev.admin.get("/keys")).json()["data"]}


@pytest.mark.parametrize(
    ("holder", "body"),
    [
        ({"scopes": ["admin"], "projects": ["a", "b"]}, {"scopes": ["admin"], "projects": ["b"]}),
        ({"scopes": ["keys:admin", "projects:read"]}, {"scopes": ["projects:read"]}),
        ({"scopes": ["keys:admin"]}, {"scopes": ["keys:admin"]}),
        ({"scopes": ["admin"], "allowed_ips": ["127.0.0.0/8"]},
         {"scopes": ["projects:read"], "allowed_ips": ["127.0.0.1"]}),
        ({"scopes": ["admin"], "expires_at": SOON},
         {"scopes": ["projects:read"], "expires_at": _iso(SOON - timedelta(hours=1))}),
        ({"scopes": ["admin"], "expires_at": SOON},
         {"scopes": ["projects:read"], "expires_at": _iso(SOON)}),
    ],
)  # fmt: skip
async def test_a_key_creates_keys_within_its_authority(
    rdev: Running, holder: dict[str, Any], body: dict[str, Any]
) -> None:
    client = rdev.client(await rdev.new_key(**holder))
    made = await create(client, name="fits", **body)
    assert made["scopes"] == sorted(body["scopes"])
    assert made["projects"] == sorted(body.get("projects", []))


async def test_keys_beyond_authority_are_invisible_and_not_found(rdev: Running) -> None:
    bounds: dict[str, Any] = {
        "projects": ["a"], "allowed_ips": ["127.0.0.1"], "expires_at": _iso(SOON),
    }  # fmt: skip
    holder_raw = await rdev.new_key(
        scopes=["keys:admin", "projects:read"], **bounds | {"expires_at": SOON}
    )
    holder = rdev.client(holder_raw)
    holder_id = keyfmt.parse_key(holder_raw)[0]  # type: ignore[index]
    inside = await create(holder, name="inside", **bounds)
    outside = {
        "admin": keyfmt.parse_key(rdev.admin_key)[0],  # type: ignore[index]
        "other project": (await create(rdev.admin, **bounds | {"projects": ["b"]}))["id"],
        "every project": (await create(rdev.admin, **bounds | {"projects": []}))["id"],
        "more scopes": (await create(rdev.admin, scopes=["audit:read"], **bounds))["id"],
        "any address": (await create(rdev.admin, **bounds | {"allowed_ips": []}))["id"],
        "never expires": (await create(rdev.admin, **bounds | {"expires_at": None}))["id"],
    }
    listed = {k["id"] for k in (await holder.get("/keys")).json()["data"]}
    assert listed == {holder_id, inside["id"]}
    unknown = await holder.get("/keys/zzzzzzzzzzzz")
    for label, key_id in outside.items():
        for method, path in [
            ("GET", f"/keys/{key_id}"),
            ("POST", f"/keys/{key_id}/rotate"),
            ("DELETE", f"/keys/{key_id}"),
        ]:
            resp = await holder.request(method, path)
            assert resp.status_code == 404, (label, method, resp.text)
            assert resp.json()["error"]["code"] == "NOT_FOUND"
            assert key_id not in resp.text or key_id in path
            assert resp.json()["error"]["message"].replace(key_id, "?") == unknown.json()["error"][
                "message"
            ].replace("zzzzzzzzzzzz", "?")
    # nothing happened to them
    for key_id in outside.values():
        seen = (await rdev.admin.get(f"/keys/{key_id}")).json()["data"]
        assert seen["revoked_at"] is None
    assert (await rdev.admin.get("/projects")).status_code == 200


async def test_keys_within_authority_can_be_read_rotated_and_revoked(rdev: Running) -> None:
    holder = rdev.client(await rdev.new_key(scopes=["keys:admin", "projects:read"], projects=["a"]))
    made = await create(rdev.admin, name="fits", scopes=["projects:read"], projects=["a"])
    assert (await holder.get(f"/keys/{made['id']}")).json()["data"]["name"] == "fits"
    rotated = await holder.post(f"/keys/{made['id']}/rotate")
    assert rotated.status_code == 200, rotated.text
    assert (await rdev.client(made["key"]).get("/projects")).status_code == 401
    assert (await rdev.client(rotated.json()["data"]["key"]).get("/projects")).status_code == 200
    revoked = await holder.delete(f"/keys/{made['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["data"]["revoked_at"] is not None


async def test_a_key_sees_and_rotates_itself(rdev: Running) -> None:
    raw = await rdev.new_key(scopes=["keys:admin"], projects=["a"], allowed_ips=["127.0.0.1"])
    key_id = keyfmt.parse_key(raw)[0]  # type: ignore[index]
    client = rdev.client(raw)
    assert (await client.get(f"/keys/{key_id}")).status_code == 200
    rotated = await client.post(f"/keys/{key_id}/rotate")
    assert rotated.status_code == 200
    assert (await rdev.client(rotated.json()["data"]["key"]).get("/keys")).status_code == 200
