"""The `rdev` CLI client as subprocesses against a real rdev under uvicorn: exit codes,
stdout and stderr kept apart, Ctrl-C (SIGINT), the queue position, profiles, refusals as one
line, and a stream that survives a cut connection. The client is HTTP only, so one backend."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdev.client import AsyncClient
from tests.e2e.conftest import Launch
from tests.pgproxy import TcpProxy
from tests.support import Running, eventually

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)
RDEV = [sys.executable, "-m", "rdev"]
GATED = (
    "for i in 1 2 3 4 5; do echo line$i; done; "
    "while [ ! -f gate ]; do sleep 0.02; done; "
    "for i in 6 7 8 9 10; do echo line$i; done"
)


@dataclass
class Done:
    code: int
    out: str
    err: str


def client_env(tmp_path: Path, url: str | None, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), COLUMNS="200", NO_COLOR="1")
    if url:
        env["RDEV_URL"] = url
    if key:
        env["RDEV_API_KEY"] = key
    return env


async def spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *RDEV, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process, timeout: float = 60) -> Done:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), (err or b"").decode())


async def cli(env: dict[str, str], *args: str) -> Done:
    return await finish(await spawn(env, *args))


async def read_until(stream: asyncio.StreamReader | None, text: str, timeout: float = 20) -> str:
    assert stream is not None
    seen = ""
    while text not in seen:
        line = await asyncio.wait_for(stream.readline(), timeout)
        assert line, f"ended before {text!r}: {seen!r}"
        seen += line.decode()
    return seen


@pytest.fixture
def env(rdev: Running, tmp_path: Path) -> dict[str, str]:
    return client_env(tmp_path, rdev.url, rdev.admin_key)


@pytest.fixture
async def sdk(rdev: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(rdev.url, rdev.admin_key) as client:
        yield client


async def test_run_keeps_stdout_and_stderr_apart_and_exits_with_the_commands_code(
    env: dict[str, str],
) -> None:
    done = await cli(env, "run", "demo", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.code, done.out) == (7, "out\n"), done
    assert done.err == "err\n", done
    listing = await cli(env, "run", "demo", "--", "ls", "-a")  # -a belongs to ls
    assert listing.code == 0 and "." in listing.out.split(), listing


async def test_projects_git_and_the_command_list(env: dict[str, str]) -> None:
    shown = await cli(env, "projects")
    assert shown.code == 0 and "demo" in shown.out, shown
    assert [p["id"] for p in json.loads((await cli(env, "projects", "--json")).out)] == ["demo"]
    assert (await cli(env, "git", "demo", "--", "init", "-q")).code == 0
    status = await cli(env, "git", "demo", "--", "status", "--porcelain")
    assert status.code == 0, status
    failed = await cli(env, "run", "demo", "-d", "--", "false")
    assert failed.code == 0 and failed.out.startswith("cmd_"), failed
    cid = failed.out.strip()
    ended = await cli(env, "logs", cid, "-f")
    assert ended.code == 1, ended
    listed = await cli(env, "commands", "demo", "--status", "failed", "--json")
    assert [c["command_id"] for c in json.loads(listed.out)] == [cid]
    table = await cli(env, "commands", "demo")
    assert cid in table.out and "git" in table.out, table


async def test_claude_is_rendered_readably_or_as_raw_events(env: dict[str, str]) -> None:
    shown = await cli(env, "claude", "demo", "hello there")
    assert shown.code == 0, shown
    assert "You asked: hello there" in shown.out
    assert '-> Bash {"command": "ls"}' in shown.out
    assert "cost $0.0123" in shown.out and "2 turns" in shown.out
    assert '"type"' not in shown.out  # no raw JSON
    assert "a warning on stderr" in shown.err and "a warning" not in shown.out
    raw = await cli(env, "claude", "demo", "hello", "--json")
    events = [json.loads(line) for line in raw.out.splitlines()]
    assert events[0]["event"] == "connected" and events[-1]["event"] == "complete"
    assert any(e["event"] == "message" and e["data"]["type"] == "result" for e in events)


async def test_status_logs_and_cancel(env: dict[str, str], sdk: AsyncClient) -> None:
    cid = (await cli(env, "run", "demo", "-d", "--", "sh", "-c", "echo hi; sleep 30")).out.strip()
    await eventually(lambda: _status_is(sdk, cid, "running"))
    assert "status: running" in (await cli(env, "status", cid)).out
    await eventually(lambda: _stored(sdk, cid, "hi\n"))
    assert (await cli(env, "logs", cid)).out == "hi\n"
    cancelled = await cli(env, "cancel", cid)
    assert cancelled.code == 0 and f"{cid} cancel" in cancelled.err, cancelled
    await eventually(lambda: _status_is(sdk, cid, "cancelled"))
    assert json.loads((await cli(env, "status", cid, "--json")).out)["status"] == "cancelled"
    follow = await cli(env, "logs", cid, "--follow")
    killed_by = -((await sdk.command(cid)).exit_code or 0)  # a signal, recorded as -N
    assert killed_by > 0 and (follow.code, follow.out) == (128 + killed_by, "hi\n"), follow


async def _status_is(sdk: AsyncClient, cid: str, status: str) -> bool:
    return (await sdk.command(cid)).status == status


async def _stored(sdk: AsyncClient, cid: str, text: str) -> bool:
    return await sdk.output(cid) == text


async def test_ctrl_c_detaches_and_says_how_to_reattach(
    env: dict[str, str], sdk: AsyncClient
) -> None:
    proc = await spawn(env, "run", "demo", "--", "sh", "-c", "echo started; sleep 30")
    await read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGINT)
    done = await finish(proc)
    assert done.code == 130, done
    assert "Traceback" not in done.err
    cid = done.err.split("rdev logs ")[1].split()[0]
    assert f"rdev logs {cid} -f" in done.err
    assert (await sdk.command(cid)).status == "running"  # detached, not stopped
    await sdk.cancel(cid)


async def test_ctrl_c_with_cancel_on_interrupt_cancels(
    env: dict[str, str], sdk: AsyncClient
) -> None:
    proc = await spawn(env, "run", "demo", "--cancel-on-interrupt", "--",
                       "sh", "-c", "echo started; sleep 30")  # fmt: skip
    await read_until(proc.stdout, "started")
    proc.send_signal(signal.SIGINT)
    done = await finish(proc)
    assert done.code == 130 and "cancelled cmd_" in done.err, done
    cid = done.err.split("cancelled ")[1].split()[0]
    await eventually(lambda: _status_is(sdk, cid, "cancelled"))


async def test_a_queued_command_shows_its_position(launch: Launch, tmp_path: Path) -> None:
    async with launch(projects={"solo": {"max_concurrent_commands": 1}}) as rdev:
        env = client_env(tmp_path, rdev.url, rdev.admin_key)
        async with AsyncClient(rdev.url, rdev.admin_key) as sdk:
            blocker = await sdk.run("solo", ["sleep", "30"])
            await eventually(lambda: _status_is(sdk, blocker.id, "running"))
            proc = await spawn(env, "run", "solo", "--", "echo", "ran")
            shown = await read_until(proc.stderr, "queued")
            assert "queued (position 1)" in shown, shown
            await blocker.cancel()
            done = await finish(proc)
    assert (done.code, done.out) == (0, "ran\n"), done


async def test_refusals_are_one_line_with_the_code(
    env: dict[str, str], rdev: Running, tmp_path: Path
) -> None:
    wrong = await cli({**env, "RDEV_API_KEY": "rdev_sk_nope"}, "projects")
    assert wrong.code == 1 and wrong.err.count("\n") == 1, wrong
    assert "UNAUTHORIZED" in wrong.err and "Traceback" not in wrong.err
    missing = await cli(env, "run", "nosuchproject", "--", "true")
    assert missing.code == 255 and missing.err.count("\n") == 1, missing
    assert "NOT_FOUND" in missing.err or "FORBIDDEN" in missing.err
    invalid = await cli(env, "commands", "demo", "--status", "sideways")
    assert invalid.code == 1 and "VALIDATION_ERROR" in invalid.err, invalid
    nowhere = await cli(client_env(tmp_path, None, None), "projects")
    assert nowhere.code == 2 and "no server" in nowhere.err, nowhere
    refused = await cli({**env, "RDEV_URL": "http://127.0.0.1:9"}, "status", "cmd_x")
    assert refused.code == 1 and "CONNECTION" in refused.err, refused
    assert refused.err.count("\n") == 1 and "Traceback" not in refused.err


async def test_profiles_in_the_config_file(rdev: Running, tmp_path: Path) -> None:
    env = client_env(tmp_path, None, None)
    saved = await cli(env, "profile", "set", "here", "--url", rdev.url, "--key", rdev.admin_key)
    assert saved.code == 0, saved
    path = tmp_path / "config" / "rdev" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert rdev.admin_key not in saved.out + saved.err
    assert "demo" in (await cli(env, "projects")).out  # the default profile
    await cli(env, "profile", "set", "broken", "--url", "http://127.0.0.1:9")
    assert "CONNECTION" in (await cli(env, "projects", "--profile", "broken")).err
    assert "CONNECTION" in (await cli({**env, "RDEV_PROFILE": "broken"}, "projects")).err
    flag = await cli(env, "projects", "--profile", "broken", "--url", rdev.url,
                     "--key", rdev.admin_key)  # fmt: skip
    assert flag.code == 0 and "demo" in flag.out, flag  # the flags beat the profile
    unknown = await cli(env, "projects", "--profile", "nope")
    assert unknown.code == 2 and "no profile 'nope'" in unknown.err, unknown
    listed = await cli(env, "profile", "list")
    assert "* here" in listed.out and rdev.admin_key not in listed.out
    path.chmod(0o644)
    warned = await cli(env, "projects")
    assert warned.code == 0 and "chmod 600" in warned.err, warned


async def test_keys_over_the_api_and_straight_in_the_database(
    env: dict[str, str], rdev: Running
) -> None:
    made = await cli(env, "keys", "create", "--name", "ci", "--scope", "projects:read")
    assert made.code == 0 and made.out.startswith("rdev_sk_"), made
    key_id = made.err.split("created key ")[1].split()[0]
    listed = await cli(env, "keys", "list", "--json")
    assert key_id in [k["id"] for k in json.loads(listed.out)]
    narrow = await cli({**env, "RDEV_API_KEY": made.out.strip()}, "keys", "list")
    assert narrow.code == 1 and "FORBIDDEN" in narrow.err, narrow
    assert (await cli(env, "keys", "revoke", key_id)).code == 0
    assert json.loads((await cli(env, "keys", "get", key_id, "--json")).out)[0]["revoked_at"]
    database = {**env, "RDEV_DATA_DIR": str(rdev.app.settings.data_dir)}
    direct = await cli(database, "keys", "list", "--db")
    assert direct.code == 0 and key_id in direct.out, direct


async def test_the_cli_resumes_through_a_cut_connection(rdev: Running, tmp_path: Path) -> None:
    host, _, port = rdev.url.removeprefix("http://").rpartition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        env = client_env(tmp_path, f"http://127.0.0.1:{proxy.port}", rdev.admin_key)
        proc = await spawn(env, "run", "demo", "--", "sh", "-c", GATED)
        first = await read_until(proc.stdout, "line5")
        await proxy.cut()
        await proxy.restore()
        (rdev.workspace("demo") / "gate").write_text("")
        done = await finish(proc)
    finally:
        await proxy.close()
    assert done.code == 0, done
    assert (first + done.out).splitlines() == [f"line{i}" for i in range(1, 11)]


async def test_on_a_terminal_the_queue_position_is_a_spinner(
    launch: Launch, tmp_path: Path
) -> None:
    import pty

    async with launch(projects={"solo": {"max_concurrent_commands": 1}}) as rdev:
        env = client_env(tmp_path, rdev.url, rdev.admin_key)
        env.pop("NO_COLOR")
        env["TERM"] = "xterm"
        async with AsyncClient(rdev.url, rdev.admin_key) as sdk:
            blocker = await sdk.run("solo", ["sleep", "30"])
            await eventually(lambda: _status_is(sdk, blocker.id, "running"))
            main, tty = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *RDEV, "run", "solo", "--", "echo", "ran", env=env,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=tty,
                )  # fmt: skip
                os.close(tty)
                screen = ""
                while "queued (position 1)" not in screen:
                    chunk = await asyncio.wait_for(asyncio.to_thread(os.read, main, 4096), 20)
                    assert chunk, screen
                    screen += chunk.decode(errors="replace")
                await blocker.cancel()
                done = await finish(proc)
            finally:
                os.close(main)
    assert "\x1b[" in screen and "rdev: cmd_" not in screen  # drawn in place, not lines
    assert (done.code, done.out) == (0, "ran\n"), done
