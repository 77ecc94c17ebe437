"""Output cap: what a command that never stops printing (`yes`) costs the server once it is past
RDEV_MAX_OUTPUT_BYTES / RDEV_MAX_OUTPUT_EVENTS (defaults: 10 MiB, 200,000 events).

`yes` runs with a timeout; once the cap has been reached (measured from the command's start
plus a settle period), the server process's CPU (utime + stime from /proc) is sampled over a
window of W seconds (default 10) while a client polls `/health` every 50 ms. After the command
ends: how many events and bytes its log holds, and the database's size on disk. Target: the
server uses at most 10 % of one core past the cap."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from typing import Any

import httpx

from bench._common import (
    BenchError,
    Result,
    Server,
    load_note,
    num,
    parser,
    percentile,
    run,
    server,
    submit,
    verdict,
)

TARGET_CPU = 0.10


async def _health_latencies(client: httpx.AsyncClient, until: float) -> list[float]:
    out: list[float] = []
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        resp = await client.get("/health")
        out.append(time.perf_counter() - t0)
        if resp.status_code != 200:
            raise BenchError(f"/health answered {resp.status_code}")
        await asyncio.sleep(0.05)
    return out


async def _wait_finished(
    client: httpx.AsyncClient, command_id: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = (await client.get(f"/commands/{command_id}")).json()["data"]
        if data["finished_at"]:
            return data
        await asyncio.sleep(0.2)
    raise BenchError(f"command {command_id} did not finish within {timeout} s")


_LOG_SQL = (
    "SELECT COALESCE(SUM(seq_end - seq_start + 1), 0), COALESCE(SUM(LENGTH(body)), 0) "
    "FROM events WHERE command_id = {}"
)


def _log_size(srv: Server, command_id: str) -> tuple[int, int, int]:
    """(events, bytes of event text, database files' size) of the command's log."""
    if srv.db != "sqlite":
        import psycopg

        with psycopg.connect(srv.db) as pg:
            row = pg.execute(_LOG_SQL.format("%s"), (command_id,)).fetchone()
            size = pg.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None and size is not None
        return int(row[0]), int(row[1]), int(size[0])
    db = srv.root / "data" / "rdev.db"
    with sqlite3.connect(db) as conn:
        row = conn.execute(_LOG_SQL.format("?"), (command_id,)).fetchone()
    disk = sum(p.stat().st_size for p in db.parent.glob("rdev.db*"))
    return int(row[0]), int(row[1]), disk


async def bench(args: argparse.Namespace) -> Result:
    window: float = 3.0 if args.quick else args.window
    settle: float = args.settle
    timeout = int(settle + window + 3)
    print(f"output_cap: `yes` past the cap, {window:.0f} s window, {load_note()}")
    async with server(launcher="rdev", db=args.db) as srv:
        print("  " + srv.describe())
        client = srv.client()
        command_id = await submit(client, ["yes"], timeout_seconds=timeout)
        await asyncio.sleep(settle)  # the cap is reached within the first second
        cpu0, t0 = srv.cpu_seconds(), time.perf_counter()
        health = await _health_latencies(client, t0 + window)
        cpu = (srv.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
        done = await _wait_finished(client, command_id, timeout + 60)
        events, text_bytes, disk = _log_size(srv, command_id)
    p50, p99 = percentile(health, 50) * 1000, percentile(health, 99) * 1000
    met = cpu <= TARGET_CPU
    print(
        f"  command: {done['status']}, output_bytes {num(done['output_bytes'])}, "
        f"truncated {done['truncated']}"
    )
    print(
        f"  log: {num(events)} events, {num(text_bytes)} bytes of event text; "
        f"database files {num(disk)} bytes"
    )
    print(f"  /health during the window: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(health)} calls)")
    line = (
        f"output_cap: server CPU {cpu * 100:.1f} % of a core past the cap "
        f"(target <= {TARGET_CPU * 100:.0f} %){verdict(met)}; {num(events)} events stored; "
        f"/health p99 {p99:.1f} ms"
    )
    print(line)
    return Result(
        "output_cap",
        line,
        met,
        {"cpu": cpu, "events": events, "text_bytes": text_bytes, "disk": disk, "p99_ms": p99},
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--window", type=float, default=10.0, help="seconds of CPU measurement")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
