"""`commands:git` is git and nothing else (issue #8, finding 1), through a real server on both
backends: the finding's requests are refused, config planted in the repository (as a shell key
could) runs nothing when a git-only key runs git, and the everyday workflow still works."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import Running, free_port, output_text, read_sse

GIT_ONLY = ["commands:git", "commands:read"]


class GitKey:
    def __init__(self, rdev: Running, key: str) -> None:
        self.rdev = rdev
        self.client = rdev.client(key)

    async def post(self, args: list[str], **extra: Any) -> Any:
        return await self.client.post("/projects/demo/git", json={"args": args, **extra})

    async def run(self, *args: str, **extra: Any) -> tuple[str, str, list[dict[str, Any]]]:
        """(final status, output, error events) of one git command."""
        resp = await self.post(list(args), **extra)
        assert resp.status_code == 201, resp.text
        events = await read_sse(self.client, resp.json()["data"]["events_url"])
        errors = [e.data for e in events if e.event == "error"]
        return events[-1].data["status"], output_text(events), errors

    async def ok(self, *args: str, **extra: Any) -> str:
        status, out, errors = await self.run(*args, **extra)
        assert status == "succeeded", (args, out, errors)
        return out


@pytest.fixture
async def git(rdev: Running) -> GitKey:
    return GitKey(rdev, await rdev.new_key(scopes=GIT_ONLY, projects=["demo"]))


def plant(workspace: Path, *args: str) -> None:
    """What a shell key could have done earlier: run git (or write .git/config) directly."""
    subprocess.run(["git", "-C", str(workspace), *args], check=True, capture_output=True)


def marks(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.rglob("MARK*"))


async def _repo(git: GitKey) -> None:
    await git.ok("init", "-q", "-b", "main")
    await git.ok("config", "user.name", "Ada")
    await git.ok("config", "user.email", "ada@example.com")


# (a) the finding's requests ----------------------------------------------------------------------

FINDING = [
    ["config", "core.fsmonitor", "sh -c 'id > ../../MARK'; false"],
    ["fetch", "--upload-pack=sh -c 'id > ../../MARK'", "origin"],
    ["grep", "--open-files-in-pager=sh -c 'id > ../../MARK'", "x"],
    ["config", "core.sshCommand", "sh -c 'id > ../../MARK'"],
    ["diff", "--output=../../MARK"],
    ["init", "../../MARK_repo"],
    ["config", "--file", "../../MARK_config", "user.name", "x"],
    ["config", "--global", "core.fsmonitor", "sh -c 'id > /tmp/MARK'"],
    ["-c", "core.fsmonitor=sh -c 'id > ../../MARK'", "status"],
]


async def test_the_findings_requests_are_refused_and_nothing_runs(
    git: GitKey, rdev: Running, tmp_path: Path
) -> None:
    await _repo(git)
    for args in FINDING:
        resp = await git.post(args)
        assert resp.status_code == 400, (args, resp.text)
        assert resp.json()["error"]["code"] == "COMMAND_REJECTED"
    await git.ok("status")
    await git.ok("diff")
    assert marks(tmp_path) == []
    assert not (rdev.workspace("demo") / "MARK_repo").exists()


# (b) config planted in the repository ---------------------------------------------------------


async def test_planted_program_config_does_not_run_for_a_git_only_key(
    git: GitKey, rdev: Running, tmp_path: Path
) -> None:
    ws = rdev.workspace("demo")
    await _repo(git)
    (ws / "a.txt").write_text("one\n")
    await git.ok("add", "a.txt")
    await git.ok("commit", "-m", "first")
    mark = tmp_path / "MARK"
    program = f"sh -c 'echo ran >> {mark}'; false"
    for key in ("core.fsmonitor", "core.pager", "pager.log", "pager.diff", "core.sshCommand",
                "core.editor", "sequence.editor", "diff.external", "core.askPass",
                "core.gitProxy", "gpg.program", "credential.helper"):  # fmt: skip
        plant(ws, "config", key, program)
    plant(ws, "config", "core.hooksPath", str(tmp_path / "hooks"))
    plant(ws, "config", "log.showSignature", "true")
    plant(ws, "config", "commit.gpgSign", "true")
    plant(ws, "remote", "add", "origin", f"ssh://127.0.0.1:{free_port()}/x.git")
    for hooks in (tmp_path / "hooks", ws / ".git" / "hooks"):
        hooks.mkdir(exist_ok=True)
        for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout", "pre-push"):
            (hooks / hook).write_text(f"#!/bin/sh\necho hook >> {mark}\n")
            (hooks / hook).chmod(0o755)
    (ws / "a.txt").write_text("two\n")
    await git.ok("status")
    assert "two" in await git.ok("diff")
    await git.ok("log", "-p")
    await git.ok("add", "a.txt")
    await git.ok("commit", "-m", "second")
    await git.ok("switch", "-c", "topic")
    status, _, errors = await git.run("fetch", "origin")
    assert status == "failed" and errors == []  # ssh could not connect: not a policy refusal
    status, _, _ = await git.run("commit", "--amend")  # the editor is ':' (none)
    assert status == "succeeded"
    assert not mark.exists(), mark.read_text()


@pytest.mark.parametrize(
    ("key", "attribute"),
    [("filter.x.clean", "filter=x"), ("diff.x.textconv", "diff=x"), ("merge.x.driver", "merge=x")],
)
async def test_planted_driver_programs_make_git_refuse_to_run(
    git: GitKey, rdev: Running, tmp_path: Path, key: str, attribute: str
) -> None:
    ws = rdev.workspace("demo")
    await _repo(git)
    mark = tmp_path / "MARK"
    plant(ws, "config", key, f"sh -c 'echo ran >> {mark}'; cat")
    (ws / ".gitattributes").write_text(f"* {attribute}\n")
    (ws / "a.txt").write_text("one\n")
    for args in (["status"], ["add", "a.txt"], ["diff"], ["log"]):
        status, _, errors = await git.run(*args)
        assert status == "failed"
        assert errors[0]["code"] == "COMMAND_REJECTED" and key in errors[0]["message"]
    assert not mark.exists()


async def test_config_planted_by_an_include_is_seen_and_refused(
    git: GitKey, rdev: Running, tmp_path: Path
) -> None:
    ws = rdev.workspace("demo")
    await _repo(git)
    extra = tmp_path / "extra.cfg"
    extra.write_text(f"[filter \"x\"]\n\tclean = sh -c 'echo ran >> {tmp_path / 'MARK'}'\n")
    plant(ws, "config", "include.path", str(extra))
    status, _, errors = await git.run("status")
    assert status == "failed" and "include.path" in errors[0]["message"]
    assert marks(tmp_path) == []


# local only: on Kubernetes the pod's file system is the boundary
@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_a_workspace_that_is_not_a_repository_never_reaches_an_enclosing_one(
    git: GitKey, rdev: Running
) -> None:
    root = rdev.workspace("demo").parent
    plant(root, "init", "-q")
    status, out, _ = await git.run("status")
    assert status == "failed" and "not a git repository" in out


# (c) the everyday workflow ------------------------------------------------------------------


async def test_everyday_workflow_works_for_a_git_only_key(git: GitKey, rdev: Running) -> None:
    ws = rdev.workspace("demo")
    await _repo(git)
    (ws / "a.txt").write_text("hello\n")
    assert "a.txt" in await git.ok("status", "--short")
    await git.ok("add", "-A")
    await git.ok("commit", "-m", "first; with $(chars) `that` | would > be shell")
    assert "first; with $(chars)" in await git.ok("log", "--oneline")
    await git.ok("branch", "feature")
    await git.ok("switch", "feature")
    (ws / "a.txt").write_text("changed\n")
    await git.ok("stash")
    assert "stash@{0}" in await git.ok("stash", "list")
    await git.ok("stash", "pop")
    await git.ok("commit", "-a", "-m", "second")
    await git.ok("tag", "-a", "v1", "-m", "release")
    assert "v1" in await git.ok("tag")
    await git.ok("switch", "main")
    await git.ok("merge", "--no-ff", "-m", "merge feature", "feature")
    assert (ws / "a.txt").read_text() == "changed\n"
    assert "Ada" in await git.ok("config", "user.name")
    await git.ok("mv", "a.txt", "b.txt")
    await git.ok("rm", "--cached", "b.txt")
    await git.ok("rev-parse", "--abbrev-ref", "HEAD")
    url = f"https://127.0.0.1:{free_port()}/repo.git"
    await git.ok("remote", "add", "origin", url)
    assert url in await git.ok("remote", "-v")
    for args in (["push", "-u", "origin", "main"], ["fetch", "origin"]):
        status, out, errors = await git.run(*args)
        assert status == "failed" and errors == []  # refused by the network, not by policy
        assert "127.0.0.1" in out
