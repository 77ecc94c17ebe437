"""Helpers for tests: rdev under a real uvicorn on 127.0.0.1, an SSE reader, and waiting with
a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import psycopg
import uvicorn
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy import Connection, create_engine

from rdev.adapters.local.backend import settings_file
from rdev.adapters.sql.db import MIGRATIONS
from rdev.bootstrap import App, build, server_config
from rdev.config import Settings
from rdev.services.audit import SYSTEM
from rdev.services.keys import NewKey

PG_ADMIN_URL = os.environ.get("RDEV_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return type(e).__name__
    return None


async def eventually(
    check: Callable[[], Awaitable[Any] | Any], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


@dataclass
class Running:
    app: App
    url: str
    admin_key: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    workspaces: dict[str, Path] = field(default_factory=dict)
    # Rewrites one project's settings while rdev runs (project.toml, or the ConfigMap entry).
    settings_writer: Callable[[str, Any], None] | None = None

    def put_settings(self, project: str, config: Any) -> None:
        assert self.settings_writer is not None, "launched without a settings writer"
        self.settings_writer(project, config)

    def workspace(self, project: str) -> Path:
        """Where a project's files and processes live, on either backend."""
        return self.workspaces.get(project) or self.app.settings.workspace_root / project

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        kwargs.setdefault("timeout", 30)
        client = httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)
        self.clients.append(client)
        return client

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.client(self.admin_key)

    async def new_key(self, **fields: Any) -> str:
        fields.setdefault("name", "test")
        issued = await self.app.services.keys.issue(NewKey(**fields), actor=SYSTEM, by=None)
        return issued.secret


@asynccontextmanager
async def serve(
    settings: Settings, *, host: str = "127.0.0.1", **build_kwargs: Any
) -> AsyncIterator[Running]:
    """rdev built by bootstrap and served by a real uvicorn on an ephemeral loopback port,
    configured as `rdev serve` configures it (uvicorn itself believes no proxy headers)."""
    app = build(settings, **build_kwargs)
    config = server_config(app, host=host, port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    issued = await app.services.keys.issue(
        NewKey(name="admin", scopes=["admin"]), actor=SYSTEM, by=None
    )
    netloc = f"[{host}]" if ":" in host else host
    running = Running(app, f"http://{netloc}:{port}", issued.secret)
    try:
        yield running
    finally:
        for client in running.clients:
            await client.aclose()
        server.should_exit = True
        await task


def make_project(root: Path, name: str, config: str | bytes = "") -> Path:
    """A local project's folder, and its settings (beside it: adapters/local/backend.py)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if config:
        file = settings_file(root, name)
        file.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(config, bytes):
            file.write_bytes(config)
        else:
            file.write_text(config)
    return folder


@dataclass
class SseEvent:
    event: str
    data: dict[str, Any]
    id: str | None = None


async def read_sse(
    client: httpx.AsyncClient,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    until: str = "complete",
    opened: asyncio.Event | None = None,
) -> list[SseEvent]:
    """Read an SSE stream until `until` arrives, the server ends it, or `stop_after` events.
    `opened` is set once the first event (`connected`) has arrived."""
    out: list[SseEvent] = []
    async with client.stream("GET", path, headers=headers or {}) as resp:
        assert resp.status_code == 200, await resp.aread()
        current: dict[str, str] = {}
        async for line in resp.aiter_lines():
            if line == "":
                if "event" in current:
                    out.append(
                        SseEvent(
                            current["event"],
                            json.loads(current.get("data", "{}")),
                            current.get("id"),
                        )
                    )
                    current = {}
                    if opened is not None:
                        opened.set()
                    if out[-1].event == until or (stop_after and len(out) >= stop_after):
                        break
                continue
            name, _, value = line.partition(": ")
            if name in ("event", "data", "id"):
                current[name] = value
    return out


def off_event_schema(schema: dict[str, Any], event: dict[str, Any]) -> str | None:
    """Why one parsed SSE event (event, data, id, retry) is off an OpenAPI `itemSchema` shaped
    like documented.SSE_EVENT, or None. Its data is checked against the `contentSchema` of its
    event's branch by hand: to a JSON Schema validator content keywords are annotations."""
    error = next(iter(jsonschema_rs.validator_for(schema).iter_errors(event)), None)
    if error is not None:
        return f"{event}: {error}"
    branches = [b for b in schema["oneOf"] if b["properties"]["event"]["const"] == event["event"]]
    content = branches[0]["properties"]["data"]["contentSchema"]
    try:
        data = json.loads(event["data"])
    except ValueError:
        return f"{event}: data is not JSON"
    error = next(iter(jsonschema_rs.validator_for(content).iter_errors(data)), None)
    return None if error is None else f"{event}: data: {error}"


TRANSIENT_ERRORS = frozenset({"SLOW_CONSUMER", "SHUTTING_DOWN"})


async def read_to_end(
    client: httpx.AsyncClient, path: str, *, max_resumes: int = 50
) -> list[SseEvent]:
    """Read a command's stream to `complete` as a well-behaved client does: after a transient
    error (`SLOW_CONSUMER`, `SHUTTING_DOWN`) reconnect with the last event id seen. Returns
    the persisted events and the first `connected`, without the transient errors."""
    out: list[SseEvent] = []
    headers: dict[str, str] = {}
    for _ in range(max_resumes):
        events = await read_sse(client, path, headers=headers)
        for event in events:
            if (
                event.event == "error"
                and event.id is None
                and event.data.get("code") in TRANSIENT_ERRORS
            ):
                continue
            if event.event == "connected" and out:
                continue
            out.append(event)
        if out and out[-1].event == "complete":
            return out
        last = next((e.id for e in reversed(out) if e.id), None)
        headers = {"Last-Event-ID": last} if last else {}
    raise AssertionError(f"{path} did not complete after {max_resumes} resumes")


def processes_under(folder: Path) -> list[int]:
    """PIDs of live processes whose working directory is inside `folder` (Linux /proc)."""
    root = str(folder.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + "/")):
            found.append(int(entry.name))
    return found


async def command_status(client: httpx.AsyncClient, command_id: str) -> dict[str, Any]:
    resp = await client.get(f"/commands/{command_id}")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def wait_status(
    client: httpx.AsyncClient, command_id: str, *statuses: str, timeout: float = 15.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        data = await command_status(client, command_id)
        return data if data["status"] in statuses else None

    result: dict[str, Any] = await eventually(check, timeout=timeout)
    return result


def output_text(events: list[SseEvent]) -> str:
    return "".join(
        e.data["line"] + ("" if e.data.get("partial") else "\n")
        for e in events
        if e.event == "output"
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Replica:
    """`rdev serve` in its own process: for restarts, several replicas and signals."""

    proc: asyncio.subprocess.Process
    url: str

    async def stop(self, sig: int = 15, timeout: float = 30.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout)


async def start_replica(env: dict[str, str], *, cwd: Path, stderr: Any = None) -> Replica:
    """`rdev serve` on a free port, once /health answers; `stderr` as for subprocess (inherited
    by default). The caller ends it (`stop`), or kills it when a test fails first."""
    import sys

    port = free_port()
    full_env = {**os.environ, "RDEV_LOG_LEVEL": "warning", **env, "PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "serve", "--host", "127.0.0.1", env=full_env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"rdev exited with {proc.returncode}")
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"{url}/health")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await eventually(healthy, timeout=30, interval=0.1)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return Replica(proc, url)


MARKER = "RDEV_COMMAND_ID"


def marked_processes(command_id: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes that carry `RDEV_COMMAND_ID=<command_id>` in their
    environment: every process a command started inherits it, even after setsid or a double
    fork. Read independently of rdev's own scan, so a test does not trust the code it checks."""
    entry = f"{MARKER}={command_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and entry in environ.split(b"\0"):
            found.append((int(proc.name), cmdline.strip()))
    return sorted(found)


@asynccontextmanager
async def two_replicas(
    pg_url: str, root: Path, tmp_path: Path, *, stderr_dir: Path | None = None, **env: str
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two `rdev serve` processes on one PostgreSQL database, serving the workspaces under
    `root`, each with a client holding one admin key (made with `rdev keys create`). `env`
    adds settings (RDEV_LEASE_SECONDS=3 and a high RATE_LIMIT_RPS are given); with
    `stderr_dir`, replica i logs to `stderr_dir / f"r{i}.log"`."""
    import sys

    from rdev.bootstrap import build_store

    store = build_store(Settings(database_url=pg_url))
    await store.db.migrate()
    await store.close()
    base = {
        "RDEV_DATABASE_URL": pg_url,
        "RDEV_LOCAL_ROOT": str(root),
        "RDEV_LEASE_SECONDS": "3",
        "RATE_LIMIT_RPS": "1000",
        **env,
    }
    logs = [
        (stderr_dir / f"r{i}.log").open("wb") if stderr_dir is not None else None for i in range(2)
    ]
    replicas = [
        await start_replica(
            {**base, "RDEV_DATA_DIR": str(tmp_path / f"d{i}"), "RDEV_REPLICA_ID": f"r{i}"},
            cwd=tmp_path,
            stderr=logs[i],
        )
        for i in range(2)
    ]
    clients: list[httpx.AsyncClient] = []
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rdev", "keys", "create", "--name", "t", "--scope", "admin",
            env={**os.environ, **base}, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        key = (await proc.communicate())[0].decode().strip()
        headers = {"Authorization": f"Bearer {key}"}
        clients = [httpx.AsyncClient(base_url=r.url, headers=headers, timeout=30) for r in replicas]
        yield clients
    finally:
        for client in clients:
            await client.aclose()
        for replica in replicas:
            await replica.stop()
        for log in logs:
            if log is not None:
                log.close()


@contextmanager
def at_revision(url: str, revision: str) -> Iterator[Connection]:
    """A connection to a database brought to `revision` by Alembic, in one transaction: write
    the rows an older rdev left, then let the test migrate the rest of the way."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            alembic_command.upgrade(cfg, revision)
            yield conn
    finally:
        engine.dispose()
