"""The Claude argv and the rule for which Claude runs amount to a shell.

The argv is parsed back with the stand-in CLI's parser (the real CLI's option grammar), so
"no client value becomes an option" is checked the way the CLI would read it."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rdev.domain import policy
from rdev.domain.argv import ClaudeSpec, claude_argv, claude_prompt_index
from rdev.domain.claude import mode_grants_shell, rule_grants_shell, shell_grants
from rdev.domain.errors import InvalidInput

FIXTURE = Path(__file__).parents[1] / "fixtures" / "claude"
_PARSE: Callable[[list[str]], dict[str, Any]] = runpy.run_path(str(FIXTURE), run_name="x")["parse"]
SID = "0f8e2b1c-3d4a-4b5c-8d6e-7f8091a2b3c4"
HOSTILE = [
    "--version",
    "- fix the failing test",
    "-c",
    "-p",
    "-r",
    "--",
    "-- -c",
    "--dangerously-skip-permissions",
    "--permission-mode=bypassPermissions",
    "--model=opus",
    "=",
    "a=b",
    "x\n--continue",
    "\n-c\n",
    "-",
    "--resume",
    "auth",
    "update",
]


def parse(argv: tuple[str, ...]) -> dict[str, Any]:
    """What the CLI would understand from argv (argv[0] is the program)."""
    return _PARSE(list(argv[1:]))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_prompt_and_system_prompt_stay_values(text: str) -> None:
    spec = ClaudeSpec(prompt=text, append_system_prompt=text, model="sonnet")
    argv = claude_argv("/bin/claude", spec)
    parsed = parse(argv)
    assert parsed["prompt"] == text
    assert parsed["append_system_prompt"] == text
    assert parsed["model"] == "sonnet"
    assert not parsed["continue"] and not parsed["dangerously_skip_permissions"]
    assert not parsed["version"] and parsed["resume"] is None
    assert argv[-2:] == ("--", text)


@settings(max_examples=300, deadline=None)
@given(
    prompt=st.text(min_size=1).filter(lambda s: s.strip() and "\x00" not in s),
    system=st.text(min_size=1).filter(lambda s: s.strip() and "\x00" not in s),
)
@example(prompt="--", system="--")
@example(prompt="-c", system="-c")
def test_any_prompt_round_trips_through_the_cli_grammar(prompt: str, system: str) -> None:
    argv = claude_argv("claude", ClaudeSpec(prompt=prompt, append_system_prompt=system))
    parsed = parse(argv)
    assert (parsed["prompt"], parsed["append_system_prompt"]) == (prompt, system)
    assert claude_prompt_index(argv) == len(argv) - 1


def test_every_option_is_joined_to_its_value() -> None:
    spec = ClaudeSpec(
        prompt="-c",
        model="claude-sonnet-4-5[1m]",
        max_turns=3,
        permission_mode="plan",
        resume_session=SID.upper(),
        allowed_tools=["Bash(git status:*)", "Read", "Edit(src/**)"],
        append_system_prompt="--verbose",
    )
    argv = claude_argv("claude", spec)
    assert argv == (
        "claude",
        "--print",
        "--output-format=stream-json",
        "--verbose",
        "--setting-sources=user",
        "--strict-mcp-config",
        "--model=claude-sonnet-4-5[1m]",
        "--max-turns=3",
        "--permission-mode=plan",
        f"--resume={SID}",
        "--allowedTools=Bash(git status:*),Read,Edit(src/**)",
        "--append-system-prompt=--verbose",
        "--",
        "-c",
    )
    parsed = parse(argv)
    assert parsed["resume"] == SID and parsed["max_turns"] == "3"
    assert parsed["setting_sources"] == "user" and parsed["strict_mcp_config"] is True
    assert parsed["allowedTools"] == "Bash(git status:*),Read,Edit(src/**)"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "-c"),
        ("model", "--dangerously-skip-permissions"),
        ("model", "sonnet\n-c"),
        ("model", "a b"),
        ("model", "opus=x"),
        ("resume_session", "-c"),
        ("resume_session", "--continue"),
        ("resume_session", "abc-123_X"),
        ("resume_session", SID + "\n"),
        ("resume_session", " " + SID),
        ("resume_session", SID.replace("-", "")),
        ("resume_session", "{" + SID + "}"),
        ("resume_session", "../../etc"),
        ("permission_mode", "--dangerously-skip-permissions"),
        ("permission_mode", "bypassPermissions\n"),
        ("permission_mode", "yolo"),
        ("allowed_tools", ["-c"]),
        ("allowed_tools", ["--dangerously-skip-permissions"]),
        ("allowed_tools", ["Read", "Bash\n-c"]),
        ("allowed_tools", ["Read,Bash"]),
        ("allowed_tools", ["Bash(git status:*))"]),
        ("allowed_tools", ["Bash((x)"]),
        ("allowed_tools", ["Read Bash"]),
        ("allowed_tools", [""]),
        ("append_system_prompt", "a\x00b"),
        ("append_system_prompt", " \n"),
    ],
)
def test_values_outside_the_grammar_are_invalid_input_naming_the_field(
    field: str, value: Any
) -> None:
    with pytest.raises(InvalidInput) as info:
        claude_argv("claude", ClaudeSpec(prompt="hi", **{field: value}))
    assert info.value.details["field"] == field


def test_session_ids_are_uuids_in_lower_case() -> None:
    assert policy.check_session_id(SID) == SID
    assert policy.check_session_id(SID.upper()) == SID


def test_every_permission_mode_the_cli_lists_is_accepted() -> None:
    modes = ["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]
    assert sorted(policy.PERMISSION_MODES) == modes
    for mode in modes:
        assert (
            parse(claude_argv("claude", ClaudeSpec(prompt="x", permission_mode=mode)))[
                "permission_mode"
            ]
            == mode
        )


def test_the_stand_in_parses_as_the_cli_does() -> None:
    """The parser the tests trust: the finding's argv really is misread by it."""
    assert parse(("claude", "-p", "--version"))["version"] is True
    assert parse(("claude", "--resume", "-c"))["continue"] is True
    assert parse(("claude", "--model", "-c"))["model"] == "-c"  # a required value is taken
    with pytest.raises(Exception, match="unknown option"):
        parse(("claude", "-p", "- fix the failing test"))


@pytest.mark.parametrize(
    ("argv", "index"),
    [(("claude",), None), (("claude", "--print"), None), (("claude", "--"), None),
     (("claude", "--", "--"), 2), (("--", "x", "--", "p"), 3)],
)  # fmt: skip
def test_prompt_index_is_after_the_first_separator(
    argv: tuple[str, ...], index: int | None
) -> None:
    assert claude_prompt_index(argv) == index


# which runs amount to a shell


@pytest.mark.parametrize(
    "rule",
    [
        "Bash", "bash", "BASH", "Bash()", "Bash( )", "Bash(*)", "Bash( * )", "Bash(:*)",
        "Bash(*:*)", "Bash(**)", "Bash(* status)", "Bash(*git)", "Bash(g*)", "Bash(g* status)",
        "Bash(FOO=1 git:*)", "Bash(-c)", "Bash(--:*)", "*", "**", "B*", "*h", "Ba*h", "*(*)",
        "*(:*)", "PowerShell", "PowerShell(*)", "Power*", "Bash(:)", "Bash(=)",
    ],
)  # fmt: skip
def test_rules_that_let_a_shell_tool_run_any_program_grant_shell(rule: str) -> None:
    assert rule_grants_shell(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "Bash(git status:*)", "Bash(git:*)", "Bash(git *)", "Bash(npm run test:*)",
        "Bash(./scripts/check.sh)", "Bash(/usr/bin/make build)", "Bash(pytest -q)",
        "Read", "Edit", "Write", "Edit(src/**)", "Read(*)", "Glob", "Grep", "WebFetch",
        "WebFetch(domain:example.com)", "mcp__github__create_issue", "mcp__*", "BashOutput",
        "KillShell", "Task", "R*", "PowerShell(Get-ChildItem)", "NotebookEdit", "*(git status)",
    ],
)  # fmt: skip
def test_rules_that_name_their_program_or_another_tool_do_not(rule: str) -> None:
    policy.check_tools([rule])  # every case is a valid rule, so the route would reach the check
    assert not rule_grants_shell(rule)


@pytest.mark.parametrize(
    ("mode", "shell"),
    [
        (None, False), ("default", False), ("acceptEdits", False), ("plan", False),
        ("dontAsk", False), ("bypassPermissions", True), ("auto", True), ("unknown", True),
    ],
)  # fmt: skip
def test_only_modes_that_keep_the_rules_as_the_boundary_are_not_a_shell(
    mode: str | None, shell: bool
) -> None:
    assert mode_grants_shell(mode) is shell


def test_shell_grants_name_the_fields_and_values() -> None:
    assert shell_grants(None, None) == []
    assert shell_grants("plan", ["Read", "Bash(git:*)"]) == []
    grants = shell_grants("bypassPermissions", ["Read", "Bash", "Bash(git:*)", "*"])
    assert [(g.reason, g.values) for g in grants] == [
        ("permission_mode", ("bypassPermissions",)),
        ("allowed_tools", ("Bash", "*")),
    ]
    assert [g.reason for g in shell_grants("default", ["Bash(*)"])] == ["allowed_tools"]


def test_workspace_settings_and_mcp_servers_load_only_in_a_project_that_trusts_them() -> None:
    """Hooks in `.claude/settings.json` and servers in `.mcp.json` are programs, and the
    workspace can be written by git and shell keys or by Claude's edit tools."""
    spec = ClaudeSpec(prompt="hi")
    untrusted = parse(claude_argv("claude", spec))
    assert untrusted["setting_sources"] == "user" and untrusted["strict_mcp_config"] is True
    trusted = parse(claude_argv("claude", spec, workspace_config=True))
    assert trusted["setting_sources"] is None and trusted["strict_mcp_config"] is False
