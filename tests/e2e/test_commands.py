"""Running claude, shell and git commands through the real server on the local backend."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Running, read_sse, wait_status


async def _run(rdev: Running, kind: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    resp = await rdev.admin.post(f"/projects/demo/{kind}", json=body, **kw)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def test_claude_stream_json_becomes_message_events_and_result_is_stored(
    rdev: Running,
) -> None:
    prompt = "explain; rm -rf / && echo $(whoami) | tee `x` > y"
    cmd = await _run(rdev, "claude", {"prompt": prompt, "model": "sonnet", "max_turns": 3})
    events = await read_sse(rdev.admin, cmd["events_url"])
    messages = [e.data for e in events if e.event == "message"]
    assert [m["type"] for m in messages] == ["system", "assistant", "assistant", "user", "result"]
    assert messages[1]["message"]["content"][0]["text"] == f"You asked: {prompt}"
    outputs = {(e.data["stream"], e.data["line"]) for e in events if e.event == "output"}
    assert outputs == {
        ("stdout", "plain diagnostic line on stdout"),
        ("stderr", "a warning on stderr"),
    }
    done = await wait_status(rdev.admin, cmd["command_id"], "succeeded")
    assert done["session_id"] == messages[0]["session_id"]
    assert done["total_cost_usd"] == pytest.approx(0.0123)
    assert done["num_turns"] == 2
    assert done["is_error"] is False
    assert done["argv"][:2] == [rdev.app.settings.claude_bin, "--print"]
    assert done["argv"][-2:] == ["--", prompt]
    assert "--output-format=stream-json" in done["argv"] and "--verbose" in done["argv"]

    again = await _run(rdev, "claude", {"prompt": "go on", "resume_session": done["session_id"]})
    events = await read_sse(rdev.admin, again["events_url"])
    init = next(e.data for e in events if e.event == "message")
    assert init["session_id"] == done["session_id"]


async def test_claude_error_result_fails_the_command(rdev: Running) -> None:
    cmd = await _run(rdev, "claude", {"prompt": "please FAIL"})
    events = await read_sse(rdev.admin, cmd["events_url"])
    assert events[-1].data["status"] == "failed"
    assert events[-1].data["exit_code"] == 1
    done = await wait_status(rdev.admin, cmd["command_id"], "failed")
    assert done["is_error"] is True


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ({"command": "ls; rm -rf /"}, ";"),
        ({"command": "cat x | sh"}, "|"),
        ({"command": "echo $(id)"}, "$("),
        ({"command": "echo hi > f"}, ">"),
        ({"command": "a && b"}, "&&"),
        ({"command": "echo `id`"}, "`"),
    ],
)
async def test_dangerous_shell_strings_are_refused_naming_the_pattern(
    rdev: Running, body: dict[str, Any], pattern: str
) -> None:
    resp = await rdev.admin.post("/projects/demo/shell", json=body)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "COMMAND_REJECTED"
    assert err["details"]["pattern"] == pattern


@pytest.mark.parametrize(
    ("kind", "body", "status", "field"),
    [
        ("shell", {"command": "ls", "cwd": "../other"}, 422, "cwd"),
        ("shell", {"command": "ls", "cwd": "/etc"}, 422, "cwd"),
        ("shell", {"argv": ["ls", "a\u0000b"]}, 422, "argv"),
        ("shell", {"command": "ls", "argv": ["ls"]}, 422, "command"),
        ("shell", {"command": "ls", "env": {"BAD-NAME": "x"}}, 422, "env"),
        ("claude", {"prompt": "hi\u0000there"}, 422, "prompt"),
        ("claude", {"prompt": "x" * 100_001}, 422, "prompt"),
        ("claude", {"prompt": "hi", "permission_mode": "yolo"}, 422, "permission_mode"),
        ("claude", {"prompt": "hi", "resume_session": "../../etc"}, 422, "resume_session"),
        ("claude", {"prompt": "hi", "timeout_seconds": 10**7}, 422, "timeout_seconds"),
        ("git", {"args": ["status", "a\u0000"]}, 422, "args"),
    ],
)
async def test_bad_command_input_is_422_naming_the_field(
    rdev: Running, kind: str, body: dict[str, Any], status: int, field: str
) -> None:
    resp = await rdev.admin.post(f"/projects/demo/{kind}", json=body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    # a policy names one field; body validation (text, documented patterns) lists them
    details = err["details"]
    names = [f["field"] for f in details["fields"]] if "fields" in details else [details["field"]]
    assert any(n == field or n.startswith(field + ".") for n in names), names


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "RDEV_COMMAND_ID"])
async def test_env_overrides_of_loader_and_path_are_refused(rdev: Running, name: str) -> None:
    resp = await rdev.admin.post(
        "/projects/demo/shell", json={"command": "env", "env": {name: "/x"}}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "COMMAND_REJECTED"


async def test_shell_env_and_cwd_reach_the_command(rdev: Running) -> None:
    (rdev.workspace("demo") / "sub").mkdir()
    cmd = await _run(
        rdev,
        "shell",
        {"argv": ["sh", "-c", "pwd; echo $GREETING"], "cwd": "sub", "env": {"GREETING": "hi"}},
    )
    events = await read_sse(rdev.admin, cmd["events_url"])
    lines = [e.data["line"] for e in events if e.event == "output"]
    assert lines[0] == str((rdev.workspace("demo") / "sub").resolve())
    assert lines[1] == "hi"


async def test_git_runs_allowed_subcommands_only(rdev: Running) -> None:
    refused = await rdev.admin.post("/projects/demo/git", json={"args": ["daemon"]})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "COMMAND_REJECTED"
    cmd = await _run(rdev, "git", {"args": ["init", "-q"]})
    done = await wait_status(rdev.admin, cmd["command_id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["argv"] == ["git", "init", "-q"]
    status = await _run(rdev, "git", {"args": ["status", "--short"]})
    assert (await wait_status(rdev.admin, status["command_id"], "succeeded", "failed"))[
        "exit_code"
    ] == 0


async def test_failing_command_and_missing_executable(rdev: Running) -> None:
    cmd = await _run(rdev, "shell", {"argv": ["sh", "-c", "exit 3"]})
    events = await read_sse(rdev.admin, cmd["events_url"])
    assert events[-1].data == {
        "status": "failed",
        "exit_code": 3,
        "duration_ms": events[-1].data["duration_ms"],
    }
    missing = await _run(rdev, "shell", {"argv": ["no-such-program-xyz"]})
    events = await read_sse(rdev.admin, missing["events_url"])
    errors = [e.data for e in events if e.event == "error"]
    assert errors and errors[0]["code"] == "EXEC_FAILED"
    assert events[-1].data["status"] == "failed" and events[-1].data["exit_code"] is None


async def test_idempotency_key_returns_same_command_or_409(rdev: Running) -> None:
    body = {"argv": ["echo", "once"]}
    headers = {"Idempotency-Key": "abc-123"}
    first = await rdev.admin.post("/projects/demo/shell", json=body, headers=headers)
    second = await rdev.admin.post("/projects/demo/shell", json=body, headers=headers)
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json()["data"]["command_id"] == second.json()["data"]["command_id"]
    other = await rdev.admin.post(
        "/projects/demo/shell", json={"argv": ["echo", "twice"]}, headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


async def test_commands_are_listed_filtered_and_paginated(rdev: Running) -> None:
    ids = [(await _run(rdev, "shell", {"argv": ["true"]}))["command_id"] for _ in range(5)]
    for cid in ids:
        await wait_status(rdev.admin, cid, "succeeded")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "status": "succeeded"} | ({"cursor": cursor} if cursor else {})
        page = (await rdev.admin.get("/projects/demo/commands", params=params)).json()
        seen += [c["command_id"] for c in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    assert (
        await rdev.admin.get("/projects/demo/commands", params={"cursor": "garbage!"})
    ).status_code == 422


async def test_submissions_and_cancels_are_audited(rdev: Running) -> None:
    cmd = await _run(rdev, "claude", {"prompt": "p" * 500})
    await rdev.admin.post(f"/commands/{cmd['command_id']}/cancel")
    entries = (await rdev.admin.get("/audit", params={"action": "command.submit"})).json()["data"]
    entry = next(e for e in entries if e["target"] == cmd["command_id"])
    assert entry["details"]["project"] == "demo"
    assert entry["details"]["kind"] == "claude"
    assert len(entry["details"]["argv"][2]) < 200  # the prompt is shortened
    assert entry["client_ip"] == "127.0.0.1"
    cancels = (await rdev.admin.get("/audit", params={"action": "command.cancel"})).json()["data"]
    assert any(e["target"] == cmd["command_id"] for e in cancels)


async def test_keys_that_may_not_see_a_project_get_404_for_its_commands(rdev: Running) -> None:
    cmd = await _run(rdev, "shell", {"argv": ["true"]})
    other = rdev.client(
        await rdev.new_key(scopes=["commands:read", "commands:cancel"], projects=["elsewhere"])
    )
    for path in (f"/commands/{cmd['command_id']}", f"/commands/{cmd['command_id']}/events",
                 f"/commands/{cmd['command_id']}/output",
                 f"/projects/demo/events?stream_id={cmd['command_id']}"):  # fmt: skip
        resp = await other.get(path)
        assert resp.status_code == 404, path
    assert (await other.post(f"/commands/{cmd['command_id']}/cancel")).status_code == 404
