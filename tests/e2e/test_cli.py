"""The real `rdev` command in subprocesses, against a temporary data directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rdev.bootstrap import build_store
from rdev.config import Settings
from rdev.domain import keys as keyfmt
from tests.support import eventually

RDEV = [sys.executable, "-m", "rdev"]
KEY = re.compile(r"^rdev_sk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RDEV_", "POSTGRES_"))
        and k not in ("PORT", "RATE_LIMIT_RPS", "CONCURRENT_COMMANDS")
    }
    clean.update(RDEV_DATA_DIR=str(tmp_path / "data"), COLUMNS="200", NO_COLOR="1")
    return clean


def rdev(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RDEV, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def created(env: dict[str, str], *args: str) -> str:
    proc = rdev(env, "keys", "create", *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and KEY.match(lines[0]), proc.stdout
    return lines[0]


def stored_hash(env: dict[str, str], key_id: str) -> tuple[str, bool]:
    async def read() -> tuple[str, bool]:
        store = build_store(Settings(data_dir=Path(env["RDEV_DATA_DIR"])))
        try:
            key = await store.keys.get(key_id)
        finally:
            await store.close()
        assert key is not None
        return key.secret_hash, key.revoked_at is not None

    return asyncio.run(read())


def sha(raw: str) -> str:
    parsed = keyfmt.parse_key(raw)
    assert parsed is not None
    return hashlib.sha256(parsed[1].encode()).hexdigest()


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    proc = rdev(env, "--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("serve", "migrate", "keys"):
        assert re.search(rf"\b{command}\b", proc.stdout), proc.stdout
    keys_help = rdev(env, "keys", "--help")
    for command in ("create", "list", "rotate", "revoke"):
        assert command in keys_help.stdout


def test_serve_help_shows_its_options(env: dict[str, str]) -> None:
    proc = rdev(env, "serve", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--host", "--port", "--demo"):
        assert option in proc.stdout


def test_keys_create_list_rotate_revoke(env: dict[str, str]) -> None:
    raw = created(env, "--name", "x", "--scope", "projects:read", "--scope", "audit:read")
    key_id = keyfmt.parse_key(raw)[0]  # type: ignore[index]
    assert stored_hash(env, key_id) == (sha(raw), False)

    listed = rdev(env, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if key_id in line)
    assert " x " in row and "audit:read,projects:read" in row
    secret = keyfmt.parse_key(raw)[1]  # type: ignore[index]
    for needle in (secret, sha(raw)):
        assert needle not in listed.stdout + listed.stderr

    rotated = rdev(env, "keys", "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert KEY.match(new) and new != raw and keyfmt.parse_key(new)[0] == key_id  # type: ignore[index]
    assert stored_hash(env, key_id) == (sha(new), False)

    revoked = rdev(env, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert stored_hash(env, key_id) == (sha(new), True)
    row = next(line for line in rdev(env, "keys", "list").stdout.splitlines() if key_id in line)
    assert "yes" in row
    # a revoked key cannot be rotated: one line, exit 1
    again = rdev(env, "keys", "rotate", key_id)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("rdev: ") and "Traceback" not in again.stderr


def test_keys_create_with_its_own_rate_limit(env: dict[str, str]) -> None:
    raw = created(env, "--name", "slow", "--scope", "projects:read", "--rate-limit-rps", "2.5")
    key_id = keyfmt.parse_key(raw)[0]  # type: ignore[index]

    async def read() -> float | None:
        store = build_store(Settings(data_dir=Path(env["RDEV_DATA_DIR"])))
        try:
            key = await store.keys.get(key_id)
        finally:
            await store.close()
        assert key is not None
        return key.rate_limit_rps

    assert asyncio.run(read()) == 2.5


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("keys", "create", "--name", "x", "--scope", "root"), "root"),
        (("keys", "revoke", "nosuchkey000"), "nosuchkey000"),
        (("keys", "create", "--name", "x", "--scope", "admin", "--rate-limit-rps", "0"),
         "rate_limit_rps"),
        (("keys", "create", "--name", "x", "--scope", "admin", "--rate-limit-rps", "20000"),
         "rate_limit_rps"),
    ],
)  # fmt: skip
def test_key_command_refusals_are_one_line(
    env: dict[str, str], args: tuple[str, ...], needle: str
) -> None:
    proc = rdev(env, *args)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("var", "value"),
    [("PORT", "abc"), ("RDEV_TRUSTED_PROXIES", "10.0.0.0/99")],
)
def test_a_bad_setting_stops_migrate_with_one_line(
    env: dict[str, str], var: str, value: str
) -> None:
    proc = rdev({**env, var: value}, "migrate")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert var in lines[0]


def test_an_unreachable_database_is_one_line(env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/x"
    for args in (("migrate",), ("keys", "list")):
        proc = rdev({**env, "RDEV_DATABASE_URL": url}, *args)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_migrate_creates_the_database(env: dict[str, str]) -> None:
    proc = rdev(env, "migrate")
    assert proc.returncode == 0, proc.stderr
    assert (Path(env["RDEV_DATA_DIR"]) / "rdev.db").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_demo_prints_a_working_admin_key_and_stops_on_sigterm(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *RDEV, "serve", "--demo", "--port", str(port),
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    try:
        key = ""
        while not KEY.match(key):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, "rdev serve ended before printing a key"
            key = line.decode().strip()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as client:

            async def projects() -> list[str] | None:
                try:
                    resp = await client.get("/projects")
                except httpx.TransportError:
                    return None
                return [p["id"] for p in resp.json()["data"]] if resp.status_code == 200 else None

            assert "demo" in await eventually(projects, timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=10)
        # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean stop
        assert code in (0, -signal.SIGTERM)
        errors = (await stderr_task).decode()
        assert "rdev.stopped" in errors
        assert "Traceback" not in errors
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        stderr_task.cancel()


async def test_serve_demo_twice_prints_no_second_key(env: dict[str, str], tmp_path: Path) -> None:
    created(env, "--name", "first", "--scope", "admin")
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *RDEV, "serve", "--demo", "--port", str(port),
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def up() -> bool:
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, errors = await asyncio.wait_for(proc.communicate(), timeout=10)
        assert proc.returncode in (0, -signal.SIGTERM)
        assert "rdev_sk_" not in out.decode()
        assert "Keys exist already" in errors.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
