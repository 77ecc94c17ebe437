"""`python -m bench` (`make bench`): every benchmark in sequence, then a summary of the headline
lines. Every benchmark runs on SQLite and then on PostgreSQL (a throw-away database, see
bench/_common.py); `--db NAME` picks one. `--quick` runs each at its smaller size; `--only NAME`
(repeatable) picks some. Each benchmark is also runnable alone: `python -m bench.throughput
--help`."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import (
    auth_rate,
    claude_overhead,
    fanout,
    idle_streams,
    latency,
    output_cap,
    output_read,
    throughput,
)
from bench._common import DATABASES, Result

BENCHMARKS: dict[str, Callable[[list[str] | None], Result]] = {
    "throughput": throughput.main,
    "latency": latency.main,
    "idle_streams": idle_streams.main,
    "fanout": fanout.main,
    "auth_rate": auth_rate.main,
    "output_cap": output_cap.main,
    "output_read": output_read.main,
    "claude_overhead": claude_overhead.main,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    p.add_argument("--db", action="append", choices=DATABASES, help="only these (default both)")
    args = p.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    lines: list[str] = []
    started = time.perf_counter()
    for db in args.db or DATABASES:
        for name in names:
            t0 = time.perf_counter()
            print(f"\n=== {name} ({db}) ===", flush=True)
            try:
                result = BENCHMARKS[name]((["--quick"] if args.quick else []) + ["--db", db])
                lines.append(f"[{db}] {result.line}")
            except Exception as e:
                traceback.print_exc()
                lines.append(f"[{db}] {name}: FAILED ({type(e).__name__}: {e})")
            print(f"({name} on {db} took {time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\n=== summary ({time.perf_counter() - started:.0f} s) ===")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
