"""Authenticated request rate: `GET /projects` with an admin key (authentication, IP and scope
checks, the per-key rate limiter, the project scan) against `GET /health` (no authentication),
each for D seconds (default 5) over C keep-alive connections (default 50). Phases alternate and
repeat; medians are compared; target ratio >= 0.5.

The load generator is raw asyncio streams (a hand-written HTTP/1.1 request, the response read by
Content-Length), not httpx: an httpx client costs more CPU per request than the server does for
/health, and on 2 cores it would measure itself. The server's per-key limit is set to 100,000
requests/s (RATE_LIMIT_RPS) so it never answers 429 here.

`--profile` adds an in-process diagnosis: rdev's ASGI app (everything after uvicorn's HTTP
parsing) called directly for both paths, CPU per request, then cProfile's top functions."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._common import (
    PROJECT,
    BenchError,
    Result,
    Server,
    load_note,
    median,
    num,
    parser,
    run,
    server,
    verdict,
)

TARGET = 0.5


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    srv: Server, request: bytes, stop: float, warm_until: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        while (now := time.perf_counter()) < stop:
            writer.write(request)
            status = await _read_response(reader)
            if status != 200:
                raise BenchError(f"{request.split(b' ')[1].decode()} answered {status}")
            if now >= warm_until:
                counts[0] += 1
    finally:
        writer.close()


async def phase(srv: Server, path: str, *, auth: bool, connections: int, seconds: float) -> float:
    """Requests/second over `seconds`, after a 0.5 s warm-up that is not counted."""
    headers = f"Host: 127.0.0.1:{srv.port}\r\n"
    if auth:
        headers += f"Authorization: Bearer {srv.key}\r\n"
    request = f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode()
    counts = [0]
    start = time.perf_counter()
    warm_until = start + 0.5
    stop = warm_until + seconds
    await asyncio.gather(
        *(_worker(srv, request, stop, warm_until, counts) for _ in range(connections))
    )
    return counts[0] / (time.perf_counter() - warm_until)


Call = Callable[[], Awaitable[int]]


def _asgi_caller(app: Any, path: str, key: str | None) -> Call:
    """One GET of `path` straight into the ASGI app, as uvicorn would make it; its status."""
    headers = [(b"host", b"127.0.0.1")]
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    status = [0]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    async def call() -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "headers": list(headers),
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        await app(scope, receive, send)
        return status[0]

    return call


async def _cpu_per_request(call: Call, requests: int) -> float:
    """Microseconds of this process's CPU per request: the best of five batches."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(requests // 5):
            await call()
        best = min(best, (time.process_time() - t0) / (requests // 5) * 1e6)
    return best


async def profile(requests: int, top: int, sort: str) -> list[str]:
    from rdev import logsetup
    from rdev.bootstrap import build
    from rdev.config import Settings
    from rdev.services.audit import SYSTEM
    from rdev.services.keys import NewKey

    logsetup.configure(level="warning")
    root = Path(tempfile.mkdtemp(prefix="rdev-bench-profile-"))
    (root / "workspaces" / PROJECT).mkdir(parents=True)
    settings = Settings(
        data_dir=root / "data",
        local_root=root / "workspaces",
        rate_limit_rps=100_000,
        auth_failures_per_minute=1_000_000,
        log_level="warning",
    )
    app = build(settings)
    out = [f"  in-process profile: rdev's ASGI app called directly, {requests:,} requests per path"]
    try:
        async with app.lifespan(app.http):
            issued = await app.services.keys.issue(
                NewKey(name="b", scopes=["admin"]), actor=SYSTEM, by=None
            )
            calls = {
                "GET /health": _asgi_caller(app.http, "/health", None),
                "GET /projects": _asgi_caller(app.http, "/projects", issued.secret),
            }
            for name, call in calls.items():
                for _ in range(200):  # warm-up; also proves the path answers 200
                    if (status := await call()) != 200:
                        raise BenchError(f"{name} answered {status} in-process")
                out.append(f"    {name:<14} {await _cpu_per_request(call, requests):7.1f} µs CPU")
            for name, call in calls.items():
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(requests):
                    await call()
                prof.disable()
                text = io.StringIO()
                stats = pstats.Stats(prof, stream=text)
                stats.sort_stats(sort).print_stats(top)
                out.append(f"  cProfile of {name} (by {sort}; {requests:,} calls):")
                out.extend("    " + line for line in text.getvalue().splitlines() if line.strip())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


async def bench(args: argparse.Namespace) -> Result:
    seconds: float = args.seconds or (2.0 if args.quick else 5.0)
    repeat: int = args.repeat or (1 if args.quick else 3)
    connections: int = args.connections
    print(
        f"auth_rate: {connections} keep-alive connections, {seconds:g} s per phase, "
        f"{repeat} rounds, {load_note()}"
    )
    async with server(launcher="rdev", db=args.db) as srv:
        print("  " + srv.describe())
        authed: list[float] = []
        health: list[float] = []
        cpu: list[float] = []
        for i in range(repeat):
            health.append(
                await phase(srv, "/health", auth=False, connections=connections, seconds=seconds)
            )
            cpu0, t0 = srv.cpu_seconds(), time.perf_counter()
            authed.append(
                await phase(srv, "/projects", auth=True, connections=connections, seconds=seconds)
            )
            cpu.append((srv.cpu_seconds() - cpu0) / (time.perf_counter() - t0))
            print(
                f"  round {i + 1}: GET /health {health[-1]:,.0f} req/s, "
                f"GET /projects {authed[-1]:,.0f} req/s (server CPU {cpu[-1]:.0%} of a core)"
            )
    if args.profile:
        print("\n".join(await profile(args.profile_requests, args.profile_top, args.profile_sort)))
    ratio = median(authed) / median(health)
    met = ratio >= TARGET
    line = (
        f"auth_rate: rdev {num(median(authed))} req/s authenticated GET /projects, "
        f"baseline {num(median(health))} req/s GET /health, ratio {ratio:.2f} "
        f"(target >= {TARGET}){verdict(met)}"
    )
    print(line)
    return Result(
        "auth_rate",
        line,
        met,
        {"projects_rps": median(authed), "health_rps": median(health), "ratio": ratio},
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=0, help="seconds per phase (default 5)")
    p.add_argument("--connections", type=int, default=50, help="keep-alive connections")
    p.add_argument("--repeat", type=int, default=0, help="rounds of both phases (default 3)")
    p.add_argument("--profile", action="store_true", help="also profile both paths in-process")
    p.add_argument("--profile-requests", type=int, default=5000, help="requests per profile")
    p.add_argument("--profile-top", type=int, default=30, help="functions listed per profile")
    p.add_argument("--profile-sort", default="tottime", help="pstats order, e.g. cumulative")
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
