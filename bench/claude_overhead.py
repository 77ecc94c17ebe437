"""rdev's overhead on a real Claude Code run: `POST /projects/demo/claude {"prompt": "hi"}`, then
at once `GET /commands/{id}/events`, until the first `message` event (the CLI's `system/init`
line); 20 runs, one at a time.

Baseline, interleaved in the same run: the same CLI binary spawned directly
(`asyncio.create_subprocess_exec`) with the argv rdev builds, in the same workspace with the same
variables, until its first stdout line. Both talk to the stand-in Messages API
(tests/claude_api.py) served on loopback from this process. The overhead is rdev's median minus
the baseline's median (target <= 20 ms); the CLI alone takes a few hundred milliseconds.

The CLI is the pinned one (`make claude-cli` puts it in .tools/claude-cli), or
`RDEV_TEST_CLAUDE_BIN`; without it the benchmark reports that and measures nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import httpx
from tests.claude_api import fake_anthropic

from bench._common import (
    REPO,
    BenchError,
    Result,
    load_note,
    median,
    parser,
    percentile,
    run,
    server,
)
from rdev.domain.argv import ClaudeSpec, claude_argv

TARGET_MS = 20.0
PROMPT = "hi"
PASSED = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
          "DISABLE_AUTOUPDATER", "IS_SANDBOX")  # fmt: skip


def find_cli() -> str | None:
    pinned = REPO / ".tools/claude-cli/node_modules/.bin/claude"
    found = os.environ.get("RDEV_TEST_CLAUDE_BIN") or (str(pinned) if pinned.exists() else None)
    return found if found and os.access(found, os.X_OK) else None


async def rdev_once(client: httpx.AsyncClient) -> tuple[float, float]:
    """Milliseconds from just before POST to the first `message` event, and to `complete`."""
    t0 = time.perf_counter()
    resp = await client.post("/projects/demo/claude", json={"prompt": PROMPT})
    if resp.status_code != 201:
        raise BenchError(f"POST claude: {resp.status_code} {resp.text[:300]}")
    cid = resp.json()["data"]["command_id"]
    first: float | None = None
    buf = b""
    async with client.stream("GET", f"/commands/{cid}/events") as r:
        async for chunk in r.aiter_raw():
            buf += chunk
            if first is None and b"event: message\n" in buf:
                first = (time.perf_counter() - t0) * 1000
            if b"event: complete\n" in buf:
                break
    if first is None or b'"status":"succeeded"' not in buf:
        raise BenchError(f"claude run {cid} did not succeed: {buf[-500:]!r}")
    return first, (time.perf_counter() - t0) * 1000


async def direct_once(cli: str, cwd: Path, env: dict[str, str]) -> float:
    argv = claude_argv(cli, ClaudeSpec(prompt=PROMPT))
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    elapsed = (time.perf_counter() - t0) * 1000
    await proc.stdout.read()
    if await proc.wait() != 0 or not line.startswith(b"{"):
        raise BenchError(f"the CLI printed {line[:200]!r} and exited {proc.returncode}")
    return elapsed


def _dist(values: list[float]) -> str:
    return f"median {median(values):7.1f} ms, p99 {percentile(values, 99):7.1f} ms"


async def bench(args: argparse.Namespace) -> Result:
    cli = find_cli()
    if cli is None:
        line = "claude_overhead: no Claude CLI (run `make claude-cli`); nothing measured"
        print(line)
        return Result("claude_overhead", line, None)
    runs: int = args.runs or (5 if args.quick else 20)
    print(f"claude_overhead: {runs} runs of a real Claude turn, interleaved with direct spawns, "
          f"{load_note()}")  # fmt: skip
    async with fake_anthropic() as api:
        values = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "sk-ant-bench",
                  "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
                  "IS_SANDBOX": "1"}  # fmt: skip
        env = {**values, "RDEV_CLAUDE_BIN": cli, "RDEV_CLAUDE_ENV": ",".join(PASSED)}
        async with server(env, launcher="rdev", db=args.db) as srv:
            print("  " + srv.describe())
            client = srv.client()
            cwd = srv.workspaces / "demo"
            state = srv.root / "direct-claude"
            tmp = srv.root / "direct-tmp"
            state.mkdir()
            tmp.mkdir()
            direct_env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(srv.root),
                "TERM": "dumb", "CLAUDE_CONFIG_DIR": str(state), "TMPDIR": str(tmp),
                "CLAUDE_CODE_MAX_RETRIES": "2", **values,
            }  # fmt: skip
            for _ in range(2):  # warm up: the CLI check, page cache, connections
                await rdev_once(client)
                await direct_once(cli, cwd, direct_env)
            firsts: list[float] = []
            completes: list[float] = []
            directs: list[float] = []
            for _ in range(runs):
                first, complete = await rdev_once(client)
                firsts.append(first)
                completes.append(complete)
                await asyncio.sleep(0.05)
                directs.append(await direct_once(cli, cwd, direct_env))
                await asyncio.sleep(0.05)
    overhead = median(firsts) - median(directs)
    print(f"  POST -> first message event   {_dist(firsts)}")
    print(f"  POST -> complete event        {_dist(completes)}")
    print(f"  direct spawn -> first line    {_dist(directs)}  (the same CLI, same argv)")
    met = overhead <= TARGET_MS
    line = (
        f"claude_overhead: rdev median {median(firsts):.1f} ms, direct CLI median "
        f"{median(directs):.1f} ms, overhead median {overhead:.1f} ms "
        f"(target <= {TARGET_MS:g} ms){' MET' if met else ' NOT MET'}"
    )
    print(line)
    return Result(
        "claude_overhead",
        line,
        met,
        {
            "rdev_median_ms": median(firsts),
            "direct_median_ms": median(directs),
            "overhead_median_ms": overhead,
        },
    )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=0, help="measured runs (default 20)")
    args = p.parse_args(argv)
    return run(lambda: bench(args))


if __name__ == "__main__":
    main()
