"""Webhooks end to end: a real receiver on loopback verifies every delivery with
`standardwebhooks`; retries on a compressed schedule; a slow receiver delays nothing else;
a failing endpoint is disabled and audited; redelivery; cursor pagination; the SSRF policy at
creation; scope and grants."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from rdev.domain.models import Scope
from tests.support import Running, eventually, wait_status
from tests.webhook_receiver import Receiver, receiver

Launch = Callable[..., AbstractAsyncContextManager[Running]]

FAST = {
    "webhook_allow_http": True,
    "webhook_allowed_cidrs": "127.0.0.1/32",
    "webhook_retry_first_seconds": 0.3,
    "webhook_retry_factor": 2.0,
    "webhook_retry_jitter": 0.0,
    "webhook_max_attempts": 5,
    "webhook_poll_seconds": 0.5,
}
COMMAND_EVENTS = ["command.queued", "command.started", "command.completed"]


async def subscribe(
    client: httpx.AsyncClient, rec: Receiver, events: list[str], **body: Any
) -> dict[str, Any]:
    resp = await client.post("/webhooks", json={"url": rec.url, "events": events, **body})
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    assert data["secret"].startswith("whsec_")
    rec.secret = data["secret"]
    return data


async def run_shell(client: httpx.AsyncClient, script: str, project: str = "demo") -> str:
    body = {"argv": ["sh", "-c", script]}
    resp = await client.post(f"/projects/{project}/shell", json=body)
    assert resp.status_code == 201, resp.text
    command_id: str = resp.json()["data"]["command_id"]
    return command_id


async def deliveries(client: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/webhooks/{webhook_id}/deliveries")
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["data"]
    return items


async def test_command_and_key_events_arrive_signed_and_verify(launch: Launch) -> None:
    async with receiver() as rec, launch(**FAST) as rdev:
        admin = rdev.admin
        await subscribe(admin, rec, [*COMMAND_EVENTS, "key.created"])
        cid = await run_shell(admin, "exit 3")
        await wait_status(admin, cid, "failed")
        resp = await admin.post("/keys", json={"name": "n", "scopes": ["projects:read"]})
        new_key = resp.json()["data"]["id"]
        await eventually(lambda: len(rec.received) >= 4)
        assert all(r.verified for r in rec.received), "every delivery verifies"
        kinds = [r.body["type"] for r in rec.received]
        assert sorted(kinds) == sorted([*COMMAND_EVENTS, "key.created"])
        (done,) = rec.of_type("command.completed")
        data = done.body["data"]
        assert (data["command_id"], data["status"], data["exit_code"]) == (cid, "failed", 3)
        assert data["duration_seconds"] >= 0 and data["project_id"] == "demo"
        assert rec.of_type("key.created")[0].body["data"]["key_id"] == new_key
        assert len({r.msg_id for r in rec.received}) == 4


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_flaky_receiver_gets_each_delivery_once_after_retries(launch: Launch) -> None:
    async with receiver(fail_first=3) as rec, launch(**FAST) as rdev:
        hook = await subscribe(rdev.admin, rec, ["command.completed"])
        resp = await rdev.admin.post(f"/webhooks/{hook['id']}/test")
        assert resp.status_code == 202, resp.text
        await eventually(lambda: rec.succeeded(), timeout=15)
        assert [r.answered for r in rec.received] == [500, 500, 500, 200]
        assert len({r.msg_id for r in rec.received}) == 1  # one delivery, four attempts
        gaps = [b.at - a.at for a, b in zip(rec.received, rec.received[1:], strict=False)]
        # the schedule: 0.3 s, 0.6 s, 1.2 s (no jitter here), each waited at least
        for gap, planned in zip(gaps, [0.3, 0.6, 1.2], strict=True):
            assert planned * 0.9 <= gap <= planned + 1.0, gaps
        print(f"\nflaky receiver: attempts=4, gaps={[round(g, 2) for g in gaps]}")
        (item,) = await deliveries(rdev.admin, hook["id"])
        assert item["status"] == "succeeded"
        assert [a["status_code"] for a in item["attempts"]] == [500, 500, 500, 200]
        assert item["attempts"][0]["response_body_prefix"] == "try again"
        assert all(isinstance(a["latency_ms"], int) for a in item["attempts"])
        outcomes = {  # rdev_webhook_deliveries_total{outcome}: one per attempt
            s.labels["outcome"]: s.value
            for f in rdev.app.services.metrics.registry.collect()
            for s in f.samples
            if s.name == "rdev_webhook_deliveries_total"
        }
        assert outcomes == {"retried": 3, "delivered": 1}


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_30s_receiver_delays_no_command_request_or_other_receiver(
    launch: Launch,
) -> None:
    async with (
        receiver(delay=30) as slow,
        receiver() as fast,
        launch(**FAST, webhook_timeout_seconds=40) as rdev,
    ):
        await subscribe(rdev.admin, slow, COMMAND_EVENTS)
        await subscribe(rdev.admin, fast, COMMAND_EVENTS)
        t0 = time.monotonic()
        cids = [await run_shell(rdev.admin, "true") for _ in range(3)]
        submitted = time.monotonic()
        for cid in cids:
            await wait_status(rdev.admin, cid, "succeeded")
        finished = time.monotonic()
        await eventually(lambda: len(fast.of_type("command.completed")) == 3, timeout=10)
        fast_done = max(r.at for r in fast.of_type("command.completed"))
        assert slow.received, "the slow receiver is holding at least one delivery"
        health = time.monotonic()
        assert (await rdev.admin.get("/webhooks")).status_code == 200
        request_latency = time.monotonic() - health
        print(
            f"\nslow receiver: 3 submits {submitted - t0:.2f}s, done after "
            f"{finished - t0:.2f}s, fast receiver done after {fast_done - t0:.2f}s, "
            f"GET /webhooks {request_latency * 1000:.0f} ms"
        )
        assert submitted - t0 < 5 and finished - t0 < 10
        assert fast_done - t0 < 10  # 30 s would mean it waited behind the slow one
        assert request_latency < 2


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_an_endpoint_failing_for_long_is_disabled_and_audited(launch: Launch) -> None:
    settings = FAST | {"webhook_max_attempts": 50, "webhook_disable_after_seconds": 1.0}
    async with receiver(fail_first=10**6) as rec, launch(**settings) as rdev:
        hook = await subscribe(rdev.admin, rec, ["command.completed"])
        await rdev.admin.post(f"/webhooks/{hook['id']}/test")

        async def disabled() -> bool:
            data = (await rdev.admin.get(f"/webhooks/{hook['id']}")).json()["data"]
            return data["enabled"] is False and data["disabled_reason"] == "failing"

        await eventually(disabled, timeout=15)
        audit = await rdev.admin.get("/audit", params={"action": "webhook.disabled"})
        (entry,) = audit.json()["data"]
        assert entry["target"] == hook["id"]
        attempts = len(rec.received)
        assert attempts >= 2
        # enabling again resets it
        resp = await rdev.admin.patch(f"/webhooks/{hook['id']}", json={"enabled": True})
        assert resp.json()["data"]["enabled"] is True
        assert resp.json()["data"]["failing_since"] is None


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_redeliver_and_cursor_pagination(launch: Launch) -> None:
    async with receiver() as rec, launch(**FAST) as rdev:
        hook = await subscribe(rdev.admin, rec, ["command.completed"])
        for _ in range(5):
            assert (await rdev.admin.post(f"/webhooks/{hook['id']}/test")).status_code == 202
        await eventually(lambda: len(rec.received) == 5)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            body = (
                await rdev.admin.get(f"/webhooks/{hook['id']}/deliveries", params=params)
            ).json()
            seen += [d["id"] for d in body["data"]]
            pages += 1
            cursor = body["meta"]["next_cursor"]
            if cursor is None:
                break
        assert pages == 3 and sorted(seen) == sorted(r.msg_id for r in rec.received)
        bad = await rdev.admin.get(f"/webhooks/{hook['id']}/deliveries", params={"cursor": "x"})
        assert bad.status_code == 422
        target = seen[-1]
        url = f"/webhooks/{hook['id']}/deliveries/{target}/redeliver"
        assert (await rdev.admin.post(url)).status_code == 202
        await eventually(lambda: len(rec.received) == 6)
        assert rec.received[-1].msg_id == target and rec.received[-1].verified
        missing = await rdev.admin.post(f"/webhooks/{hook['id']}/deliveries/msg_nope/redeliver")
        assert missing.status_code == 404


REFUSED_URLS = [
    ("https://127.0.0.2/h", "loopback"),
    ("http://10.0.0.1/h", "private"),
    ("https://192.168.0.10/h", "private"),
    ("https://169.254.169.254/latest/meta-data", "link_local"),
    ("https://[::1]/h", "loopback"),
    ("https://[fe80::1]/h", "link_local"),
    ("https://[fd00::1]/h", "unique_local"),
    ("https://[::ffff:127.0.0.1]/h", "ipv4_mapped"),  # even with 127.0.0.1/32 allowed
    ("https://[::ffff:127.0.0.3]/h", "ipv4_mapped:loopback"),
    ("https://[::ffff:169.254.169.254]/h", "ipv4_mapped:link_local"),
    ("https://[2002:7f00:2::]/h", "6to4:loopback"),
    ("https://[64:ff9b::a9fe:a9fe]/h", "nat64:link_local"),
    ("https://224.0.0.1/h", "multicast"),
    ("https://0.0.0.0/h", "unspecified"),
    ("https://100.64.0.1/h", "shared"),
    ("https://198.18.0.1/h", "benchmarking"),
    ("https://240.0.0.1/h", "reserved"),
]


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_ssrf_refusals_at_creation_and_update(launch: Launch) -> None:
    async with receiver() as rec, launch(webhook_allowed_cidrs="127.0.0.1/32") as rdev:
        admin = rdev.admin
        for url, kind in REFUSED_URLS:
            resp = await admin.post("/webhooks", json={"url": url, "events": ["key.created"]})
            assert resp.status_code == 422, (url, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "WEBHOOK_URL_REFUSED"
            assert error["details"].get("class") == kind or url.startswith("http:"), url
        # plain http is refused unless the operator allows it, even to an allowed address
        resp = await admin.post("/webhooks", json={"url": rec.url, "events": ["key.created"]})
        assert resp.json()["error"]["details"]["reason"] == "scheme"
        for url in ["ftp://127.0.0.1/", "https://u:p@127.0.0.1/", "not a url"]:
            resp = await admin.post("/webhooks", json={"url": url, "events": ["key.created"]})
            assert resp.status_code == 422, url
        ok = await admin.post(
            "/webhooks", json={"url": "https://127.0.0.1:9/h", "events": ["key.created"]}
        )
        assert ok.status_code == 201
        hook_id = ok.json()["data"]["id"]
        bad = await admin.patch(f"/webhooks/{hook_id}", json={"url": "https://10.1.1.1/"})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "WEBHOOK_URL_REFUSED"
        invalid = await admin.post("/webhooks", json={"url": rec.url, "events": ["nope"]})
        assert invalid.status_code == 422


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_scope_grants_ownership_and_secret_rotation(launch: Launch) -> None:
    async with receiver() as rec, launch(**FAST) as rdev:
        no_scope = rdev.client(await rdev.new_key(scopes=[Scope.PROJECTS_READ]))
        assert (await no_scope.get("/webhooks")).status_code == 403
        resp = await no_scope.post("/webhooks", json={"url": rec.url, "events": ["key.created"]})
        assert resp.status_code == 403
        demo_only = rdev.client(
            await rdev.new_key(scopes=[Scope.WEBHOOKS_MANAGE], projects=["demo"])
        )
        other = rdev.client(await rdev.new_key(scopes=[Scope.WEBHOOKS_MANAGE], projects=["x"]))
        refused = await demo_only.post(
            "/webhooks",
            json={"url": rec.url, "events": ["command.queued"], "projects": ["secret"]},
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["project"] == "secret"
        hook = await subscribe(demo_only, rec, ["command.queued"], projects=["demo"])
        # the owner and keys covering it see it; others get 404, as if it did not exist
        assert (await demo_only.get(f"/webhooks/{hook['id']}")).status_code == 200
        assert (await rdev.admin.get(f"/webhooks/{hook['id']}")).status_code == 200
        for call in (
            other.get(f"/webhooks/{hook['id']}"),
            other.patch(f"/webhooks/{hook['id']}", json={"enabled": False}),
            other.delete(f"/webhooks/{hook['id']}"),
            other.post(f"/webhooks/{hook['id']}/test"),
            other.post(f"/webhooks/{hook['id']}/rotate-secret"),
            other.get(f"/webhooks/{hook['id']}/deliveries"),
        ):
            assert (await call).status_code == 404
        assert [h["id"] for h in (await other.get("/webhooks")).json()["data"]] == []
        listed = (await demo_only.get("/webhooks")).json()["data"]
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
        # rotate: later deliveries verify with the new secret only
        rotated = await demo_only.post(f"/webhooks/{hook['id']}/rotate-secret")
        new_secret = rotated.json()["data"]["secret"]
        assert new_secret != rec.secret
        rec.secret = new_secret
        await demo_only.post(f"/webhooks/{hook['id']}/test")
        await eventually(lambda: rec.received)
        assert rec.received[-1].verified
        assert (await demo_only.delete(f"/webhooks/{hook['id']}")).status_code == 200
        assert (await demo_only.get(f"/webhooks/{hook['id']}")).status_code == 404


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_delivery_concurrency_is_bounded(launch: Launch) -> None:
    async with receiver(delay=1.0) as rec, launch(**FAST, webhook_concurrency=2) as rdev:
        hook = await subscribe(rdev.admin, rec, ["command.completed"])
        start = time.monotonic()
        for _ in range(6):
            assert (await rdev.admin.post(f"/webhooks/{hook['id']}/test")).status_code == 202
        await eventually(lambda: len(rec.received) == 6 and rec.inflight == 0, timeout=20)
        took = time.monotonic() - start
    assert rec.max_inflight == 2  # two at once, never more
    assert took >= 2.9  # six 1-second answers, two at a time: three rounds
