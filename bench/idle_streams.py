"""Idle streams: the server's resident memory while it holds N idle SSE streams (default 10,000:
100 running `sleep` commands, N/100 readers each), with heartbeats every 5 s
(RDEV_SSE_HEARTBEAT_SECONDS=5) to show they run.

Streams are plain non-blocking sockets in this process (a request written by hand, read until
the `connected` event), so the client costs little memory. RSS is VmRSS of the server process
from /proc/PID/status: before (commands running, after 50 streams opened and closed as a warm-
up), and with all streams open after two heartbeat periods. Target: <= 300 MB in total. The
open-files limit is raised before the server starts (it inherits it) and must allow N sockets
on each side."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import time

import httpx

from bench._common import (
    BenchError,
    Result,
    Server,
    load_note,
    median,
    num,
    parser,
    raise_fd_limit,
    rss_bytes,
    run,
    server,
    submit,
    verdict,
)

TARGET_MB = 300.0
MB = 1024 * 1024


def _request(srv: Server, command_id: str) -> bytes:
    return (
        f"GET /commands/{command_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Authorization: Bearer {srv.key}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


async def open_stream(srv: Server, command_id: str, limit: asyncio.Semaphore) -> socket.socket:
    """A connected socket whose SSE stream has sent its headers and `connected` event."""
    loop = asyncio.get_running_loop()
    async with limit:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", srv.port))
            await loop.sock_sendall(sock, _request(srv, command_id))
            buf = b""
            while b"event: connected" not in buf:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 60)
                if not chunk:
                    raise BenchError(f"stream closed early: {buf[:200]!r}")
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200"):
                raise BenchError(f"stream refused: {buf[:200]!r}")
        except BaseException:
            sock.close()
            raise
        return sock


def drain(sock: socket.socket) -> bytes:
    """What the server has sent since (non-blocking)."""
    out = b""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while chunk := sock.recv(1 << 16):
            out += chunk
    return out


async def start_sleepers(client: httpx.AsyncClient, count: int) -> list[str]:
    ids = list(
        await asyncio.gather(
            *(submit(client, ["sleep", "3600"], timeout_seconds=900) for _ in range(count))
        )
    )
    deadline = time.monotonic() + 60
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for command_id in list(pending):
            status = (await client.get(f"/commands/{command_id}")).json()["data"]["status"]
            if status == "running":
                pending.discard(command_id)
        await asyncio.sleep(0.2)
    if pending:
        raise BenchError(f"{len(pending)} sleep commands did not start")
    return ids


async def bench(args: argparse.Namespace) -> Result:
    streams: int = args.streams or (2_000 if args.quick else 10_000)
    commands: int = min(args.commands, streams)
    heartbeat = args.heartbeat
    fd_limit = raise_fd_limit(streams + 2_000)
    print(
        f"idle_streams: {streams:,} SSE streams over {commands} running `sleep` commands, "
        f"heartbeat {heartbeat:g} s, open-files limit {fd_limit:,}, {load_note()}"
    )
    if fd_limit < streams + 200:
        print(f"  the open-files limit {fd_limit:,} caps this run; raise `ulimit -Hn`")
        streams = fd_limit - 200
    env = {
        "RDEV_SSE_HEARTBEAT_SECONDS": f"{heartbeat:g}",
        "CONCURRENT_COMMANDS": str(commands),
        "RDEV_REPLICA_MAX_COMMANDS": str(commands + 10),
        "RDEV_MAX_QUEUE": str(max(100, commands)),
        # one key opens every stream: the per-key and per-replica stream limits (100 and 10,000
        # by default, 429 TOO_MANY_STREAMS / 503 OVERLOADED past them) are raised above the count
        "RDEV_MAX_STREAMS_PER_KEY": str(streams + 1_000),
        "RDEV_MAX_STREAMS": str(streams + 1_000),
    }
    socks: list[socket.socket] = []
    async with server(env, launcher="rdev", db=args.db) as srv:
        print("  " + srv.describe())
        client = srv.client(connections=20)
        rss_start = srv.rss_bytes()
        ids = await start_sleepers(client, commands)
        limit = asyncio.Semaphore(args.concurrency)
        warm = await asyncio.gather(
            *(open_stream(srv, ids[i % commands], limit) for i in range(50))
        )
        for sock in warm:
            sock.close()
        await asyncio.sleep(1.0)
        rss_before = srv.rss_bytes()
        print(
            f"  RSS at start {rss_start / MB:.1f} MB; before streams {rss_before / MB:.1f} MB "
            f"({commands} commands running, 50 streams opened and closed)"
        )
        t0, open_cpu0 = time.perf_counter(), srv.cpu_seconds()
        peak = rss_before
        failure = ""
        try:
            for start in range(0, streams, 1000):
                batch = range(start, min(streams, start + 1000))
                opened = await asyncio.gather(
                    *(open_stream(srv, ids[i % commands], limit) for i in batch)
                )
                socks.extend(opened)
                peak = max(peak, srv.rss_bytes())
        except (OSError, BenchError, TimeoutError) as e:
            failure = f"{type(e).__name__}: {e}"
            print(f"  stopped at {len(socks):,} streams: {failure}")
        opening = time.perf_counter() - t0
        open_cpu = srv.cpu_seconds() - open_cpu0
        print(
            f"  opened {len(socks):,} streams in {opening:.1f} s "
            f"({len(socks) / opening:,.0f}/s, server CPU {open_cpu / max(1, len(socks)) * 1000:.1f}"
            f" ms per stream, {open_cpu / opening:.0%} of a core); "
            f"RSS {srv.rss_bytes() / MB:.1f} MB"
        )
        for sock in socks:
            drain(sock)  # what came with opening: `connected`, then queued/running status
        cpu0, h0 = srv.cpu_seconds(), time.perf_counter()
        samples = []
        hold = 2 * heartbeat + 1
        while time.perf_counter() - h0 < hold:
            await asyncio.sleep(hold / 5)
            samples.append(srv.rss_bytes())
        cpu = (srv.cpu_seconds() - cpu0) / (time.perf_counter() - h0)
        beating = sum(1 for sock in socks if b"event: heartbeat" in drain(sock))
        rss_with = int(median(samples))
        peak = max(peak, *samples)
        client_rss = rss_bytes(os.getpid())
        for sock in socks:
            sock.close()
        await asyncio.sleep(2.0)
        rss_after = srv.rss_bytes()
        await asyncio.gather(*(client.post(f"/commands/{i}/cancel") for i in ids))
    n = len(socks)
    per_stream = (rss_with - rss_before) / n if n else float("nan")
    print(
        f"  holding {n:,} streams for {hold:.0f} s: RSS median {rss_with / MB:.1f} MB "
        f"(peak {peak / MB:.1f} MB), server CPU {cpu:.0%} of a core, "
        f"{beating:,} of {n:,} streams got a heartbeat; client RSS {client_rss / MB:.0f} MB"
    )
    print(f"  RSS 2 s after closing them all: {rss_after / MB:.1f} MB")
    full = 10_000
    projected = rss_before + per_stream * full
    met = rss_with / MB <= TARGET_MB and beating == n and not failure
    if n < full:  # judge a smaller run by its projection to 10,000 streams
        met = met and projected / MB <= TARGET_MB
    line = (
        f"idle_streams: rdev {rss_with / MB:,.1f} MB RSS with {n:,} streams, "
        f"baseline {rss_before / MB:,.1f} MB with none, {num(per_stream)} B/stream"
    )
    if n < full:
        line += f", projected {projected / MB:,.0f} MB at {full:,}"
    line += f" (target <= {TARGET_MB:g} MB with {full:,}){verdict(met)}"
    if failure:
        line += f" [reached {n:,}: {failure}]"
    if args.trace:
        from bench._trace import trace_stream_memory

        print("\n".join(await trace_stream_memory(min(streams, 1000))))
    print(line)
    return Result(
        "idle_streams",
        line,
        met,
        {
            "streams": n,
            "rss_before_mb": rss_before / MB,
            "rss_with_mb": rss_with / MB,
            "bytes_per_stream": per_stream,
            "heartbeats_ok": beating,
            "cpu_share": cpu,
        },
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--streams", type=int, default=0, help="SSE streams (default 10,000)")
    p.add_argument("--commands", type=int, default=100, help="running commands to read")
    p.add_argument("--heartbeat", type=float, default=5.0, help="RDEV_SSE_HEARTBEAT_SECONDS")
    p.add_argument("--concurrency", type=int, default=100, help="streams opening at once")
    p.add_argument(
        "--trace", action="store_true", help="also attribute per-stream memory (tracemalloc)"
    )
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
