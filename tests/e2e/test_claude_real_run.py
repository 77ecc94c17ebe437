"""The real Claude Code CLI behind rdev (offline, against tests/claude_api.py), on both
backends: credentials from RDEV_CLAUDE_ENV and project settings reach it and show nowhere;
denied tools are told apart from work done; API retries are bounded and visible; each run's
temporary folder is gone when it ends; a run cancelled or timed out while the API is still
streaming (`slow stream`) ends promptly, keeps its session and leaves nothing behind; the CLI's
messages reach rdev's stream while the turn is under way; the permission modes are the pinned
CLI's.

Here rdev runs the CLI itself (no wrapper script): every variable the CLI needs comes through
RDEV_CLAUDE_ENV, as an operator would set it up."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rdev.domain.policy import PERMISSION_MODES
from tests.claude_api import FakeAnthropic, fake_anthropic
from tests.e2e.conftest import Launch
from tests.e2e.test_claude_real_cli import _MISSING, REAL_CLI
from tests.support import (
    Running,
    command_status,
    eventually,
    marked_processes,
    read_sse,
    wait_status,
)

pytestmark = pytest.mark.skipif(REAL_CLI is None, reason=_MISSING)

RDEV_SECRET = "sk-ant-rdev-0a9f8e7d6c5b4a39"
PROJECT_SECRET = "sk-ant-proj-1b2c3d4e5f6a7b8c"
PASSED = (
    "ANTHROPIC_BASE_URL,ANTHROPIC_API_KEY,CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,"
    "DISABLE_AUTOUPDATER,IS_SANDBOX"
)


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[FakeAnthropic]:
    """The stand-in, and rdev's own environment as an operator would set it."""
    async with fake_anthropic() as state:
        home = tmp_path / "home"
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", state.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", RDEV_SECRET)
        monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        monkeypatch.setenv("DISABLE_AUTOUPDATER", "1")
        monkeypatch.setenv("IS_SANDBOX", "1")
        yield state


def real(launch: Launch, projects: dict[str, dict[str, Any]], **overrides: Any) -> Any:
    return launch(projects, claude_bin=REAL_CLI, claude_env=PASSED, **overrides)


async def run(
    rdev: Running, project: str, body: dict[str, Any], *statuses: str
) -> tuple[dict[str, Any], list[Any]]:
    resp = await rdev.admin.post(f"/projects/{project}/claude", json=body)
    assert resp.status_code == 201, resp.text
    cmd = resp.json()["data"]
    ends = statuses or ("succeeded", "failed")
    done = await wait_status(rdev.admin, cmd["command_id"], *ends, "cancelled", timeout=120)
    events = await read_sse(rdev.admin, cmd["events_url"])
    return done, events


async def test_credentials_reach_the_cli_and_show_nowhere(
    launch: Launch,
    backend: str,
    api: FakeAnthropic,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    projects = {"p": {}, "q": {"claude_env": {"ANTHROPIC_API_KEY": PROJECT_SECRET}}}
    async with real(launch, projects) as rdev:
        seen: list[str] = []
        for project, key in (("p", RDEV_SECRET), ("q", PROJECT_SECRET)):
            done, events = await run(rdev, project, {"prompt": f"hello from {project}"})
            assert done["status"] == "succeeded", (done, [e.data for e in events])
            assert api.turns[-1].api_key == key  # the project's value wins over rdev's
            assert api.turns[-1].user_texts[-1] == f"hello from {project}"
            seen += [repr(done), repr([e.data for e in events])]
            seen.append((await rdev.admin.get(f"/commands/{done['command_id']}/output")).text)
        project_view = (await rdev.admin.get("/projects/q")).json()["data"]
        assert project_view["claude_env"] == ["ANTHROPIC_API_KEY"]  # names only
        seen.append(repr(project_view))
        seen.append((await rdev.admin.get("/projects")).text)
        seen.append((await rdev.admin.get("/audit", params={"limit": 200})).text)
        if backend == "local":  # other kinds never get them (in a pod, the pod's env applies)
            shell = await rdev.admin.post("/projects/q/shell", json={"argv": ["env"]})
            env_cmd = await wait_status(rdev.admin, shell.json()["data"]["command_id"],
                                        "succeeded", timeout=30)  # fmt: skip
            out = (await rdev.admin.get(f"/commands/{env_cmd['command_id']}/output")).text
            assert "ANTHROPIC" not in out and "CLAUDE_CODE" not in out
    captured = capfd.readouterr()
    seen += [caplog.text, captured.out, captured.err]
    for text in seen:
        assert RDEV_SECRET not in text
        assert PROJECT_SECRET not in text


@pytest.mark.parametrize("mode", ["default", "dontAsk", "plan"])
async def test_a_turn_whose_tool_was_denied_is_told_apart_from_work_done(
    launch: Launch, api: FakeAnthropic, mode: str
) -> None:
    async with real(launch, {"p": {}}) as rdev:
        denied, events = await run(
            rdev, "p", {"prompt": "run bash: touch made-by-claude", "permission_mode": mode}
        )
        assert denied["status"] == "succeeded"  # the CLI exits 0
        assert denied["outcome"] == "denied", denied
        assert denied["subtype"] == "success"
        assert denied["terminal_reason"] == "completed"
        assert denied["permission_denials"] == [
            {"tool_name": "Bash", "input_summary": "touch made-by-claude"}
        ]
        complete = events[-1]
        assert complete.event == "complete"
        assert complete.data["outcome"] == "denied"
        assert complete.data["permission_denials"] == denied["permission_denials"]
        assert not (rdev.workspace("p") / "made-by-claude").exists()

        worked, events = await run(rdev, "p", {"prompt": "run bash: echo read-only-is-fine"})
        assert worked["outcome"] == "completed", worked
        assert worked["permission_denials"] == []
        assert events[-1].data["outcome"] == "completed"


async def test_api_retries_are_bounded_by_the_setting_and_visible_as_events(
    launch: Launch, api: FakeAnthropic
) -> None:
    async with real(launch, {"p": {}}, claude_max_retries=1) as rdev:
        done, events = await run(rdev, "p", {"prompt": "api error 529"})
        retries = [
            e.data for e in events if e.event == "message" and e.data.get("subtype") == "api_retry"
        ]
        assert len(retries) == 1, [e.data for e in events]
        assert len([t for t in api.turns if t.user_texts[-1:] == ["api error 529"]]) == 2
        assert done["outcome"] == "error", done
        assert done["is_error"] is True


async def test_each_run_has_its_own_temp_dir_removed_when_it_ends(
    launch: Launch, api: FakeAnthropic
) -> None:
    async with real(launch, {"p": {"allow_claude_shell": True}}) as rdev:
        prompt = "run bash: echo $TMPDIR"
        done, _ = await run(rdev, "p", {"prompt": prompt, "permission_mode": "bypassPermissions"})
        assert done["outcome"] == "completed", done
        tmp = api.turns[-1].tool_results[-1].strip()  # what `echo $TMPDIR` printed
        assert "rdev" in tmp or "claude-tmp" in tmp, tmp
        assert not _is_dir(tmp)

        failed, _ = await run(rdev, "p", {"prompt": "api error 500"})
        assert failed["outcome"] == "error"

        cid = await start(rdev, "p", {"prompt": "slow stream 2 x30"})  # a minute of answer
        await eventually(lambda: api.slow_streams == 1, timeout=60)
        held = _tmpdir(cid)
        assert _is_dir(held)
        assert (await rdev.admin.post(f"/commands/{cid}/cancel")).status_code == 200
        await wait_status(rdev.admin, cid, "cancelled", timeout=60)
        assert not _is_dir(held)
        if rdev.app.settings.backend == "local":  # nothing left in the parent either
            parent = rdev.app.settings.data_dir / "claude-tmp"
            await eventually(lambda: not list(parent.iterdir()))


def _is_dir(path: str) -> bool:
    return Path(path).is_dir()


async def start(rdev: Running, project: str, body: dict[str, Any]) -> str:
    resp = await rdev.admin.post(f"/projects/{project}/claude", json=body)
    assert resp.status_code == 201, resp.text
    command_id: str = resp.json()["data"]["command_id"]
    return command_id


def _tmpdir(command_id: str) -> str:
    """The TMPDIR the command's processes (the CLI among them) run with, from /proc."""
    for pid, _line in marked_processes(command_id):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        values = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"TMPDIR=")]
        if values and values[0]:
            return values[0]
    raise AssertionError(f"no TMPDIR in the environment of {marked_processes(command_id)}")


GRACE = 1.0  # RDEV_KILL_GRACE_SECONDS here: "promptly" is within it and one second more


def _init(events: list[Any]) -> dict[str, Any]:
    inits = [e.data for e in events if e.event == "message" and e.data.get("subtype") == "init"]
    assert len(inits) == 1, [e.data for e in events]
    return dict(inits[0])


async def test_cancelling_while_the_api_streams_ends_the_run_promptly_and_cleanly(
    launch: Launch, api: FakeAnthropic
) -> None:
    async with real(launch, {"p": {}}, kill_grace_seconds=GRACE) as rdev:
        cid = await start(rdev, "p", {"prompt": "slow stream 2 x7"})  # 14 s of answer
        await eventually(lambda: api.slow_streams == 1, timeout=10)  # the answer has begun
        assert (await command_status(rdev.admin, cid))["status"] == "running"
        held = _tmpdir(cid)
        assert _is_dir(held)

        asked = time.monotonic()
        assert (await rdev.admin.post(f"/commands/{cid}/cancel")).status_code == 200
        done = await wait_status(rdev.admin, cid, "cancelled", timeout=GRACE + 10)
        took = time.monotonic() - asked
        left = marked_processes(cid)  # at the moment it is reported over

        assert took <= GRACE + 1, took
        assert api.slow_streams_ended == 0  # cut off mid-answer, not after it
        assert left == []
        assert not _is_dir(held)
        events = await read_sse(rdev.admin, f"/commands/{cid}/events")
        assert done["session_id"] is not None
        assert done["session_id"] == _init(events)["session_id"]
        assert events[-1].event == "complete"
        assert events[-1].data["status"] == "cancelled"


async def test_a_timeout_while_the_api_streams_ends_the_run_promptly_and_cleanly(
    launch: Launch, api: FakeAnthropic
) -> None:
    limit = 5
    async with real(launch, {"p": {}}, kill_grace_seconds=GRACE) as rdev:
        cid = await start(rdev, "p", {"prompt": "slow stream 2 x7", "timeout_seconds": limit})
        await eventually(lambda: api.slow_streams == 1, timeout=limit)
        held = _tmpdir(cid)
        assert _is_dir(held)

        done = await wait_status(rdev.admin, cid, "timed_out", timeout=limit + GRACE + 10)
        left = marked_processes(cid)

        assert done["duration_ms"] <= (limit + GRACE + 1) * 1000, done
        assert api.slow_streams_ended == 0
        assert left == []
        assert not _is_dir(held)
        events = await read_sse(rdev.admin, f"/commands/{cid}/events")
        assert done["session_id"] is not None
        assert done["session_id"] == _init(events)["session_id"]
        assert events[-1].data["status"] == "timed_out"


async def test_the_clis_messages_stream_live_while_the_api_is_slow(
    launch: Launch, api: FakeAnthropic
) -> None:
    async with real(launch, {"p": {}}) as rdev:
        cid = await start(rdev, "p", {"prompt": "slow stream 1.5 x6"})  # 9 s of answer
        early = await read_sse(rdev.admin, f"/commands/{cid}/events", until="message")
        # the first message is here while the API is still answering and the run goes on
        assert api.slow_streams_ended == 0
        assert (await command_status(rdev.admin, cid))["status"] == "running"
        assert early[-1].data.get("subtype") == "init", [e.data for e in early]
        statuses = [e.data["status"] for e in early if e.event in ("connected", "status")]
        assert statuses[-1] == "running", [e.data for e in early]

        done = await wait_status(rdev.admin, cid, "succeeded", "failed", timeout=30)
        assert done["status"] == "succeeded", done
        assert api.slow_streams_ended == 1
        events = await read_sse(rdev.admin, f"/commands/{cid}/events")
        assert done["session_id"] == early[-1].data["session_id"]
        result = [e.data for e in events if e.event == "message"][-1]
        assert result["result"] == "You said: slow stream 1.5 x6", result


def test_the_permission_modes_are_the_pinned_clis() -> None:
    assert REAL_CLI is not None
    out = subprocess.run([REAL_CLI, "--help"], capture_output=True, text=True, timeout=60).stdout
    flat = " ".join(out.split())
    match = re.search(r"--permission-mode <mode> .*?\(choices: ([^)]*)\)", flat)
    assert match is not None, out
    assert set(re.findall(r'"([^"]+)"', match[1])) == PERMISSION_MODES
