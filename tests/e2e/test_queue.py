"""Per-project limits, the priority queue, cancel and timeouts (whole process groups)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import Launch
from tests.support import (
    Running,
    command_status,
    eventually,
    processes_under,
    read_sse,
    wait_status,
)

WAIT_FOR_FILE = "while [ ! -f {flag} ]; do sleep 0.02; done; echo released {flag}"


@pytest.fixture
async def limited(launch: Launch) -> AsyncIterator[Running]:
    projects: dict[str, dict[str, Any]] = {"demo": {}, "solo": {"max_concurrent_commands": 1}}
    async with launch(projects, concurrent_commands=5, max_queue=3) as running:
        yield running


async def _blocker(rdev: Running, project: str, flag: str, **extra: Any) -> dict[str, Any]:
    body = {"argv": ["sh", "-c", WAIT_FOR_FILE.format(flag=flag)], **extra}
    resp = await rdev.admin.post(f"/projects/{project}/shell", json=body)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


def _release(rdev: Running, project: str, flag: str) -> None:
    (rdev.workspace(project) / flag).touch()


async def test_sixth_command_waits_for_a_free_slot(limited: Running) -> None:
    first = [await _blocker(limited, "demo", f"f{i}") for i in range(5)]
    for cmd in first:
        await wait_status(limited.admin, cmd["command_id"], "running")
    sixth = await _blocker(limited, "demo", "f6")
    assert sixth["status"] == "queued"
    assert sixth["queue_position"] == 1
    assert (await command_status(limited.admin, sixth["command_id"]))["status"] == "queued"
    _release(limited, "demo", "f0")
    await wait_status(limited.admin, first[0]["command_id"], "succeeded")
    await wait_status(limited.admin, sixth["command_id"], "running")
    for i in range(1, 7):
        _release(limited, "demo", f"f{i}")
    await wait_status(limited.admin, sixth["command_id"], "succeeded")


async def test_queue_starts_by_priority_then_arrival(limited: Running) -> None:
    blocker = await _blocker(limited, "solo", "go")
    await wait_status(limited.admin, blocker["command_id"], "running")
    order = []
    for name, prio in [("low1", "low"), ("normal1", "normal"), ("high1", "high")]:
        order.append((name, await _blocker(limited, "solo", name, priority=prio)))
    positions = {name: (await command_status(limited.admin, c["command_id"]))["queue_position"]
                 for name, c in order}  # fmt: skip
    assert positions == {"high1": 1, "normal1": 2, "low1": 3}
    full = await limited.admin.post("/projects/solo/shell", json={"argv": ["true"]})
    assert full.status_code == 429
    assert full.json()["error"]["code"] == "QUEUE_FULL"
    assert "retry-after" in full.headers
    _release(limited, "solo", "go")
    started = []
    for name in ("high1", "normal1", "low1"):
        cmd = dict(order)[name]
        await wait_status(limited.admin, cmd["command_id"], "running")
        started.append(name)
        _release(limited, "solo", name)
        await wait_status(limited.admin, cmd["command_id"], "succeeded")
    assert started == ["high1", "normal1", "low1"]


async def test_cancel_running_ends_the_whole_process_group(limited: Running) -> None:
    workspace = limited.workspace("demo")
    resp = await limited.admin.post(
        "/projects/demo/shell",
        json={"argv": ["sh", "-c", "sleep 1000 & echo started; sleep 1000"]},
    )
    cid = resp.json()["data"]["command_id"]
    await wait_status(limited.admin, cid, "running")
    await eventually(lambda: len(processes_under(workspace)) >= 2)
    first = await limited.admin.post(f"/commands/{cid}/cancel")
    assert first.status_code == 200
    done = await wait_status(limited.admin, cid, "cancelled")
    again = await limited.admin.post(f"/commands/{cid}/cancel")
    assert again.status_code == 200 and again.json()["data"]["status"] == "cancelled"
    assert done["finished_at"] is not None
    await eventually(lambda: processes_under(workspace) == [], timeout=5)
    events = await read_sse(limited.admin, f"/commands/{cid}/events")
    assert events[-1].event == "complete" and events[-1].data["status"] == "cancelled"


async def test_cancel_queued_command(limited: Running) -> None:
    blocker = await _blocker(limited, "solo", "gate")
    await wait_status(limited.admin, blocker["command_id"], "running")
    queued = await _blocker(limited, "solo", "never")
    resp = await limited.admin.post(f"/commands/{queued['command_id']}/cancel")
    assert resp.json()["data"]["status"] == "cancelled"
    events = await read_sse(limited.admin, f"/commands/{queued['command_id']}/events")
    assert [e.event for e in events] == ["connected", "status", "status", "complete"]
    assert events[-1].data["status"] == "cancelled"
    _release(limited, "solo", "gate")
    await wait_status(limited.admin, blocker["command_id"], "succeeded")
    assert (await command_status(limited.admin, queued["command_id"]))["status"] == "cancelled"


async def test_timeout_kills_the_process_group(limited: Running) -> None:
    workspace = limited.workspace("demo")
    resp = await limited.admin.post(
        "/projects/demo/shell",
        json={"argv": ["sh", "-c", "sleep 1000 & echo started; sleep 1000"], "timeout_seconds": 1},
    )
    cid = resp.json()["data"]["command_id"]
    events = await read_sse(limited.admin, f"/commands/{cid}/events")
    assert events[-1].data["status"] == "timed_out"
    assert any(e.event == "error" and e.data["code"] == "TIMEOUT" for e in events)
    await eventually(lambda: processes_under(workspace) == [], timeout=5)


async def test_project_settings_limit_command_kinds(
    launch: Launch,
) -> None:
    async with launch({"gitonly": {"allowed_commands": ["git"]}}) as rdev:
        resp = await rdev.admin.post("/projects/gitonly/shell", json={"argv": ["true"]})
        assert resp.status_code == 403
        assert resp.json()["error"]["details"]["kind"] == "shell"
        missing = await rdev.admin.post("/projects/nope/shell", json={"argv": ["true"]})
        assert missing.status_code == 404


async def test_replica_wide_limit_holds_across_projects(launch: Launch) -> None:
    projects: dict[str, dict[str, Any]] = {"one": {}, "two": {}}
    async with launch(projects, replica_max_commands=2, concurrent_commands=5) as rdev:
        first = await _blocker(rdev, "one", "a")
        second = await _blocker(rdev, "two", "b")
        third = await _blocker(rdev, "two", "c")
        for cmd in (first, second):
            await wait_status(rdev.admin, cmd["command_id"], "running")
        assert (await command_status(rdev.admin, third["command_id"]))["status"] == "queued"
        _release(rdev, "one", "a")
        await wait_status(rdev.admin, third["command_id"], "running")
        _release(rdev, "two", "b")
        _release(rdev, "two", "c")
        await wait_status(rdev.admin, third["command_id"], "succeeded")
