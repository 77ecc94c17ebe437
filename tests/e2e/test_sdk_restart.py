"""A command's stream read through the SDK while the server restarts under it: `rdev serve`
is stopped mid-stream (SIGTERM: open streams end with SHUTTING_DOWN, the running command
finishes within its grace) and a new one starts on the same port and database. The handle
reconnects with backoff, resumes from its last event id, and every line arrives once, in
order."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from rdev.client import AsyncClient
from tests.support import eventually, free_port, make_project

GATED = (
    "for i in 1 2 3 4 5; do echo line$i; done; "
    "while [ ! -f gate ]; do sleep 0.02; done; "
    "for i in 6 7 8 9 10; do echo line$i; done"
)


@asynccontextmanager
async def rdev_serve(
    env: dict[str, str], port: int, cwd: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`rdev serve` on `port`, once /health answers; killed on the way out if still alive."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "serve", "--host", "127.0.0.1", "--port", str(port),
        env={**os.environ, **env, "RDEV_LOG_LEVEL": "warning"}, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    async def healthy() -> bool:
        assert proc.returncode is None, f"rdev exited with {proc.returncode}"
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await eventually(healthy, timeout=30, interval=0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def not_ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code != 200
    except httpx.TransportError:
        return True


async def admin_key(env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "keys", "create", "--db", "--name", "t", "--scope", "admin",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return out.decode().strip()


@pytest.mark.slow
async def test_a_stream_resumes_across_a_server_restart_without_gap_or_duplicate(
    db_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    make_project(root, "demo")
    env = {
        "RDEV_DATABASE_URL": db_url,
        "RDEV_DATA_DIR": str(tmp_path / "data"),
        "RDEV_LOCAL_ROOT": str(root),
        "RATE_LIMIT_RPS": "1000",
        "RDEV_SHUTDOWN_BUDGET_SECONDS": "8",
        "RDEV_SHUTDOWN_DRAIN_SECONDS": "0",
        "RDEV_KILL_GRACE_SECONDS": "0.2",
    }
    port = free_port()
    key = await admin_key(env)
    lines: list[str] = []
    seqs: list[int] = []
    async with AsyncClient(f"http://127.0.0.1:{port}", key, resume_timeout=60) as sdk:
        async with rdev_serve(env, port, tmp_path) as first:
            handle = await sdk.run("demo", ["sh", "-c", GATED])
            events = aiter(handle)
            async for event in events:
                if event.line is not None:
                    lines.append(event.line)
                if event.seq is not None:
                    seqs.append(event.seq)
                if event.line == "line5":
                    break
            first.send_signal(signal.SIGTERM)
            await eventually(lambda: not_ready(port))  # streams have ended with SHUTTING_DOWN
            (root / "demo" / "gate").write_text("")  # it finishes while the server drains
            await asyncio.wait_for(first.wait(), 30)  # gone: the port is free again
        async with rdev_serve(env, port, tmp_path):
            async for event in events:
                if event.line is not None:
                    lines.append(event.line)
                if event.seq is not None:
                    seqs.append(event.seq)
            final = await handle.wait()
    assert lines == [f"line{i}" for i in range(1, 11)]
    assert seqs == sorted(set(seqs)) and handle.reconnects >= 1
    assert (final.status, final.exit_code) == ("succeeded", 0)
