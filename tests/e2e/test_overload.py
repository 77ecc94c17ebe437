"""Honest traffic keeps working while the server is attacked: `rdev serve` in its own process
with 256 file descriptors, flooded with 400 SSE stream attempts and 1,000 clients that send
their request head one byte at a time, must keep answering /health, /ready and an honest
client's git submission within a few seconds; the flood is refused or cut off."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import eventually, free_port

FD_LIMIT = 256
STREAM_ATTEMPTS = 400
SLOW_SENDERS = 1000
HONEST_DEADLINE = 5.0  # seconds an honest request may take under attack
HONEST_RETRIES: list[str] = []


def _limit_fds() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    url: str
    port: int
    admin_key: str
    log: Path


async def _cli(*args: str, env: dict[str, str], cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@contextlib.asynccontextmanager
async def limited_server(tmp_path: Path, **env_extra: str) -> AsyncIterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "RDEV_DATA_DIR": str(tmp_path / "data"),
        "RDEV_LOCAL_ROOT": str(tmp_path / "ws"),
        "RDEV_LOG_LEVEL": "warning",
        "RATE_LIMIT_RPS": "1000",
        "PORT": str(port),
        **env_extra,
    }
    key = await _cli("keys", "create", "--name", "admin", "--scope", "admin", env=env, cwd=tmp_path)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rdev", "serve", "--demo", "--host", "127.0.0.1",
            env=env, cwd=tmp_path, stdout=out, stderr=out, preexec_fn=_limit_fds,
        )  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}", port, key.strip().splitlines()[-1], log)

    async def healthy() -> bool:
        assert proc.returncode is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{server.url}/health")).status_code == 200
        return False

    try:
        await eventually(healthy, timeout=30, interval=0.1)
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    cut_off: int = 0  # connections the server closed before answering
    errors: int = 0  # connections that could not even be made

    def add(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _status_line(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head[9:12])


async def open_stream(
    server: Server, path: str, key: str, tally: Tally, stop: asyncio.Event
) -> None:
    """One SSE stream attempt; an accepted stream is held open until `stop`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    except OSError:
        tally.errors += 1
        return
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        )
        try:
            status = await asyncio.wait_for(_status_line(reader), 20)
        except (asyncio.IncompleteReadError, OSError):
            tally.cut_off += 1
            return
        tally.add(status)
        if status == 200:
            await stop.wait()
    finally:
        writer.close()


async def slow_sender(server: Server, tally: Tally, stop: asyncio.Event) -> None:
    """A request head sent one byte a second, never finished: until the server cuts it off."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    except OSError:
        tally.errors += 1
        return
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    try:
        for byte in head:
            if stop.is_set():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(reader.read(1024), 1.0)
                tally.cut_off += 1  # the server answered (408/503) or closed: either ends it
                tally.add(int(data[9:12]) if data else 0)  # 0: closed without a word (shed)
                return
    except OSError:
        tally.cut_off += 1
        tally.add(0)
    finally:
        writer.close()


async def patiently(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """What an honest client does with 503 OVERLOADED: wait Retry-After, try again (the server
    refuses a new connection when every open one is being served or is brand new: during a
    burst of connections, an honest one is told so, cleanly, rather than left hanging). It
    tries again while the promise lasts: served within HONEST_DEADLINE, retries included (the
    test asserts that bound on the whole call, not a number of tries)."""
    ends = time.monotonic() + HONEST_DEADLINE
    while True:
        resp = await call()
        if resp.status_code != 503 or resp.json()["error"]["code"] != "OVERLOADED":
            return resp
        HONEST_RETRIES.append(resp.json()["error"]["message"])
        wait = min(1.0, float(resp.headers.get("retry-after", "1")))
        if time.monotonic() + wait >= ends:
            return resp
        await asyncio.sleep(wait)


async def honest_round(server: Server) -> dict[str, float]:
    """/health, /ready and a git submission, each on a fresh connection, timed (retries
    included)."""
    timings: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=HONEST_DEADLINE * 2, limits=limits
    ) as client:
        for name, call in (
            ("health", lambda: client.get("/health")),
            ("ready", lambda: client.get("/ready")),
            ("git", lambda: client.post("/projects/demo/git", json={"args": ["status"]})),
        ):
            started = time.monotonic()
            resp = await patiently(call)
            timings[name] = time.monotonic() - started
            assert resp.status_code in (200, 201), (name, resp.status_code, resp.text)
            if name == "git":
                command_id = resp.json()["data"]["command_id"]

        async def finished() -> dict[str, object] | None:
            got = await client.get(f"/commands/{command_id}")
            assert got.status_code == 200, got.text
            data: dict[str, object] = got.json()["data"]
            return data if data["status"] not in ("queued", "running") else None

        started = time.monotonic()
        command = await eventually(finished, timeout=HONEST_DEADLINE * 2, interval=0.1)
        assert command["status"] == "succeeded", command
        timings["git-complete"] = time.monotonic() - started
    return timings


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_honest_clients_are_served_while_streams_and_slow_senders_flood_the_server(
    tmp_path: Path,
) -> None:
    async with limited_server(tmp_path) as server:
        admin = httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.admin_key}"},
            timeout=30,
        )
        async with admin:
            keys = []
            for i in range(4):
                resp = await admin.post(
                    "/keys", json={"name": f"streamer{i}", "scopes": ["commands:read"]}
                )
                assert resp.status_code == 201, resp.text
                keys.append(resp.json()["data"]["key"])
            resp = await admin.post("/projects/demo/shell", json={"argv": ["sleep", "120"]})
            assert resp.status_code == 201, resp.text
            command_id = resp.json()["data"]["command_id"]
            assert (await honest_round(server))["health"] < HONEST_DEADLINE

            stop = asyncio.Event()
            streams, slow = Tally(), Tally()
            # one key tries 150 streams, three more try the rest: the per-key limit (100) and
            # the replica's limit are both met
            plan = [keys[0]] * 150 + [keys[1 + i % 3] for i in range(STREAM_ATTEMPTS - 150)]
            attackers = [
                asyncio.create_task(
                    open_stream(server, f"/commands/{command_id}/events", key, streams, stop)
                )
                for key in plan
            ]

            async def waves() -> None:  # the slow senders arrive 100 at a time, over 5 s
                for _ in range(SLOW_SENDERS // 100):
                    attackers.extend(
                        asyncio.create_task(slow_sender(server, slow, stop)) for _ in range(100)
                    )
                    await asyncio.sleep(0.5)

            attackers.append(asyncio.create_task(waves()))
            try:
                rounds = []
                ends = time.monotonic() + 20  # past the 10 s header deadline
                while time.monotonic() < ends:
                    rounds.append(await honest_round(server))
                    await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*attackers, return_exceptions=True), 30)
            await admin.post(f"/commands/{command_id}/cancel")

    worst = {name: max(r[name] for r in rounds) for name in rounds[0]}
    print(f"\nhonest rounds: {len(rounds)}; worst seconds: {worst}")
    print(f"streams: {streams}; slow senders: {slow}; honest retries: {len(HONEST_RETRIES)}")
    assert len(rounds) >= 5
    assert all(t < HONEST_DEADLINE for t in worst.values()), worst
    # the flood was refused or cut off, not served
    assert streams.statuses.get(429, 0) >= 50, streams  # the per-key limit
    assert streams.statuses.get(503, 0) >= 1, streams  # the replica's limit
    assert streams.statuses.get(200, 0) < FD_LIMIT, streams
    assert slow.cut_off + slow.errors >= SLOW_SENDERS * 0.9, slow
