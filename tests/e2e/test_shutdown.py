"""Shutdown fits the pod: `rdev serve` as a real process gets SIGTERM while a command that
ignores SIGTERM runs, an SSE stream is open and a slow request is half sent. It keeps answering
on new connections during the drain (/health 200, /ready 503), ends the stream with
SHUTTING_DOWN, answers the slow request with a clean 503, ends the command as `lost`, and exits
within RDEV_SHUTDOWN_BUDGET_SECONDS (+1 s). On both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from rdev.adapters.sql.store import build_store
from rdev.config import Settings
from tests.kube.server import FakeKubeApi
from tests.support import eventually, make_project, processes_under, read_sse, start_replica

BUDGET = 8.0
DRAIN = 3.0
KILL_GRACE = 1.0
STUBBORN = "trap '' TERM; echo started; while :; do sleep 0.1; done"
pytestmark = pytest.mark.slow


@pytest.fixture(params=["local", pytest.param("kubernetes", marks=pytest.mark.kubernetes)])
async def backend_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    """The environment for `rdev serve` on this backend, with one project `demo`; the
    folder its processes run in is under RDEV_TEST_WORKSPACE."""
    if request.param == "local":
        root = tmp_path / "ws"
        make_project(root, "demo")
        yield {"RDEV_LOCAL_ROOT": str(root), "RDEV_TEST_WORKSPACE": str(root / "demo")}
        return
    kube = FakeKubeApi(tmp_path / "pods", bookmark_interval=0.2)
    await kube.start()
    try:
        pod = "claudebox-demo-0"
        kube.create_pod(pod, labels={"rdev.orchard9.ai/project": "true",
                                     "rdev.orchard9.ai/name": "demo"})  # fmt: skip
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        yield {"RDEV_BACKEND": "kubernetes", "RDEV_KUBECONFIG": str(kubeconfig),
               "RDEV_TEST_WORKSPACE": str(kube.pod_dir(pod))}  # fmt: skip
    finally:
        await kube.stop()


async def _admin_key(env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "keys", "create", "--name", "t", "--scope", "admin",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip()


class SlowRequest:
    """A POST whose body never finishes arriving: it is open when SIGTERM comes."""

    def __init__(self, url: str, key: str) -> None:
        self._host, self._port = url.removeprefix("http://").split(":")
        self._key = key
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, int(self._port))
        head = (
            "POST /projects/demo/shell HTTP/1.1\r\n"
            f"Host: {self._host}\r\nAuthorization: Bearer {self._key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            '{"argv": ['
        )
        self._writer.write(head.encode())
        await self._writer.drain()

    async def response(self) -> tuple[int, dict[str, object]]:
        assert self._reader is not None
        raw = await self._reader.read()  # the server closes the connection after answering
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
        return status, json.loads(body) if body.startswith(b"{") else {"raw": body.decode()}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


@asynccontextmanager
async def _client(url: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        yield client


async def _fresh_get(url: str, path: str) -> httpx.Response:
    """On a new connection: a replica that stopped listening refuses it."""
    async with httpx.AsyncClient(base_url=url, timeout=3) as client:
        return await client.get(path)


async def test_sigterm_drains_then_exits_within_the_budget_with_no_500(
    backend_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {**backend_env, "RDEV_DATA_DIR": str(data),
           "RDEV_SHUTDOWN_BUDGET_SECONDS": str(BUDGET), "RDEV_SHUTDOWN_DRAIN_SECONDS": str(DRAIN),
           "RDEV_KILL_GRACE_SECONDS": str(KILL_GRACE)}  # fmt: skip
    key = await _admin_key(env)
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        replica = await start_replica(env, cwd=tmp_path, stderr=stderr)
    slow = SlowRequest(replica.url, key)
    try:
        async with _client(replica.url, key) as client:
            resp = await client.post("/projects/demo/shell", json={"argv": ["sh", "-c", STUBBORN]})
            assert resp.status_code == 201, resp.text
            command_id = resp.json()["data"]["command_id"]
            opened = asyncio.Event()
            stream = asyncio.create_task(
                read_sse(client, f"/commands/{command_id}/events", until="error", opened=opened)
            )
            await asyncio.wait_for(opened.wait(), 10)
            events_path = f"/commands/{command_id}/output"

            async def started() -> bool:
                return "started" in (await client.get(events_path)).text

            await eventually(started, timeout=10)
            await slow.open()

            replica.proc.send_signal(signal.SIGTERM)
            sigterm_at = time.monotonic()

            async def not_ready() -> bool:
                return (await _fresh_get(replica.url, "/ready")).status_code == 503

            await eventually(not_ready, timeout=DRAIN / 2)
            # still in the drain: new connections are accepted and answered
            health = await _fresh_get(replica.url, "/health")
            assert health.status_code == 200
            assert health.headers["connection"] == "close"  # keep-alive clients move on
            ready = (await _fresh_get(replica.url, "/ready")).json()
            assert ready["error"]["code"] == "NOT_READY"
            assert ready["error"]["details"]["checks"]["shutdown"]["ok"] is False
            refused = await client.post("/projects/demo/shell", json={"argv": ["true"]})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "SHUTTING_DOWN"
            late = await read_sse(client, f"/commands/{command_id}/events", until="error")
            assert late[-1].data["code"] == "SHUTTING_DOWN"  # a stream opened now ends at once
            assert time.monotonic() - sigterm_at < DRAIN, "checked after the drain ended"

            events = await asyncio.wait_for(stream, BUDGET)
            assert events[-1].event == "error"
            assert events[-1].data["code"] == "SHUTTING_DOWN"

            code = await asyncio.wait_for(replica.proc.wait(), BUDGET + 5)
            elapsed = time.monotonic() - sigterm_at
            status, body = await asyncio.wait_for(slow.response(), 5)
    finally:
        slow.close()
        if replica.proc.returncode is None:
            replica.proc.kill()
            await replica.proc.wait()
        leftovers = processes_under(Path(backend_env["RDEV_TEST_WORKSPACE"]))
        for pid in leftovers:  # a failed run must not leave the stubborn command behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    assert code in (0, -signal.SIGTERM)
    assert elapsed < BUDGET + 1, f"exited {elapsed:.1f} s after SIGTERM"
    assert status == 503, body
    assert body["error"]["code"] == "SHUTTING_DOWN"  # type: ignore[index]
    log = stderr_path.read_text()
    assert "Exception in ASGI application" not in log
    assert "Traceback" not in log

    store = build_store(Settings(data_dir=data))
    try:
        cmd = await store.commands.get(command_id)
    finally:
        await store.close()
    assert cmd is not None
    assert cmd.status.value == "lost"
    assert "shut down" in (cmd.error or "")
    assert not leftovers
