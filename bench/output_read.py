"""Stored output: `GET /commands/{id}/output` of a finished command that printed N lines of B
bytes (default 1,000,000 lines of 50 bytes, newline included), against replaying the same
command's events over SSE (`GET /commands/{id}/events` from the start) in the same run.

Both read the same rows of the event log: the output endpoint turns them into plain text, the
replay into SSE frames. Runs alternate and the medians are compared; target: the output
endpoint at least as fast as the replay (ratio replay seconds / output seconds >= 1). The
client checks it receives exactly N lines (N x B bytes) and N `output` events.

RDEV_MAX_OUTPUT_BYTES and RDEV_MAX_OUTPUT_EVENTS are raised to 2^30 so nothing is dropped."""

from __future__ import annotations

import argparse
import time

import httpx

from bench._common import (
    BenchError,
    Result,
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

TARGET = 1.0


async def output_run(client: httpx.AsyncClient, command_id: str, lines: int, size: int) -> float:
    t0 = time.perf_counter()
    total = newlines = 0
    async with client.stream("GET", f"/commands/{command_id}/output") as resp:
        if resp.status_code != 200:
            raise BenchError(f"GET output: {resp.status_code} {(await resp.aread())[:300]!r}")
        async for chunk in resp.aiter_raw():
            total += len(chunk)
            newlines += chunk.count(b"\n")
    seconds = time.perf_counter() - t0
    if total != lines * size or newlines != lines:
        raise BenchError(f"output: {total} bytes, {newlines} lines; expected {lines * size}")
    return seconds


async def replay_run(client: httpx.AsyncClient, command_id: str, lines: int) -> float:
    t0 = time.perf_counter()
    stats = await read_stream(client, command_id)
    seconds = time.perf_counter() - t0
    if stats.outputs != lines:
        raise BenchError(f"replay delivered {stats.outputs} output events, expected {lines}")
    return seconds


async def bench(args: argparse.Namespace) -> Result:
    lines: int = args.lines or (200_000 if args.quick else 1_000_000)
    repeat: int = args.repeat or (2 if args.quick else 3)
    size: int = args.size
    env = {"RDEV_MAX_OUTPUT_BYTES": str(1 << 30), "RDEV_MAX_OUTPUT_EVENTS": str(1 << 30)}
    print(f"output_read: {lines:,} lines x {size} B, {repeat} runs each, {load_note()}")
    async with server(env, db=args.db) as srv:
        print("  " + srv.describe())
        client = srv.client(timeout=600)
        command_id = await submit(client, gen_argv(lines, size))
        t0 = time.perf_counter()
        await replay_run(client, command_id, lines)  # waits for the command to finish
        print(f"  the command ran and was streamed live in {time.perf_counter() - t0:.2f} s")
        out_s: list[float] = []
        sse_s: list[float] = []
        for i in range(repeat):
            out_s.append(await output_run(client, command_id, lines, size))
            sse_s.append(await replay_run(client, command_id, lines))
            print(
                f"  run {i + 1}: GET output {out_s[-1]:.2f} s ({lines / out_s[-1]:,.0f} lines/s), "
                f"SSE replay {sse_s[-1]:.2f} s ({lines / sse_s[-1]:,.0f} ev/s)"
            )
    ratio = median(sse_s) / median(out_s)
    met = ratio >= TARGET
    line = (
        f"output_read: GET output {median(out_s):.2f} s, SSE replay {median(sse_s):.2f} s for "
        f"{num(lines)} lines, ratio {ratio:.2f} (target >= {TARGET:g}){verdict(met)}"
    )
    print(line)
    return Result(
        "output_read",
        line,
        met,
        {"output_s": median(out_s), "replay_s": median(sse_s), "ratio": ratio, "lines": lines},
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--lines", type=int, default=0, help="lines of the command (default 1,000,000)")
    p.add_argument("--size", type=int, default=50, help="bytes per line incl. newline")
    p.add_argument("--repeat", type=int, default=0, help="runs of each (default 3)")
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
