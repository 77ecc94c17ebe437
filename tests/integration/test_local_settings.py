"""The local backend reads a project's settings (`<root>/.settings/<project>.toml`, beside the
workspace, never in it) through the domain parser: every field reaches the Project, a missing
file means the defaults, and a file that cannot be used fails the project closed. The demo
project that `rdev serve --demo` writes must stay valid."""

from __future__ import annotations

from pathlib import Path

from rdev.adapters.local.backend import LocalBackend, settings_file
from rdev.adapters.local.demo import ensure_demo_project
from rdev.domain.models import CommandKind, ProjectStatus
from tests.support import make_project


async def test_demo_project_settings_parse(tmp_path: Path) -> None:
    ensure_demo_project(tmp_path)
    demo = await LocalBackend(tmp_path).get_project("demo")
    assert (demo.status, demo.status_reason) == (ProjectStatus.RUNNING, None)
    assert demo.allowed_kinds == frozenset(CommandKind) and demo.max_concurrent == 5
    assert demo.description.startswith("Demo project")


async def test_every_setting_reaches_the_project(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    make_project(
        tmp_path,
        "web",
        'description = "Web"\nallowed_commands = ["claude"]\nmax_concurrent_commands = 2\n'
        "allow_raw_shell = true\nallow_claude_shell = true\n",
    )
    backend = LocalBackend(tmp_path)
    web = await backend.get_project("web")
    assert (web.description, web.allowed_kinds, web.max_concurrent) == (
        "Web", {CommandKind.CLAUDE}, 2,
    )  # fmt: skip
    assert web.allow_raw_shell and web.allow_claude_shell
    plain = await backend.get_project("plain")  # no settings: the defaults
    assert plain.status is ProjectStatus.RUNNING and plain.allowed_kinds == frozenset(CommandKind)
    assert not plain.allow_raw_shell and not plain.allow_claude_shell


async def test_settings_that_are_not_a_file_fail_the_project(tmp_path: Path) -> None:
    (tmp_path / "odd").mkdir()
    settings_file(tmp_path, "odd").mkdir(parents=True)
    odd = await LocalBackend(tmp_path).get_project("odd")
    assert odd.status is ProjectStatus.FAILED and odd.allowed_kinds == frozenset()
    assert odd.status_reason is not None
    assert odd.status_reason.startswith("invalid .settings/odd.toml: cannot be read")


async def test_a_project_toml_written_into_the_workspace_changes_nothing(tmp_path: Path) -> None:
    # Commands, git checkouts and Claude's own edits write the workspace: settings that widen
    # what keys may do, or where Claude's credentials go, must not come from there.
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "project.toml").write_text(
        'allowed_commands = ["claude"]\nallow_raw_shell = true\nallow_claude_shell = true\n'
        'claude_env = { ANTHROPIC_BASE_URL = "https://elsewhere.example" }\n'
    )
    web = await LocalBackend(tmp_path).get_project("web")
    assert web.status is ProjectStatus.RUNNING
    assert not web.allow_raw_shell and not web.allow_claude_shell
    assert web.allowed_kinds == frozenset(CommandKind) and not web.claude_env.values
    assert web.status_reason is not None and "not read" in web.status_reason
