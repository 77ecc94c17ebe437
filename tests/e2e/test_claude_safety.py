"""Claude cannot be steered into a shell or into another project (issue #8, finding 6), through
the real server on both backends, with the stand-in CLI (tests/fixtures/claude), which parses
its argv with the real CLI's option grammar and reports what it understood."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Launch
from tests.support import Running, read_sse, wait_status

HOSTILE = [
    "--version",
    "- fix the failing test",
    "-c",
    "--continue",
    "-p",
    "--",
    "-- --dangerously-skip-permissions",
    "--dangerously-skip-permissions",
    "--permission-mode=bypassPermissions",
    "--resume=0f8e2b1c-3d4a-4b5c-8d6e-7f8091a2b3c4",
    "=",
    "a=b --model=x",
    "line one\n--continue\n-c",
    "-",
    "update",
]


async def _submit(client: Any, project: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(f"/projects/{project}/claude", json=body)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def _init(rdev: Running, cmd: dict[str, Any]) -> dict[str, Any]:
    """The stand-in's first message: its argv, what it parsed, its CLAUDE_CONFIG_DIR."""
    events = await read_sse(rdev.admin, cmd["events_url"], until="message")
    message: dict[str, Any] = events[-1].data
    assert message["type"] == "system" and message["subtype"] == "init", events
    return message


def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == code
    return error


async def test_hostile_values_reach_the_cli_as_values_never_as_options(rdev: Running) -> None:
    tools = ["Bash(git status:*)", "Read", "Edit(src/**)"]
    for text in HOSTILE:
        body = {"prompt": text, "append_system_prompt": text, "model": "sonnet-4.5[1m]",
                "allowed_tools": tools, "permission_mode": "plan", "max_turns": 2}  # fmt: skip
        cmd = await _submit(rdev.admin, "demo", body)
        parsed = (await _init(rdev, cmd))["parsed"]
        assert parsed["prompt"] == text
        assert parsed["append_system_prompt"] == text
        assert parsed["model"] == "sonnet-4.5[1m]"
        assert parsed["allowedTools"] == ",".join(tools)
        assert parsed["permission_mode"] == "plan"
        assert parsed["continue"] is False and parsed["version"] is False
        assert parsed["dangerously_skip_permissions"] is False
        assert parsed["resume"] is None
        done = await wait_status(rdev.admin, cmd["command_id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done


@pytest.mark.parametrize(
    "body",
    [
        {"model": "-c"},
        {"model": "--dangerously-skip-permissions"},
        {"model": "sonnet\n--continue"},
        {"resume_session": "-c"},
        {"resume_session": "--continue"},
        {"resume_session": "not-a-uuid"},
        {"allowed_tools": ["-c"]},
        {"allowed_tools": ["--dangerously-skip-permissions"]},
        {"allowed_tools": ["Read", "Bash\n--continue"]},
        {"permission_mode": "--dangerously-skip-permissions"},
    ],
)
async def test_values_that_look_like_options_and_fit_no_grammar_are_422(
    rdev: Running, body: dict[str, Any]
) -> None:
    resp = await rdev.admin.post("/projects/demo/claude", json={"prompt": "hi", **body})
    error = _error(resp, 422, "VALIDATION_ERROR")
    assert error["details"]["field"].split(".")[0] == next(iter(body))


SHELL_LIKE = [
    ({"permission_mode": "bypassPermissions"}, "permission_mode"),
    ({"permission_mode": "auto"}, "permission_mode"),
    ({"allowed_tools": ["Read", "Bash"]}, "allowed_tools"),
    ({"allowed_tools": ["Bash(*)"]}, "allowed_tools"),
    ({"allowed_tools": ["Bash(:*)"]}, "allowed_tools"),
    ({"allowed_tools": ["Bash( * )"]}, "allowed_tools"),
    ({"allowed_tools": ["*"]}, "allowed_tools"),
    ({"allowed_tools": ["B*"]}, "allowed_tools"),
    ({"allowed_tools": ["bash"]}, "allowed_tools"),
    ({"allowed_tools": ["Bash(* status)"]}, "allowed_tools"),
]
GUARDED = [
    {"permission_mode": "plan"},
    {"permission_mode": "acceptEdits", "allowed_tools": ["Bash(git status:*)", "Edit"]},
    {"permission_mode": "dontAsk", "allowed_tools": ["Bash(npm run test:*)"]},
    {"allowed_tools": ["Read", "Grep", "mcp__github__create_issue", "Bash(git *)"]},
]


async def test_runs_that_amount_to_a_shell_need_shell_rights(rdev: Running) -> None:
    claude_only = rdev.client(await rdev.new_key(scopes=["commands:claude"]))
    with_shell = rdev.client(await rdev.new_key(scopes=["commands:claude", "commands:shell"]))
    for extra, reason in SHELL_LIKE:
        body = {"prompt": "hi", **extra}
        error = _error(await claude_only.post("/projects/demo/claude", json=body), 403, "FORBIDDEN")
        assert error["details"]["reason"] == reason, (extra, error)
        assert (await with_shell.post("/projects/demo/claude", json=body)).status_code == 201
        assert (await rdev.admin.post("/projects/demo/claude", json=body)).status_code == 201
    for extra in GUARDED:
        resp = await claude_only.post("/projects/demo/claude", json={"prompt": "hi", **extra})
        assert resp.status_code == 201, (extra, resp.text)


async def test_allow_claude_shell_is_per_project_and_shell_rights_need_a_shell_project(
    launch: Launch,
) -> None:
    projects = {
        "open": {"allow_claude_shell": True},
        "noshell": {"allowed_commands": ["claude", "git"]},
        "plain": {"description": "defaults"},
    }
    async with launch(projects) as rdev:
        claude_only = rdev.client(await rdev.new_key(scopes=["commands:claude"]))
        body = {"prompt": "hi", "permission_mode": "bypassPermissions", "allowed_tools": ["*"]}
        assert (await claude_only.post("/projects/open/claude", json=body)).status_code == 201
        error = _error(
            await claude_only.post("/projects/plain/claude", json=body), 403, "FORBIDDEN"
        )
        assert error["details"] == {"reason": "permission_mode", "values": ["bypassPermissions"]}
        # a project that refuses shell commands refuses a shell through Claude, even to admin
        resp = await rdev.admin.post("/projects/noshell/claude", json=body)
        assert _error(resp, 403, "FORBIDDEN")["details"]["reason"] == "permission_mode"
        guarded = {"prompt": "hi", "allowed_tools": ["Bash(git status:*)"]}
        assert (await rdev.admin.post("/projects/noshell/claude", json=guarded)).status_code == 201


async def test_resume_needs_a_session_recorded_in_the_same_project(launch: Launch) -> None:
    async with launch({"p": {}, "q": {}}) as rdev:
        first = await _submit(rdev.admin, "p", {"prompt": "hello"})
        done = await wait_status(rdev.admin, first["command_id"], "succeeded")
        session = done["session_id"]
        only_q = rdev.client(await rdev.new_key(scopes=["commands:claude"], projects=["q"]))
        only_p = rdev.client(await rdev.new_key(scopes=["commands:claude"], projects=["p"]))
        for client, project, sid in [
            (only_q, "q", session),
            (only_q, "q", session.upper()),
            (rdev.admin, "q", session),
            (only_p, "p", str(uuid.uuid4())),
        ]:
            body = {"prompt": "go on", "resume_session": sid}
            resp = await client.post(f"/projects/{project}/claude", json=body)
            assert _error(resp, 404, "NOT_FOUND")["details"] == {"field": "resume_session"}
        again = await _submit(only_p, "p", {"prompt": "go on", "resume_session": session.upper()})
        init = await _init(rdev, again)
        assert init["session_id"] == session
        assert init["argv"][-3:] == [f"--resume={session}", "--", "go on"]


async def test_a_cancelled_run_can_be_resumed_from_its_init_session(rdev: Running) -> None:
    cmd = await _submit(rdev.admin, "demo", {"prompt": "SLOW work"})
    session = (await _init(rdev, cmd))["session_id"]
    resp = await rdev.admin.post(f"/commands/{cmd['command_id']}/cancel")
    assert resp.status_code == 200, resp.text
    done = await wait_status(rdev.admin, cmd["command_id"], "cancelled")
    assert done["session_id"] == session
    again = await _submit(rdev.admin, "demo", {"prompt": "go on", "resume_session": session})
    assert (await _init(rdev, again))["session_id"] == session


async def test_each_project_keeps_its_own_claude_state_outside_its_workspace(
    launch: Launch, backend: str
) -> None:
    async with launch({"p": {}, "q": {}}) as rdev:
        dirs = {}
        for project in ("p", "q"):
            cmd = await _submit(rdev.admin, project, {"prompt": "hi"})
            dirs[project] = (await _init(rdev, cmd))["config_dir"]
        if backend == "kubernetes":  # each project is its own pod: rdev sets nothing
            assert dirs == {"p": None, "q": None}
            return
        state = (rdev.app.settings.data_dir / "claude").resolve()
        assert dirs == {"p": str(state / "p"), "q": str(state / "q")}
        for project in ("p", "q"):
            workspace = rdev.workspace(project).resolve()
            assert workspace not in (state / project).parents
            assert (state / project).stat().st_mode & 0o077 == 0
        shell = await rdev.admin.post("/projects/p/shell", json={"argv": ["env"]})
        events = await read_sse(rdev.admin, shell.json()["data"]["events_url"])
        assert not [e for e in events if "CLAUDE_CONFIG_DIR" in e.data.get("line", "")]


async def test_the_audit_shortens_the_prompt_wherever_it_is(rdev: Running) -> None:
    prompt = "--continue " + "x" * 300
    await _submit(rdev.admin, "demo", {"prompt": prompt, "model": "opus"})
    entries = (await rdev.admin.get("/audit", params={"action": "command.submit"})).json()["data"]
    argv = entries[0]["details"]["argv"]
    assert argv[-2] == "--" and argv[-1].startswith("--continue xxx")
    assert len(argv[-1]) == 120
    assert "--model=opus" in argv
