"""Start latency: `POST /projects/demo/shell {"argv": ["echo", "hi"]}`, then at once
`GET /commands/{id}/events`, until the first `output` event arrives; 200 runs, one at a time.

Baseline, interleaved in the same run: `asyncio.create_subprocess_exec("echo", "hi")` in this
process until its first stdout byte. The overhead is rdev's median minus the baseline's median
(target <= 5 ms); the p99s are reported alongside.

The client that times rdev is bench/_rawhttp.py (one keep-alive connection for the POSTs, one for
the streams, one write per request): what it measures is the server. The same runs are also
made with httpx, interleaved, and printed beside them; the difference is httpx's own work per
request, which on a small VM after each run's pause is milliseconds (see bench/_rawhttp.py).

That baseline forks (uvloop's spawn), which costs ~10 ms more in a process of this size than
the vfork spawn rdev's local backend uses (`rdev.adapters.local.process.start_process`). So a
second, stricter baseline is measured too: that same function called directly in this process.
rdev minus it is rdev's own cost (HTTP, SQL, dispatch, event log, hub, SSE), and is printed
next to the verdict. Runs are 20 ms apart so one run's tail work (finishing the command) does
not land in the next measurement. `--trace` adds an in-process breakdown of the awaited
store/backend calls (bench/_trace.py)."""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from bench._common import (
    PROJECT,
    BenchError,
    Result,
    StreamStats,
    load_note,
    median,
    parser,
    percentile,
    read_stream,
    run,
    server,
    submit,
    verdict,
)
from bench._rawhttp import RawConnection

TARGET_MS = 5.0
ECHO = ["echo", "hi"]


Timing = tuple[float, float, float, float]


async def rdev_once_raw(post: RawConnection, get: RawConnection, auth: dict[str, str]) -> Timing:
    """rdev_once, timed with the raw client."""
    t0 = time.perf_counter()
    status, data = await post.json("POST", f"/projects/{PROJECT}/shell", auth, {"argv": ECHO})
    posted = time.perf_counter()
    if status != 201:
        raise BenchError(f"POST shell: {status} {data}")
    get.send("GET", f"/commands/{data['data']['command_id']}/events", auth)
    status, headers = await get.head()
    opened = time.perf_counter()
    if status != 200:
        raise BenchError(f"GET events: {status} {await get.body(headers)!r}")
    outputs, first, complete = 0, 0.0, 0.0
    async for chunk in get.chunks(headers):
        now = time.perf_counter()
        seen = chunk.count(b"event: output")
        if seen and not outputs:
            first = now
        outputs += seen
        if b"event: complete" in chunk:
            complete = now
    if outputs != 1 or not complete:
        raise BenchError(f"unexpected stream for echo hi: {outputs} outputs")
    return tuple((t - t0) * 1000 for t in (posted, opened, first, complete))  # type: ignore[return-value]


async def rdev_once(client: httpx.AsyncClient) -> Timing:
    """Milliseconds from just before POST to: the 201, the SSE response, the first output, and
    `complete`."""
    t0 = time.perf_counter()
    command_id = await submit(client, ECHO)
    posted = time.perf_counter()
    stats = await read_stream(client, command_id, StreamStats())
    if stats.outputs != 1 or stats.first_output_at is None or stats.complete_at is None:
        raise BenchError(f"unexpected stream for echo hi: {stats}")
    assert stats.headers_at is not None
    return (
        (posted - t0) * 1000,
        (stats.headers_at - t0) * 1000,
        (stats.first_output_at - t0) * 1000,
        (stats.complete_at - t0) * 1000,
    )


async def direct_once() -> float:
    """The issue's baseline: asyncio's spawn on this (uvloop) event loop."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("echo", "hi", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = await proc.stdout.read(1)
    elapsed = (time.perf_counter() - t0) * 1000
    await proc.stdout.read()
    await proc.wait()
    if first != b"h":
        raise BenchError(f"echo printed {first!r}")
    return elapsed


async def own_spawn_once(cwd: str) -> float:
    """rdev's local spawn itself, called directly: Popen (vfork), pipes handed to the loop."""
    from rdev.adapters.local.process import scrubbed_env, start_process

    t0 = time.perf_counter()
    execution = await start_process(
        ["echo", "hi"], cwd=cwd, env=scrubbed_env({}), stdin=None, marker="bench"
    )
    first = b""
    async for chunk in execution.output():
        if not first:
            first = chunk.data[:1]
            elapsed = (time.perf_counter() - t0) * 1000
    await execution.wait()
    if first != b"h":
        raise BenchError(f"echo printed {first!r}")
    return elapsed


def _dist(values: list[float]) -> str:
    return f"median {median(values):6.2f} ms, p99 {percentile(values, 99):6.2f} ms"


async def bench(args: argparse.Namespace) -> Result:
    runs: int = args.runs or (50 if args.quick else 200)
    print(f"latency: {runs} runs of `echo hi`, interleaved with direct spawns, {load_note()}")
    async with server(db=args.db) as srv:
        print("  " + srv.describe())
        client = srv.client()
        auth = {"Authorization": f"Bearer {srv.key}"}
        post, get = [await RawConnection.open("127.0.0.1", srv.port) for _ in range(2)]
        cwd = str(srv.workspaces / "demo")
        for _ in range(5):  # warm up: connections, caches, code paths
            await rdev_once_raw(post, get, auth)
            await rdev_once(client)
            await direct_once()
            await own_spawn_once(cwd)
        raw: list[Timing] = []
        via_httpx: list[Timing] = []
        directs: list[float] = []
        owns: list[float] = []
        try:
            for _ in range(runs):
                raw.append(await rdev_once_raw(post, get, auth))
                await asyncio.sleep(0.02)
                via_httpx.append(await rdev_once(client))
                await asyncio.sleep(0.02)
                directs.append(await direct_once())
                await asyncio.sleep(0.02)
                owns.append(await own_spawn_once(cwd))
                await asyncio.sleep(0.02)
        finally:
            for conn in (post, get):
                await conn.close()
    firsts = [r[2] for r in raw]
    overhead = median(firsts) - median(directs)
    p99_overhead = percentile(firsts, 99) - percentile(directs, 99)
    for label, timings in (("raw client", raw), ("httpx", via_httpx)):
        print(f"  {label}:")
        for i, what in enumerate(("201", "SSE response", "first output event", "complete event")):
            print(f"    POST -> {what:<20} {_dist([t[i] for t in timings])}")
    print(f"  direct spawn -> first byte  {_dist(directs)}  (baseline: asyncio, uvloop)")
    print(f"  rdev's spawn -> first byte  {_dist(owns)}  (its local backend's, called directly)")
    own_overhead = median(firsts) - median(owns)
    httpx_overhead = median([t[2] for t in via_httpx]) - median(directs)
    if args.trace:
        from bench._trace import trace_latency

        print("\n".join(await trace_latency(min(runs, 100), args.db)))
    met = overhead <= TARGET_MS
    line = (
        f"latency: rdev median {median(firsts):.2f} ms (p99 {percentile(firsts, 99):.2f} ms), "
        f"baseline median {median(directs):.2f} ms (p99 {percentile(directs, 99):.2f} ms), "
        f"overhead median {overhead:.2f} ms, p99 {p99_overhead:.2f} ms "
        f"(target median <= {TARGET_MS:g} ms){verdict(met)}; against rdev's own spawn "
        f"{own_overhead:.2f} ms; timed with httpx {httpx_overhead:.2f} ms"
    )
    print(line)
    return Result(
        "latency",
        line,
        met,
        {
            "rdev_median_ms": median(firsts),
            "rdev_p99_ms": percentile(firsts, 99),
            "baseline_median_ms": median(directs),
            "baseline_p99_ms": percentile(directs, 99),
            "overhead_median_ms": overhead,
            "overhead_p99_ms": p99_overhead,
            "own_spawn_median_ms": median(owns),
            "overhead_vs_own_spawn_ms": own_overhead,
            "overhead_httpx_median_ms": httpx_overhead,
        },
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=0, help="measured runs (default 200)")
    p.add_argument("--trace", action="store_true", help="also time rdev's awaited calls in-process")
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
