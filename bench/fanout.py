"""Fan-out: R readers (default 100) of one command printing N lines (default 20,000 of 100 bytes).
All readers connect right after the POST; the figure is the total `output` events delivered
across readers per second, from POST to the last reader's `complete`. Baseline: the same
command with one reader. Runs alternate; medians are compared. No target is set: the ratio says
how much aggregate delivery grows when one command has R readers (R would be perfect scaling;
1 means the server delivers no more in total than to a single reader)."""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from bench._common import (
    BenchError,
    Result,
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
)


async def one_command(
    client: httpx.AsyncClient, readers: int, lines: int, size: int
) -> tuple[float, list[StreamStats]]:
    """Seconds from POST to the last reader's `complete`, and each reader's stats."""
    t0 = time.perf_counter()
    command_id = await submit(client, gen_argv(lines, size))
    stats = await asyncio.gather(*(read_stream(client, command_id) for _ in range(readers)))
    for st in stats:
        if st.outputs != lines:
            raise BenchError(f"a reader got {st.outputs} output events, expected {lines}")
    last = max(st.complete_at or 0.0 for st in stats)
    return last - t0, list(stats)


async def bench(args: argparse.Namespace) -> Result:
    readers: int = args.readers
    lines: int = args.lines or (5_000 if args.quick else 20_000)
    repeat: int = args.repeat or 2
    print(
        f"fanout: {readers} readers of one command printing {lines:,} lines x {args.size} B, "
        f"{repeat} runs each, {load_note()}"
    )
    async with server(db=args.db) as srv:
        print("  " + srv.describe())
        client = srv.client(connections=readers + 10)
        await one_command(client, 1, 1_000, args.size)  # warm up
        fan_s: list[float] = []
        one_s: list[float] = []
        reconnects = 0
        for i in range(repeat):
            cpu0, client0 = srv.thread_cpu(), time.process_time()
            seconds, stats = await one_command(client, readers, lines, args.size)
            cpu1, client1 = srv.thread_cpu(), time.process_time()
            fan_s.append(seconds)
            runs_reconnects = sum(st.reconnects for st in stats)
            reconnects += runs_reconnects
            single, _ = await one_command(client, 1, lines, args.size)
            one_s.append(single)
            print(
                f"  run {i + 1}: {readers} readers {seconds:.2f} s "
                f"({readers * lines / seconds:,.0f} ev/s in total, {runs_reconnects} "
                f"SLOW_CONSUMER reconnects), 1 reader {single:.2f} s ({lines / single:,.0f} ev/s)"
            )
            print(
                f"    during the {readers}-reader run: server event loop {cpu1[0] - cpu0[0]:.1f} s "
                f"CPU, other server threads {cpu1[1] - cpu0[1]:.1f} s, this client "
                f"{client1 - client0:.1f} s"
            )
    fan_rate = readers * lines / median(fan_s)
    one_rate = lines / median(one_s)
    ratio = fan_rate / one_rate
    line = (
        f"fanout: rdev {num(fan_rate)} ev/s across {readers} readers, "
        f"baseline {num(one_rate)} ev/s with 1 reader, ratio {ratio:.2f} "
        f"(no target; {readers} = perfect scaling), {reconnects} reconnects"
    )
    print(line)
    return Result(
        "fanout",
        line,
        None,
        {
            "fanout_ev_s": fan_rate,
            "single_ev_s": one_rate,
            "ratio": ratio,
            "reconnects": reconnects,
        },
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--readers", type=int, default=100, help="readers of the one command")
    p.add_argument("--lines", type=int, default=0, help="lines per command (default 20,000)")
    p.add_argument("--size", type=int, default=100, help="bytes per line incl. newline")
    p.add_argument("--repeat", type=int, default=0, help="runs of each (default 2)")
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
