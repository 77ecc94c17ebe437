"""Shared pieces of the benchmarks: rdev in its own process on a throw-away data directory, a
cheap SSE event counter, statistics and the report line.

The server is always a separate process (`python -m bench._server`, which is `rdev serve` plus
the throughput baseline route, or `python -m rdev serve` itself), so the load generator in this
process does not share an event loop or a CPU-bound thread with the server.

Every benchmark runs on SQLite (`--db sqlite`, the default) or on PostgreSQL (`--db postgres`):
a throw-away database created on the server named by `RDEV_TEST_POSTGRES_URL` (default the
local one, `postgresql://postgres@127.0.0.1:5432/postgres`) and dropped after the run. For
diagnosis only, `RDEV_BENCH_PG_SYNCHRONOUS_COMMIT=off` sets that database's synchronous_commit
(commits stop waiting for the WAL flush): what the figures would be without an fsync per commit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.support import processes_under  # the same /proc scan the tests use

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PROJECT = "demo"
DATABASES = ("sqlite", "postgres")
PG_ADMIN_URL = os.environ.get(
    "RDEV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Writes N lines of exactly SIZE bytes (SIZE-1 'x' and a newline) to stdout, in big writes.
GEN_SCRIPT = """\
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
line = b"x" * (size - 1) + b"\\n"
out = sys.stdout.buffer
for start in range(0, n, 1000):
    out.write(line * min(1000, n - start))
out.flush()
"""

BASE_ENV = {
    "RATE_LIMIT_RPS": "100000",
    "RDEV_AUTH_FAILURES_PER_MINUTE": "1000000",
    "RDEV_LOG_LEVEL": "warning",
    "RDEV_SHUTDOWN_BUDGET_SECONDS": "4",
    "RDEV_SHUTDOWN_DRAIN_SECONDS": "0",
    "RDEV_KILL_GRACE_SECONDS": "1",
    # never pick up a developer's PostgreSQL/Redis: the database is the one `--db` names
    "RDEV_DATABASE_URL": "",
    "POSTGRES_HOST": "",
    "RDEV_REDIS_URL": "",
}


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


# --------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class Result:
    """One benchmark's headline: the printed line and whether its target was met."""

    name: str
    line: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)


def verdict(met: bool | None) -> str:
    return "" if met is None else (" MET" if met else " NOT MET")


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (1 min) {five:.2f} (5 min)"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument(
        "--db", choices=DATABASES, default="sqlite", help="the server's database (default sqlite)"
    )
    return p


def run(main: Callable[[], Coroutine[Any, Any, Result]]) -> Result:
    """Run a benchmark coroutine on uvloop (as uvicorn does in the server) when available."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    url: str
    port: int
    key: str
    root: Path
    launcher: str
    db: str  # "sqlite" or the PostgreSQL URL (postgresql://...) of the throw-away database
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def workspaces(self) -> Path:
        return self.root / "workspaces"

    def describe(self) -> str:
        return (
            f"server: separate process `{self.launcher}` (uvicorn, uvloop, httptools, "
            f"{self.db_name}, local backend), pid {self.pid}; "
            "client: this process (httpx / raw asyncio, uvloop)"
        )

    @property
    def db_name(self) -> str:
        return "SQLite WAL" if self.db == "sqlite" else "PostgreSQL " + self.db.rsplit("/", 1)[1]

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def thread_cpu(self) -> tuple[float, float]:
        """CPU seconds of the server's main thread (the event loop) and of the rest of the
        process (SQLite fallback and checkpoint threads, asyncio.to_thread and anyio workers,
        including threads that have exited)."""
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{self.pid}/task/{self.pid}/stat").read_text()
        parts = fields.rsplit(") ", 1)[1].split()
        main = (int(parts[11]) + int(parts[12])) / ticks
        return main, self.cpu_seconds() - main

    def client(self, *, connections: int = 20, timeout: float = 120.0) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.clients.append(client)
        return client


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


async def _output(*argv: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed: {err.decode(errors='replace')[-2000:]}")
    return out.decode()


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


async def _pg_admin(sql: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as conn:
        await conn.execute(sql)


@contextlib.asynccontextmanager
async def database(db: str) -> AsyncIterator[str]:
    """ "sqlite", or the URL of a fresh PostgreSQL database, dropped afterwards."""
    if db == "sqlite":
        yield db
        return
    name = f"rdev_bench_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    if os.environ.get("RDEV_BENCH_PG_SYNCHRONOUS_COMMIT") == "off":
        await _pg_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield _pg_url(name)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def server(
    env: dict[str, str] | None = None, *, launcher: str = "bench", db: str = "sqlite"
) -> AsyncIterator[Server]:
    """rdev in a subprocess on a fresh temporary data directory with a `demo` project (holding
    `gen.py`) and an admin key made with `rdev keys create`. `launcher` is "bench"
    (`python -m bench._server`: rdev plus the baseline route) or "rdev" (`python -m rdev serve`).
    `db` is "sqlite" or "postgres" (a throw-away database, see the module docstring)."""
    async with database(db) as url, _server(env, launcher, url) as srv:
        yield srv


@contextlib.asynccontextmanager
async def _server(env: dict[str, str] | None, launcher: str, db: str) -> AsyncIterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="rdev-bench-"))
    project = root / "workspaces" / PROJECT
    project.mkdir(parents=True)
    (project / "gen.py").write_text(GEN_SCRIPT)
    port = free_port()
    full_env = {
        **os.environ,
        **BASE_ENV,
        "RDEV_DATA_DIR": str(root / "data"),
        "RDEV_LOCAL_ROOT": str(root / "workspaces"),
        **(env or {}),
        **(
            {}
            if db == "sqlite"
            else {"RDEV_DATABASE_URL": "postgresql+psycopg://" + db.split("://", 1)[1]}
        ),
        "RDEV_HOST": "127.0.0.1",
        "PORT": str(port),
    }
    argv = [PYTHON, "-m", "rdev", "keys", "create", "--name", "bench", "--scope", "admin"]
    key = (await _output(*argv, env=full_env)).strip().splitlines()[-1]
    module = ["-m", "bench._server"] if launcher == "bench" else ["-m", "rdev", "serve"]
    log_path = root / "server.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            PYTHON, *module, env=full_env, cwd=REPO, stdout=log_file, stderr=log_file
        )
    srv = Server(
        proc, f"http://127.0.0.1:{port}", port, key, root, "python " + " ".join(module), db
    )
    ok = False
    try:
        await _wait_healthy(srv, log_path)
        yield srv
        ok = True
    finally:
        for client in srv.clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        await _stop(proc)
        for pid in processes_under(root / "workspaces"):  # commands this run started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"(server log kept at {log_path})", file=sys.stderr)


async def _wait_healthy(srv: Server, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if srv.proc.returncode is not None:
                raise BenchError(f"server exited; see {log_path}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{srv.url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise BenchError("server did not become healthy within 60 s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------- commands and SSE


async def submit(
    client: httpx.AsyncClient, argv: Sequence[str], *, timeout_seconds: int | None = None
) -> str:
    body: dict[str, Any] = {"argv": list(argv)}
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    resp = await client.post(f"/projects/{PROJECT}/shell", json=body)
    if resp.status_code != 201:
        raise BenchError(f"POST shell: {resp.status_code} {resp.text[:500]}")
    command_id: str = resp.json()["data"]["command_id"]
    return command_id


def gen_argv(lines: int, size: int) -> list[str]:
    return ["python3", "gen.py", str(lines), str(size)]


@dataclass
class StreamStats:
    outputs: int = 0
    heartbeats: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    headers_at: float | None = None  # perf_counter() when the first response arrived
    first_output_at: float | None = None  # ... when the first `output` event arrived
    complete_at: float | None = None
    last_id: str | None = None
    bytes: int = 0


class SseCounter:
    """Counts `output` events in a raw SSE byte stream per chunk with bytes.count instead of
    parsing every frame, so a Python client can keep up with a fast server. Only whole frames
    (up to the last blank line) are examined; the rest waits for the next chunk."""

    def __init__(self, stats: StreamStats) -> None:
        self.stats = stats
        self._tail = b""

    def feed(self, data: bytes, now: float) -> None:
        st = self.stats
        st.bytes += len(data)
        buf = self._tail + data if self._tail else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._tail = buf
            return
        head, self._tail = buf[: cut + 2], buf[cut + 2 :]
        outputs = head.count(b"\nevent: output\n")
        if outputs and st.first_output_at is None:
            st.first_output_at = now
        st.outputs += outputs
        st.heartbeats += head.count(b"event: heartbeat\n")
        at = head.rfind(b"\nid: ")
        start = at + 1 if at >= 0 else (0 if head.startswith(b"id: ") else -1)
        if start >= 0:
            st.last_id = head[start + 4 : head.index(b"\n", start)].decode()
        if b"\nevent: complete\n" in head:
            st.complete_at = now
        err = head.find(b"event: error\ndata: ")
        if err >= 0:
            data_start = err + len(b"event: error\ndata: ")
            payload = json.loads(head[data_start : head.index(b"\n", data_start)])
            st.errors.append(str(payload.get("code")))


async def read_stream(
    client: httpx.AsyncClient,
    command_id: str,
    stats: StreamStats | None = None,
    *,
    max_reconnects: int = 100,
) -> StreamStats:
    """Read a command's SSE stream until `complete`, resuming with Last-Event-ID whenever the
    server ends it early (SLOW_CONSUMER), as a real client would."""
    st = stats or StreamStats()
    while True:
        headers = {"Last-Event-ID": st.last_id} if st.last_id else {}
        counter = SseCounter(st)
        async with client.stream("GET", f"/commands/{command_id}/events", headers=headers) as r:
            if st.headers_at is None:
                st.headers_at = time.perf_counter()
            if r.status_code != 200:
                raise BenchError(f"GET events: {r.status_code} {(await r.aread())[:300]!r}")
            async for chunk in r.aiter_raw():
                counter.feed(chunk, time.perf_counter())
                if st.complete_at is not None:
                    break
        if st.complete_at is not None:
            return st
        if st.reconnects >= max_reconnects:
            raise BenchError(f"stream {command_id} ended {st.reconnects} times: {st.errors[-3:]}")
        st.reconnects += 1
