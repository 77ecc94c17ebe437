"""The local backend reads project.toml through the domain parser: every field reaches the
Project, a missing file means the defaults, and a file that cannot be used fails the project
closed. The demo project that `rdev serve --demo` writes must stay valid."""

from __future__ import annotations

from pathlib import Path

from rdev.adapters.local.backend import LocalBackend
from rdev.adapters.local.demo import ensure_demo_project
from rdev.domain.models import CommandKind, ProjectStatus


async def test_demo_project_settings_parse(tmp_path: Path) -> None:
    ensure_demo_project(tmp_path)
    demo = await LocalBackend(tmp_path).get_project("demo")
    assert (demo.status, demo.status_reason) == (ProjectStatus.RUNNING, None)
    assert demo.allowed_kinds == frozenset(CommandKind) and demo.max_concurrent == 5
    assert demo.description.startswith("Demo project")


async def test_every_setting_reaches_the_project(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "plain").mkdir()
    (tmp_path / "web" / "project.toml").write_text(
        'description = "Web"\nallowed_commands = ["claude"]\nmax_concurrent_commands = 2\n'
        "allow_raw_shell = true\nallow_claude_shell = true\n"
    )
    backend = LocalBackend(tmp_path)
    web = await backend.get_project("web")
    assert (web.description, web.allowed_kinds, web.max_concurrent) == (
        "Web", {CommandKind.CLAUDE}, 2,
    )  # fmt: skip
    assert web.allow_raw_shell and web.allow_claude_shell
    plain = await backend.get_project("plain")  # no project.toml: the defaults
    assert plain.status is ProjectStatus.RUNNING and plain.allowed_kinds == frozenset(CommandKind)
    assert not plain.allow_raw_shell and not plain.allow_claude_shell


async def test_project_toml_that_is_not_a_file_fails_the_project(tmp_path: Path) -> None:
    (tmp_path / "odd" / "project.toml").mkdir(parents=True)
    odd = await LocalBackend(tmp_path).get_project("odd")
    assert odd.status is ProjectStatus.FAILED and odd.allowed_kinds == frozenset()
    assert odd.status_reason is not None
    assert odd.status_reason.startswith("invalid project.toml: cannot be read")
