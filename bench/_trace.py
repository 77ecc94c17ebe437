"""Diagnosis behind `--trace` (bench.latency, bench.idle_streams): rdev in this process
(uvicorn in-process, as tests/support.py runs it), with every coroutine method of the SQL
stores and the local backend wrapped in a timer, so each `echo hi` shows which awaited calls
it waited for and how long each took. The wrappers live only in this process; src/ is unchanged.
In-process numbers include the client's share of the one event loop, so they are a breakdown,
not the headline figure."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench._common import PROJECT, StreamStats, median, read_stream, submit

Timings = collections.defaultdict[str, list[float]]


def _wrap(cls: type, name: str, timings: Timings) -> Callable[[], None]:
    original: Callable[..., Awaitable[Any]] = getattr(cls, name)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            timings[f"{cls.__name__}.{name}"].append((time.perf_counter() - t0) * 1000)

    setattr(cls, name, timed)
    return lambda: setattr(cls, name, original)


def _instrument(timings: Timings) -> list[Callable[[], None]]:
    from rdev.adapters.local.backend import LocalBackend
    from rdev.adapters.sql.audit import SqlAuditLog
    from rdev.adapters.sql.commands import SqlCommandStore
    from rdev.adapters.sql.events import SqlEventLog
    from rdev.adapters.sql.keys import SqlKeyStore

    undo = []
    for cls in (SqlCommandStore, SqlEventLog, SqlAuditLog, SqlKeyStore, LocalBackend):
        for name, value in list(vars(cls).items()):
            if inspect.iscoroutinefunction(value) and not name.startswith("__"):
                undo.append(_wrap(cls, name, timings))
    return undo


@asynccontextmanager
async def _serve_inprocess(**settings: Any) -> AsyncIterator[tuple[int, str]]:
    """rdev under uvicorn in this process on a temporary data directory with a `demo` project;
    yields the port and an admin key."""
    from rdev import logsetup
    from rdev.bootstrap import build
    from rdev.config import Settings
    from rdev.services.audit import SYSTEM
    from rdev.services.keys import NewKey

    logsetup.configure(level="warning")
    root = Path(tempfile.mkdtemp(prefix="rdev-bench-trace-"))
    (root / "workspaces" / PROJECT).mkdir(parents=True)
    app = build(
        Settings(
            data_dir=root / "data",
            local_root=root / "workspaces",
            rate_limit_rps=100_000,
            log_level="warning",
            **settings,
        )
    )
    srv = uvicorn.Server(uvicorn.Config(app.http, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(srv.serve())
    try:
        for _ in range(3000):  # up to 30 s
            if srv.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not srv.started:
            raise RuntimeError("in-process uvicorn did not start")
        port: int = srv.servers[0].sockets[0].getsockname()[1]
        issued = await app.services.keys.issue(
            NewKey(name="trace", scopes=["admin"]), actor=SYSTEM, by=None
        )
        yield port, issued.secret
    finally:
        srv.should_exit = True
        await task
        shutil.rmtree(root, ignore_errors=True)


def _client(port: int, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
    )


async def trace_latency(runs: int, db: str = "sqlite") -> list[str]:
    from bench._common import database

    timings: Timings = collections.defaultdict(list)
    undo = _instrument(timings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(database(db))
            pg = {} if url == "sqlite" else {"database_url": "postgresql+psycopg://" + url[13:]}
            port, key = await stack.enter_async_context(_serve_inprocess(**pg))
            c = await stack.enter_async_context(_client(port, key))
            for i in range(runs + 5):
                if i == 5:
                    timings.clear()  # warm-up done
                t0 = time.perf_counter()
                command_id = await submit(c, ["echo", "hi"])
                posted = time.perf_counter()
                stats = await read_stream(c, command_id, StreamStats())
                assert stats.first_output_at is not None
                timings["(client) POST -> 201"].append((posted - t0) * 1000)
                timings["(client) POST -> first output"].append((stats.first_output_at - t0) * 1000)
                await asyncio.sleep(0.02)
    finally:
        for restore in undo:
            restore()
    out = [f"  in-process trace of {runs} `echo hi` runs (awaited store/backend calls):"]
    out.append(f"    {'call':<40} {'per run':>7} {'median ms':>10} {'ms per run':>11}")
    for name, values in sorted(timings.items(), key=lambda kv: -sum(kv[1])):
        per_run = len(values) / runs
        out.append(
            f"    {name:<40} {per_run:7.1f} {median(values):10.2f} {sum(values) / runs:11.2f}"
        )
    return out


async def _open_raw_stream(port: int, key: str, command_id: str) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET /commands/{command_id}/events HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    buf = b""
    while b"event: connected" not in buf:
        got = await loop.sock_recv(sock, 4096)
        if not got:
            sock.close()
            raise RuntimeError(f"stream closed before `connected`: {buf[:300]!r}")
        buf += got
    return sock


def _owner(stat: Any) -> str:
    """The innermost package (or rdev module) on an allocation's stack."""
    for frame in reversed(stat.traceback):
        name: str = frame.filename
        if "site-packages/" in name:
            return name.split("site-packages/")[1].split("/")[0]
        if "/src/rdev/" in name:
            return "rdev/" + name.split("/src/rdev/")[1]
    return "python stdlib / other"


async def trace_stream_memory(streams: int) -> list[str]:
    """tracemalloc over `streams` idle SSE streams held by an in-process rdev: live Python
    memory per stream, attributed to the innermost package on each allocation's stack."""
    import gc
    import tracemalloc

    socks: list[socket.socket] = []
    limits = {"max_streams_per_key": streams + 100, "max_streams": streams + 100}
    async with (
        _serve_inprocess(concurrent_commands=10, **limits) as (port, key),
        _client(port, key) as c,
    ):
        ids = [await submit(c, ["sleep", "600"], timeout_seconds=300) for _ in range(10)]
        await asyncio.sleep(1.5)
        try:
            for sock in [await _open_raw_stream(port, key, ids[0]) for _ in range(20)]:
                sock.close()  # warm-up
            await asyncio.sleep(1)
            gc.collect()
            tracemalloc.start(30)
            before = tracemalloc.take_snapshot()
            for i in range(streams):
                socks.append(await _open_raw_stream(port, key, ids[i % len(ids)]))
            await asyncio.sleep(1)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tasks = len(asyncio.all_tasks())
            tracemalloc.stop()
        finally:
            for sock in socks:
                sock.close()
            for command_id in ids:
                await c.post(f"/commands/{command_id}/cancel")
    by_owner: collections.Counter[str] = collections.Counter()
    for stat in after.compare_to(before, "traceback"):
        by_owner[_owner(stat)] += stat.size_diff
    total = sum(by_owner.values())
    out = [
        f"  in-process tracemalloc over {streams:,} idle streams: {total / streams:,.0f} B of live "
        f"Python objects per stream, {tasks / streams:.1f} asyncio tasks per stream "
        "(innermost package on the allocating stack):"
    ]
    for owner, size in by_owner.most_common(12):
        out.append(f"    {owner:<44} {size / streams:7,.0f} B/stream")
    return out
