"""A missing Claude CLI is said at once: a claude submission is 503 CLAUDE_UNAVAILABLE with how
to install it (no command is made), and /ready reports the CLI without failing because of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import Launch
from tests.support import wait_status


async def test_a_claude_submission_without_the_cli_is_refused_at_once(
    launch: Launch, backend: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "nowhere" / "claude")
    async with launch({"p": {}}, claude_bin=missing) as rdev:
        resp = await rdev.admin.post("/projects/p/claude", json={"prompt": "hi"})
        assert resp.status_code == 503, resp.text
        error = resp.json()["error"]
        assert error["code"] == "CLAUDE_UNAVAILABLE"
        assert missing in error["message"] and "install" in error["message"]
        assert "docs/claude.md" in error["message"]
        listed = await rdev.admin.get("/projects/p/commands")
        assert listed.json()["data"] == []  # nothing was queued
        shell = await rdev.admin.post("/projects/p/shell", json={"argv": ["true"]})
        assert shell.status_code == 201  # the rest of the service works
        await wait_status(rdev.admin, shell.json()["data"]["command_id"], "succeeded")
        ready = await rdev.admin.get("/ready")
        assert ready.status_code == 200, ready.text
        claude = ready.json()["data"]["claude"]
        assert claude["binary"] == missing
        if backend == "local":
            assert claude["found"] is False and "not found" in claude["error"]
        else:
            assert claude["projects"]["p"]["found"] is False


async def test_ready_reports_the_cli_and_its_version(launch: Launch, backend: str) -> None:
    async with launch({"p": {}}) as rdev:
        resp = await rdev.admin.post("/projects/p/claude", json={"prompt": "hi"})
        assert resp.status_code == 201, resp.text
        claude = (await rdev.admin.get("/ready")).json()["data"]["claude"]
        found = claude if backend == "local" else claude["projects"]["p"]
        assert found["found"] is True
        assert found["version"]  # what `claude --version` printed


@pytest.mark.parametrize("backend", ["kubernetes"], indirect=True)
async def test_on_kubernetes_the_cli_is_checked_per_project(launch: Launch) -> None:
    """`bin/claude` relative to the workspace: there in project p's pod, not in q's."""
    async with launch({"p": {}, "q": {}}, claude_bin="bin/claude") as rdev:
        fixture = Path(__file__).parents[1] / "fixtures" / "claude"
        (rdev.workspace("p") / "bin").mkdir()
        os.symlink(fixture, rdev.workspace("p") / "bin" / "claude")
        ok = await rdev.admin.post("/projects/p/claude", json={"prompt": "hi"})
        assert ok.status_code == 201, ok.text
        refused = await rdev.admin.post("/projects/q/claude", json={"prompt": "hi"})
        assert refused.status_code == 503, refused.text
        assert "in project q" in refused.json()["error"]["message"]
        claude = (await rdev.admin.get("/ready")).json()["data"]["claude"]
        assert claude["projects"]["p"]["found"] is True
        assert claude["projects"]["q"]["found"] is False
