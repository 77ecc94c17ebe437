"""Webhook deliveries are rows: stored once, delivered once, across a kill -9 of the replica
in the middle of the retry schedule, and across two replicas on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import eventually, make_project, start_replica, two_replicas, wait_status
from tests.webhook_receiver import Receiver, receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # ~40 s each on a loaded machine

WEBHOOK_ENV = {
    "RDEV_WEBHOOK_ALLOW_HTTP": "true",
    "RDEV_WEBHOOK_ALLOWED_CIDRS": "127.0.0.1/32",
    "RDEV_WEBHOOK_RETRY_FIRST_SECONDS": "2",
    "RDEV_WEBHOOK_RETRY_FACTOR": "2",
    "RDEV_WEBHOOK_RETRY_JITTER": "0",
    "RDEV_WEBHOOK_MAX_ATTEMPTS": "6",
    "RDEV_WEBHOOK_POLL_SECONDS": "0.5",
    "RATE_LIMIT_RPS": "1000",
}


async def admin_key(env: dict[str, str], cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "keys", "create", "--name", "t", "--scope", "admin",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    return (await proc.communicate())[0].decode().strip()


async def subscribe(client: httpx.AsyncClient, rec: Receiver, events: list[str]) -> str:
    resp = await client.post("/webhooks", json={"url": rec.url, "events": events})
    assert resp.status_code == 201, resp.text
    rec.secret = resp.json()["data"]["secret"]
    hook_id: str = resp.json()["data"]["id"]
    return hook_id


async def run(client: httpx.AsyncClient, project: str = "demo") -> str:
    resp = await client.post(f"/projects/{project}/shell", json={"argv": ["true"]})
    assert resp.status_code == 201, resp.text
    cid: str = resp.json()["data"]["command_id"]
    return cid


def once_each(rec: Receiver) -> Counter[str]:
    return Counter(r.msg_id for r in rec.succeeded())


async def test_deliveries_survive_a_kill_9_mid_schedule_and_arrive_once(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    make_project(root, "demo")
    env = {**WEBHOOK_ENV, "RDEV_DATA_DIR": str(tmp_path / "data"), "RDEV_LOCAL_ROOT": str(root)}
    async with receiver(fail_first=3) as rec:
        replica = await start_replica(env, cwd=tmp_path)
        try:
            key = await admin_key(env, tmp_path)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=replica.url, headers=headers) as client:
                hook = await subscribe(client, rec, ["command.completed"])
                for _ in range(3):
                    await wait_status(client, await run(client), "succeeded")

                async def all_failed_once() -> bool:
                    resp = await client.get(f"/webhooks/{hook}/deliveries")
                    items = resp.json()["data"]
                    return len(items) == 3 and all(len(d["attempts"]) == 1 for d in items)

                await eventually(all_failed_once, timeout=15)
        finally:
            replica.proc.send_signal(signal.SIGKILL)  # mid-schedule: retries are 2 s away
            await replica.proc.wait()
        assert not rec.succeeded()
        killed_at = len(rec.received)
        replica = await start_replica(env, cwd=tmp_path)
        try:
            await eventually(lambda: len(once_each(rec)) == 3, timeout=30)
            async with httpx.AsyncClient(base_url=replica.url, headers=headers) as client:
                items = (await client.get(f"/webhooks/{hook}/deliveries")).json()["data"]
        finally:
            await replica.stop()
    assert killed_at == 3
    assert set(once_each(rec).values()) == {1}  # each delivered once
    assert len({r.msg_id for r in rec.received}) == 3  # stored once: no new deliveries
    assert len(rec.received) == 6
    assert sorted(d["status"] for d in items) == ["succeeded"] * 3
    assert all([a["status_code"] for a in d["attempts"]] == [500, 200] for d in items)
    print(f"\nkill -9 mid-schedule: 3 deliveries, {len(rec.received)} attempts, none lost or twice")


@pytest.mark.postgres
async def test_two_replicas_deliver_each_event_once(pg_url: str, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    make_project(root, "demo")
    async with receiver(fail_first=4) as rec:
        async with two_replicas(pg_url, root, tmp_path, **WEBHOOK_ENV) as clients:
            await subscribe(clients[0], rec, ["command.queued", "command.completed"])
            cids = [await run(clients[i % 2]) for i in range(6)]
            for i, cid in enumerate(cids):
                await wait_status(clients[i % 2], cid, "succeeded")
            await eventually(lambda: len(once_each(rec)) == 12, timeout=40)
            # a moment for any duplicate to show up: both replicas poll every 0.5 s
            await eventually(lambda: len(rec.received) >= 16, timeout=10)
        events: Counter[tuple[Any, Any]] = Counter(
            (r.body["type"], r.body["data"]["command_id"]) for r in rec.succeeded()
        )
    assert set(once_each(rec).values()) == {1}
    assert len(events) == 12 and set(events.values()) == {1}
    assert {c for _, c in events} == set(cids)
    assert len(rec.received) == 16  # 12 deliveries, 4 of them retried once
