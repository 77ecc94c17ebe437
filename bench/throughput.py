"""Throughput: one SSE client reading a command that prints N lines of B bytes (default 200,000
lines of 100 bytes, newline included) on the local backend, with SQLite persistence on.

rdev: events/second from POST to `complete` (the command's whole run: queue, spawn, event log
writes, hub, SSE). Baseline: the same N `output` frames from a bare Starlette streaming endpoint
(`/_bench/baseline`, bench/_server.py) in the same server process, 500 frames per chunk like
rdev's writer batches. Runs alternate and the medians are compared; target ratio >= 0.8.

RDEV_MAX_OUTPUT_BYTES and RDEV_MAX_OUTPUT_EVENTS are raised to 2^30: the default caps (10 MiB,
200,000 events, 90 % of each streamed live) would truncate 200,000 lines of 100 bytes (20 MB)
after about 94,000 lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence

import httpx

from bench._common import (
    PROJECT,
    BenchError,
    Result,
    Server,
    SseCounter,
    StreamStats,
    gen_argv,
    load_note,
    median,
    num,
    parser,
    read_stream,
    run,
    server,
    submit,
    verdict,
)
from bench._server import BASELINE_PATH
from rdev.domain.models import Event

TARGET = 0.8


async def rdev_run(client: httpx.AsyncClient, lines: int, size: int) -> tuple[float, StreamStats]:
    """Seconds from POST to `complete`, and what the stream delivered."""
    t0 = time.perf_counter()
    command_id = await submit(client, gen_argv(lines, size))
    stats = await read_stream(client, command_id)
    if stats.outputs != lines:
        raise BenchError(f"rdev delivered {stats.outputs} output events, expected {lines}")
    assert stats.complete_at is not None
    return stats.complete_at - t0, stats


async def baseline_run(client: httpx.AsyncClient, lines: int, size: int, batch: int) -> float:
    stats = StreamStats()
    counter = SseCounter(stats)
    t0 = time.perf_counter()
    params = {"lines": lines, "size": size, "batch": batch}
    async with client.stream("GET", BASELINE_PATH, params=params) as resp:
        if resp.status_code != 200:
            raise BenchError(f"baseline: {resp.status_code}")
        async for chunk in resp.aiter_raw():
            counter.feed(chunk, time.perf_counter())
    if stats.outputs != lines or stats.complete_at is None:
        raise BenchError(f"baseline delivered {stats.outputs} output events, expected {lines}")
    return stats.complete_at - t0


async def command_alone(srv: Server, lines: int, size: int) -> float:
    """The generator command on its own, stdout to a pipe read to the end."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *gen_argv(lines, size), cwd=srv.workspaces / PROJECT, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    total = 0
    while chunk := await proc.stdout.read(1 << 16):
        total += len(chunk)
    await proc.wait()
    if total != lines * size:
        raise BenchError(f"generator wrote {total} bytes, expected {lines * size}")
    return time.perf_counter() - t0


class _NullLog:
    async def append(self, batch: Sequence[Event]) -> None:
        return None


class _NullHub:
    def __init__(self, into: list[Event]) -> None:
        self.into = into

    async def publish(self, events: Sequence[Event]) -> None:
        self.into.extend(events)


def _timed(label: str, lines: int, seconds: float) -> str:
    return f"    {label:<58} {seconds * 1000:7.0f} ms  {seconds / lines * 1e6:5.1f} us/event"


async def breakdown(lines: int, size: int) -> list[str]:
    """In-process costs of the per-event steps on rdev's path, one at a time, to show where a
    server's CPU goes: split stdout into lines, the writer (events, sequence numbers, cap,
    batching), the event log's storage text and its SQLite insert, SSE framing, and json.dumps
    alone for scale."""
    from rdev.adapters.http import sse
    from rdev.adapters.sql import events as sql_events
    from rdev.adapters.sql.store import build_store
    from rdev.config import Settings
    from rdev.runtime.output import LineSplitter
    from rdev.runtime.outputcap import OutputCap
    from rdev.runtime.writer import MAX_BATCH, EventWriter

    data = (b"x" * (size - 1) + b"\n") * lines
    out: list[str] = [f"  in-process breakdown for {lines:,} events (same process, one at a time):"]

    t0 = time.perf_counter()
    splitter = LineSplitter()
    chunks = [splitter.feed(data[i : i + (1 << 16)]) for i in range(0, len(data), 1 << 16)]
    out.append(
        _timed("LineSplitter.feed (64 KiB chunks -> lines)", lines, time.perf_counter() - t0)
    )

    captured: list[Event] = []
    writer = EventWriter(
        "cmd_0123456789ab0123456789ab", last_seq=0, log=_NullLog(), hub=_NullHub(captured),  # type: ignore[arg-type]
        cap=OutputCap(max_bytes=1 << 40, max_events=1 << 40),
    )  # fmt: skip
    t0 = time.perf_counter()
    for chunk in chunks:
        writer.output_lines("stdout", chunk)
        await writer.backpressure()
    await writer.flush()
    out.append(
        _timed(
            "EventWriter.output_lines per chunk (null log and hub)", lines, time.perf_counter() - t0
        )
    )
    if len(captured) != lines:
        raise BenchError(f"the writer published {len(captured)} events, expected {lines}")
    batches = [captured[i : i + MAX_BATCH] for i in range(0, lines, MAX_BATCH)]

    t0 = time.perf_counter()
    for batch in batches:
        sql_events._body(batch)
    out.append(
        _timed("storage text of a batch (one line per event)", lines, time.perf_counter() - t0)
    )

    with tempfile.TemporaryDirectory(prefix="rdev-bench-") as tmp:
        store = build_store(Settings(database_url=f"sqlite:///{tmp}/bench.db"))
        await store.db.migrate()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for batch in batches:
            await store.events.append(batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        out.append(
            _timed(f"SqlEventLog.append, {MAX_BATCH}/txn (wall; CPU {cpu:.2f} s)", lines, wall)
        )
        t0 = time.perf_counter()
        after = 0
        while page := await store.events.read(
            "cmd_0123456789ab0123456789ab", after=after, limit=1000, decode=False
        ):
            after = page[-1].seq
        out.append(
            _timed(
                "SqlEventLog.read, pages of 1000 (a reader catching up)",
                lines,
                time.perf_counter() - t0,
            )
        )
        await store.close()

    t0 = time.perf_counter()
    for batch in batches:
        sse._render(batch)
    out.append(
        _timed(
            "SSE frames of a batch (rendered once for all readers)", lines, time.perf_counter() - t0
        )
    )

    t0 = time.perf_counter()
    for e in captured:
        json.dumps(e.data, ensure_ascii=False, separators=(",", ":"))
    out.append(_timed("json.dumps of one event's data, for scale", lines, time.perf_counter() - t0))
    return out


async def bench(args: argparse.Namespace) -> Result:
    lines: int = args.lines or (50_000 if args.quick else 200_000)
    repeat: int = args.repeat or (2 if args.quick else 3)
    size: int = args.size
    env = {"RDEV_MAX_OUTPUT_BYTES": str(1 << 30), "RDEV_MAX_OUTPUT_EVENTS": str(1 << 30)}
    print(f"throughput: {lines:,} lines x {size} B, {repeat} runs each, {load_note()}")
    async with server(env, db=args.db) as srv:
        print("  " + srv.describe())
        client = srv.client()
        await rdev_run(client, 2_000, size)  # warm up both paths
        await baseline_run(client, 2_000, size, args.batch)
        rdev_s: list[float] = []
        stream_s: list[float] = []
        base_s: list[float] = []
        reconnects = 0
        main_cpu: list[float] = []
        other_cpu: list[float] = []
        for i in range(repeat):
            cpu0 = srv.thread_cpu()
            seconds, stats = await rdev_run(client, lines, size)
            cpu1 = srv.thread_cpu()
            main_cpu.append(cpu1[0] - cpu0[0])
            other_cpu.append(cpu1[1] - cpu0[1])
            assert stats.first_output_at is not None and stats.complete_at is not None
            rdev_s.append(seconds)
            stream_s.append(stats.complete_at - stats.first_output_at)
            reconnects += stats.reconnects
            base_s.append(await baseline_run(client, lines, size, args.batch))
            print(
                f"  run {i + 1}: rdev {seconds:.2f} s POST->complete "
                f"({lines / seconds:,.0f} ev/s, {stats.reconnects} reconnects, "
                f"{stats.bytes / seconds / 1e6:.1f} MB/s of SSE), "
                f"baseline {base_s[-1]:.2f} s ({lines / base_s[-1]:,.0f} ev/s); "
                f"rdev server CPU: event loop {main_cpu[-1]:.2f} s, other threads "
                f"{other_cpu[-1]:.2f} s"
            )
        alone = median([await command_alone(srv, lines, size) for _ in range(repeat)])
    rdev_rate = lines / median(rdev_s)
    base_rate = lines / median(base_s)
    ratio = rdev_rate / base_rate
    met = ratio >= TARGET
    print(
        f"  rdev first output -> complete: {lines / median(stream_s):,.0f} ev/s; "
        f"the command alone (stdout to a pipe) takes {alone * 1000:.0f} ms; "
        f"SLOW_CONSUMER reconnects over all runs: {reconnects}"
    )
    loop_us = median(main_cpu) / lines * 1e6
    print(
        f"  rdev server CPU per event: event loop {loop_us:.1f} us, other threads "
        f"{median(other_cpu) / lines * 1e6:.1f} us; the loop is busy "
        f"{median(main_cpu) / median(rdev_s):.0%} of the run"
    )
    if args.breakdown:
        print("\n".join(await breakdown(lines, size)))
    line = (
        f"throughput: rdev {num(rdev_rate)} ev/s, baseline {num(base_rate)} ev/s, "
        f"ratio {ratio:.2f} (target >= {TARGET}){verdict(met)}"
    )
    print(line)
    return Result(
        "throughput",
        line,
        met,
        {"rdev_ev_s": rdev_rate, "baseline_ev_s": base_rate, "ratio": ratio, "lines": lines},
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, default=0, help="lines per run (default 200,000)")
    p.add_argument("--size", type=int, default=100, help="bytes per line incl. newline")
    p.add_argument("--repeat", type=int, default=0, help="runs of each (default 3)")
    p.add_argument("--batch", type=int, default=500, help="baseline frames per chunk")
    p.add_argument(
        "--breakdown", action="store_true", help="also time rdev's per-event steps in-process"
    )
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
