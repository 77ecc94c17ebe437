"""What survives: queued commands across a restart, commands of a dead replica (swept to
`lost`), graceful shutdown with open streams, and two replicas sharing one PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rdev.bootstrap import build_store
from rdev.config import Settings
from rdev.domain.models import Command, CommandKind, CommandStatus, Event, EventType, Priority
from tests.support import (
    command_status,
    eventually,
    make_project,
    read_sse,
    serve,
    start_replica,
    two_replicas,
    wait_status,
)

GATE = "while [ ! -f {flag} ]; do sleep 0.02; done; echo released"


async def test_queued_commands_survive_a_restart(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        shutdown_budget_seconds=3.5, shutdown_drain_seconds=0, kill_grace_seconds=0.2
    )
    make_project(settings.workspace_root, "solo", "max_concurrent_commands = 1\n")
    async with serve(settings) as first:
        blocker = (
            await first.admin.post(
                "/projects/solo/shell", json={"argv": ["sh", "-c", GATE.format(flag="x")]}
            )
        ).json()["data"]
        await wait_status(first.admin, blocker["command_id"], "running")
        queued = (
            await first.admin.post("/projects/solo/shell", json={"argv": ["echo", "after restart"]})
        ).json()["data"]
        assert queued["status"] == "queued"
    async with serve(settings) as second:
        done = await wait_status(second.admin, queued["command_id"], "succeeded")
        assert done["exit_code"] == 0
        events = await read_sse(second.admin, f"/commands/{queued['command_id']}/events")
        assert [e.data["line"] for e in events if e.event == "output"] == ["after restart"]
        lost = await command_status(second.admin, blocker["command_id"])
        assert lost["status"] == "lost"  # its replica shut down before it finished


async def test_running_command_of_a_dead_replica_is_swept_to_lost(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(lease_seconds=1.5)
    make_project(settings.workspace_root, "demo")
    store = build_store(settings)
    await store.db.migrate()
    now = datetime.now(UTC)
    cmd = Command(
        id="cmd_000000000001deadbeef0001", project_id="demo", kind=CommandKind.SHELL,
        argv=("sleep", "1000"), status=CommandStatus.QUEUED, priority=Priority.NORMAL,
        created_at=now, timeout_seconds=600,
    )  # fmt: skip
    await store.commands.add(cmd, Event(cmd.id, 1, EventType.STATUS, {"status": "queued"}))
    claimed = await store.commands.claim(
        owner="dead-replica", lease_until=now - timedelta(seconds=1), now=now, slots=1,
        project_limit=lambda _p: 5,
    )  # fmt: skip
    assert [c.id for c in claimed] == [cmd.id]
    await store.close()
    async with serve(settings) as rdev:
        done = await wait_status(rdev.admin, cmd.id, "lost", timeout=10)
        assert done["error"] == "lease expired"
        events = await read_sse(rdev.admin, f"/commands/{cmd.id}/events")
        assert [e.event for e in events][-2:] == ["error", "complete"]
        assert events[-2].data["code"] == "LEASE_EXPIRED"


async def test_sigterm_closes_streams_with_a_retry_hint_and_exits_in_time(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    make_project(root, "demo")
    env = {"RDEV_DATA_DIR": str(tmp_path / "data"), "RDEV_LOCAL_ROOT": str(root),
           "RDEV_SHUTDOWN_BUDGET_SECONDS": "5", "RDEV_SHUTDOWN_DRAIN_SECONDS": "0.5",
           "RDEV_KILL_GRACE_SECONDS": "1"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "keys", "create", "--name", "t", "--scope", "admin",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    key = (await proc.communicate())[0].decode().strip()
    replica = await start_replica(env, cwd=tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=replica.url, headers=headers, timeout=30) as client:
        quick = (
            await client.post(
                "/projects/demo/shell", json={"argv": ["sh", "-c", "sleep 0.5; echo ok"]}
            )
        ).json()["data"]
        slow = (await client.post("/projects/demo/shell", json={"argv": ["sleep", "1000"]})).json()[
            "data"
        ]
        await wait_status(client, slow["command_id"], "running")
        opened = asyncio.Event()
        reader = asyncio.create_task(
            read_sse(client, f"/commands/{slow['command_id']}/events", until="error", opened=opened)
        )
        await asyncio.wait_for(opened.wait(), 10)  # the stream is open before the signal
        started = time.monotonic()
        code = await replica.stop(signal.SIGTERM, timeout=15)
        elapsed = time.monotonic() - started
        events = await reader
    # uvicorn re-raises the signal after its graceful shutdown, so the status reflects SIGTERM
    assert code in (0, -signal.SIGTERM)
    assert elapsed < 8, elapsed
    assert events[-1].event == "error" and events[-1].data["code"] == "SHUTTING_DOWN"
    replica2 = await start_replica(env, cwd=tmp_path)
    async with httpx.AsyncClient(base_url=replica2.url, headers=headers, timeout=30) as client:
        assert (await command_status(client, quick["command_id"]))["status"] == "succeeded"
        assert (await command_status(client, slow["command_id"]))["status"] == "lost"
    await replica2.stop()


@pytest.mark.postgres
async def test_two_replicas_share_the_queue_and_stream_each_others_commands(
    pg_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    make_project(root, "shared", "max_concurrent_commands = 2\n")
    async with two_replicas(pg_url, root, tmp_path) as clients:
        ids = []
        for i in range(6):
            body = {"argv": ["sh", "-c", GATE.format(flag=f"g{i}")]}
            resp = await clients[i % 2].post("/projects/shared/shell", json=body)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["data"]["command_id"])

        async def statuses() -> list[str]:
            return [(await command_status(clients[0], c))["status"] for c in ids]

        async def two_running() -> bool:
            return (await statuses()).count("running") == 2

        await eventually(two_running)
        for _ in range(20):  # the limit holds across both replicas, however often we look
            assert (await statuses()).count("running") <= 2
        running = [c for c, s in zip(ids, await statuses(), strict=True) if s == "running"]
        owners = {}
        for cid in running:
            owners[cid] = await _owner(pg_url, cid)
        opened = [asyncio.Event() for _ in running for _ in clients]
        streams = [(cid, client) for cid in running for client in clients]
        readers = [
            asyncio.create_task(read_sse(client, f"/commands/{cid}/events", opened=flag))
            for (cid, client), flag in zip(streams, opened, strict=True)
        ]  # each command is read on its own replica and on the other one
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in opened)), 10)
        for i in range(6):
            (root / "shared" / f"g{i}").touch()
        for events in await asyncio.gather(*readers):
            assert [e.data["line"] for e in events if e.event == "output"] == ["released"]
            assert events[-1].data["status"] == "succeeded"
        for cid in ids:
            await wait_status(clients[1], cid, "succeeded")
        # a reader that read part of a stream on one replica resumes on the other, losing nothing
        head = await read_sse(clients[0], f"/commands/{ids[0]}/events", stop_after=2)
        tail = await read_sse(
            clients[1], f"/commands/{ids[0]}/events", headers={"Last-Event-ID": str(head[-1].id)}
        )
        assert [e.event for e in head + tail] == [
            "connected",
            "status",
            "connected",
            "status",
            "output",
            "status",
            "complete",
        ]
        assert len(set(owners.values())) >= 1


async def _owner(pg_url: str, cid: str) -> str:
    import psycopg

    dsn = "postgresql://" + pg_url.split("://", 1)[1]
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (
            await conn.execute("SELECT lease_owner FROM commands WHERE id = %s", (cid,))
        ).fetchone()
    return str(row[0]) if row else ""
