"""The queue under concurrent submissions: the per-project cap (`RDEV_MAX_QUEUE`) and the
concurrency limits hold on SQLite and PostgreSQL, also with two replicas on one PostgreSQL, and
the queue positions given at submission are distinct and in the order commands will start."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Launch
from tests.support import Running, eventually, make_project, two_replicas, wait_status

GATE = "while [ ! -f {flag} ]; do sleep 0.02; done"
BURST = 50
CAP = 10
LIMIT = 2


async def _running(client: httpx.AsyncClient, project: str) -> int:
    resp = await client.get(f"/projects/{project}/commands", params={"status": "running"})
    assert resp.status_code == 200, resp.text
    return len(resp.json()["data"])


async def _hold_every_slot(clients: list[httpx.AsyncClient], project: str) -> list[str]:
    """Fill the project's slots with commands that wait for a file, so nothing leaves the queue
    while the burst arrives."""
    ids = []
    for i in range(LIMIT):
        body = {"argv": ["sh", "-c", GATE.format(flag="open")]}
        resp = await clients[i % len(clients)].post(f"/projects/{project}/shell", json=body)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["data"]["command_id"])
    for cid in ids:
        await wait_status(clients[0], cid, "running")
    return ids


async def _burst(clients: list[httpx.AsyncClient], project: str) -> list[dict[str, Any]]:
    """BURST submissions at once, spread over the clients; returns the accepted commands."""
    responses = await asyncio.gather(
        *(
            clients[i % len(clients)].post(
                f"/projects/{project}/shell", json={"argv": ["echo", str(i)]}
            )
            for i in range(BURST)
        )
    )
    assert Counter(r.status_code for r in responses) == {201: CAP, 429: BURST - CAP}, [
        (r.status_code, r.text[:200]) for r in responses if r.status_code not in (201, 429)
    ]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"QUEUE_FULL"}
    accepted = [r.json()["data"] for r in responses if r.status_code == 201]
    assert sorted(a["queue_position"] for a in accepted) == list(range(1, CAP + 1))
    return sorted(accepted, key=lambda a: a["queue_position"])


async def _drain_within_limit(
    clients: list[httpx.AsyncClient],
    project: str,
    workspace: Path,
    accepted: list[dict[str, Any]],
    *,
    one_replica: bool,
) -> None:
    """Positions still stand (nothing left the queue), then everything runs, never more than
    LIMIT at a time, in the order of the positions given at submission."""
    client = clients[0]
    for a in accepted:
        got = (await client.get(f"/commands/{a['command_id']}")).json()["data"]
        assert (got["status"], got["queue_position"]) == ("queued", a["queue_position"])
    assert await _running(client, project) == LIMIT
    (workspace / "open").touch()

    async def drained() -> bool:
        assert await _running(client, project) <= LIMIT
        # read from the last position to the first: once one has left the queue, every one
        # before it must have left too by the time it is read (no false alarm from a claim
        # landing between two reads)
        left, done = False, True
        for a in reversed(accepted):
            status = (await client.get(f"/commands/{a['command_id']}")).json()["data"]["status"]
            assert not (left and status == "queued"), f"position {a['queue_position']} passed"
            left = left or status != "queued"
            done = done and status == "succeeded"
        return done

    await eventually(drained, timeout=30)
    if one_replica:  # one claim loop: its start times follow its claims
        started = [
            (await client.get(f"/commands/{a['command_id']}")).json()["data"]["started_at"]
            for a in accepted
        ]
        assert started == sorted(started), "started in the order of the positions"


async def test_fifty_concurrent_submissions_respect_the_cap_with_distinct_positions(
    launch: Launch, db_url: str
) -> None:
    project = f"burst-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by tests
    async with launch(
        {project: {"max_concurrent_commands": LIMIT}},
        database_url=db_url,
        max_queue=CAP,
        concurrent_commands=5,
    ) as rdev:
        clients = [rdev.admin]
        await _hold_every_slot(clients, project)
        accepted = await _burst(clients, project)
        await _drain_within_limit(
            clients, project, rdev.workspace(project), accepted, one_replica=True
        )


async def test_a_replay_of_an_accepted_command_is_not_refused_by_a_full_queue(
    launch: Launch, db_url: str
) -> None:
    project = f"replay-{uuid.uuid4().hex[:8]}"
    async with launch(
        {project: {"max_concurrent_commands": 1}}, database_url=db_url, max_queue=2
    ) as rdev:
        rdev_: Running = rdev
        body = {"argv": ["sh", "-c", GATE.format(flag="open")]}
        first = await rdev_.admin.post(f"/projects/{project}/shell", json=body)
        await wait_status(rdev_.admin, first.json()["data"]["command_id"], "running")
        same = {"Idempotency-Key": "once"}
        posts = await asyncio.gather(
            *(
                rdev_.admin.post(
                    f"/projects/{project}/shell", json={"argv": ["true"]}, headers=same
                )
                for _ in range(10)
            )
        )
        assert sorted(r.status_code for r in posts) == [200] * 9 + [201]
        assert len({r.json()["data"]["command_id"] for r in posts}) == 1
        other = await rdev_.admin.post(f"/projects/{project}/shell", json={"argv": ["true"]})
        assert other.status_code == 201
        full = await rdev_.admin.post(f"/projects/{project}/shell", json={"argv": ["true"]})
        assert full.status_code == 429
        again = await rdev_.admin.post(
            f"/projects/{project}/shell", json={"argv": ["true"]}, headers=same
        )
        assert again.status_code == 200  # the queue is full, but this one is already in it
        (rdev_.workspace(project) / "open").touch()


@pytest.mark.postgres
async def test_two_replicas_on_one_postgres_hold_the_cap_and_limits_under_a_burst(
    pg_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    project = f"shared-{uuid.uuid4().hex[:8]}"
    make_project(root, project, f"max_concurrent_commands = {LIMIT}\n")
    async with two_replicas(pg_url, root, tmp_path, RDEV_MAX_QUEUE=str(CAP)) as clients:
        await _hold_every_slot(clients, project)
        accepted = await _burst(clients, project)
        await _drain_within_limit(clients, project, root / project, accepted, one_replica=False)


@pytest.mark.postgres
async def test_two_replicas_starting_a_burst_at_once_hold_the_project_limit(
    pg_url: str, tmp_path: Path
) -> None:
    """Into an idle project, both replicas start commands in the submissions' own transactions:
    exactly LIMIT of BURST answer `running` (from either replica), the rest queue at distinct
    positions, and the limit holds while they drain."""
    root = tmp_path / "ws"
    project = f"idle-{uuid.uuid4().hex[:8]}"
    make_project(root, project, f"max_concurrent_commands = {LIMIT}\n")
    async with two_replicas(pg_url, root, tmp_path, RDEV_MAX_QUEUE=str(BURST)) as clients:
        body = {"argv": ["sh", "-c", GATE.format(flag="open")]}
        responses = await asyncio.gather(
            *(clients[i % 2].post(f"/projects/{project}/shell", json=body) for i in range(BURST))
        )
        assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
        views = [r.json()["data"] for r in responses]
        running = [v for v in views if v["status"] == "running"]
        queued = [v for v in views if v["status"] == "queued"]
        assert len(running) == LIMIT and len(queued) == BURST - LIMIT
        assert all(v["queue_position"] is None for v in running)
        assert sorted(v["queue_position"] for v in queued) == list(range(1, BURST - LIMIT + 1))
        assert await _running(clients[0], project) == LIMIT
        accepted = sorted(queued, key=lambda v: v["queue_position"])
        await _drain_within_limit(clients, project, root / project, accepted, one_replica=False)
