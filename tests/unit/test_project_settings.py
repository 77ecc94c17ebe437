"""The project settings parser (domain.settings): an allow-list of keys, each with one exact type
and range; anything else is an error naming every problem, never a default. And the rule for
whether a project takes a command."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rdev.domain import settings
from rdev.domain.errors import Forbidden, InvalidSettings, ProjectUnavailable
from rdev.domain.models import CommandKind, Project, ProjectStatus
from rdev.domain.settings import ProjectSettings, parse_settings

KINDS = {"claude", "shell", "git"}
BOOL_KEYS = ("allow_raw_shell", "allow_claude_shell")


def problems_of(doc: object) -> tuple[str, ...]:
    with pytest.raises(InvalidSettings) as info:
        parse_settings(doc)
    assert info.value.details["problems"] == list(info.value.problems)
    return info.value.problems


# valid settings


def test_no_settings_are_the_defaults() -> None:
    assert parse_settings({}) == ProjectSettings()
    assert ProjectSettings().allowed_kinds == frozenset(CommandKind)
    assert not ProjectSettings().allow_raw_shell and not ProjectSettings().allow_claude_shell
    assert ProjectSettings().max_concurrent is None


def test_every_key_with_a_valid_value() -> None:
    parsed = parse_settings(
        {
            "description": "Go API",
            "allowed_commands": ["git", "shell", "git"],
            "max_concurrent_commands": 3,
            "allow_raw_shell": True,
            "allow_claude_shell": False,
        }
    )
    assert parsed == ProjectSettings(
        description="Go API",
        allowed_kinds=frozenset({CommandKind.GIT, CommandKind.SHELL}),
        max_concurrent=3,
        allow_raw_shell=True,
        allow_claude_shell=False,
    )


@pytest.mark.parametrize("limit", [1, 2, 999, settings.MAX_CONCURRENT_LIMIT])
def test_limits_in_range_are_kept(limit: int) -> None:
    assert parse_settings({"max_concurrent_commands": limit}).max_concurrent == limit


def test_an_empty_kind_list_allows_nothing() -> None:
    assert parse_settings({"allowed_commands": []}).allowed_kinds == frozenset()


@pytest.mark.parametrize("text", ["", "x" * settings.MAX_DESCRIPTION_CHARS, "café ☕\n\ttabs"])
def test_descriptions_within_the_limit_are_kept(text: str) -> None:
    assert parse_settings({"description": text}).description == text


# invalid values: each is an error naming the key, never a default


NOT_BOOLS: list[object] = [
    "false", "true", "False", "True", "yes", "no", "on", "off", "0", "1", "", " true",
    0, 1, 2, 0.0, 1.0, None, [], [True], {}, {"value": True},
]  # fmt: skip


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", NOT_BOOLS)
def test_booleans_must_be_booleans(key: str, value: object) -> None:
    (problem,) = problems_of({key: value})
    assert problem.startswith(f"{key} must be true or false"), problem


@pytest.mark.parametrize(
    "value",
    [0, -1, -100, settings.MAX_CONCURRENT_LIMIT + 1, 10**12, True, False, 2.5, 1.0, "5", "",
     None, [5], {"n": 5}, float("nan"), float("inf")],
)  # fmt: skip
def test_limit_must_be_a_whole_number_in_range(value: object) -> None:
    (problem,) = problems_of({"max_concurrent_commands": value})
    assert problem.startswith("max_concurrent_commands must be"), problem


@pytest.mark.parametrize(
    "value",
    ["shell", "claude,shell", None, True, 3, {"shell": True}, ("shell",), {"shell"},
     ["Shell"], ["SHELL"], ["shell "], [" git"], ["bash"], ["sh"], ["all"], ["*"], [""],
     [None], [1], [True], [["shell"]], [{"kind": "shell"}], ["shell", "docker"]],
)  # fmt: skip
def test_allowed_commands_must_be_a_list_of_known_kinds(value: object) -> None:
    (problem,) = problems_of({"allowed_commands": value})
    assert problem.startswith("allowed_commands "), problem


def test_unknown_kinds_are_named() -> None:
    (problem,) = problems_of({"allowed_commands": ["shell", "docker", "kubectl"]})
    assert "'docker'" in problem and "'kubectl'" in problem and "'shell'" not in problem


@pytest.mark.parametrize(
    "value",
    [None, 3, True, ["a"], {"a": 1}, "x" * (settings.MAX_DESCRIPTION_CHARS + 1), "a\x00b",
     "lone \ud800 surrogate"],
)  # fmt: skip
def test_description_must_be_bounded_valid_text(value: object) -> None:
    (problem,) = problems_of({"description": value})
    assert problem.startswith("description must"), problem


@pytest.mark.parametrize(
    "key",
    ["alow_raw_shell", "allow_raw_shel", "allow-raw-shell", "Allow_Raw_Shell", "allowRawShell",
     "allow_shell", "raw_shell", "allowed_command", "allowed_kinds", "max_concurrent",
     "concurrency", "descripton", "workspace", "container", "", " description", 1, None, True],
)  # fmt: skip
def test_unknown_keys_are_errors_even_with_harmless_values(key: object) -> None:
    (problem,) = problems_of({key: False})
    assert problem.startswith(f"unknown key {key!r}"), problem


def test_a_typo_gets_a_suggestion() -> None:
    (problem,) = problems_of({"alow_raw_shell": True})
    assert "did you mean 'allow_raw_shell'?" in problem


@pytest.mark.parametrize("doc", [None, [], ["allow_raw_shell"], "allow_raw_shell = true", 3, True])
def test_a_document_that_is_not_a_mapping_is_an_error(doc: object) -> None:
    (problem,) = problems_of(doc)
    assert problem.startswith("settings must be a mapping"), problem


def test_every_problem_is_listed_once_per_key() -> None:
    problems = problems_of(
        {
            "description": "fine",
            "alow_raw_shell": True,
            "allow_raw_shell": "false",
            "allowed_commands": ["shell", "bogus"],
            "max_concurrent_commands": 0,
        }
    )
    starts = ["unknown key 'alow_raw_shell'", "allow_raw_shell ", "allowed_commands ",
              "max_concurrent_commands "]  # fmt: skip
    assert len(problems) == len(starts)
    for problem, start in zip(problems, starts, strict=True):
        assert problem.startswith(start), problem


def test_long_values_are_shortened_in_messages() -> None:
    (problem,) = problems_of({"allow_raw_shell": "x" * 10_000})
    assert len(problem) < 200


def test_failure_reason_names_the_source_and_is_bounded() -> None:
    error = InvalidSettings([f"unknown key 'k{i}'" for i in range(1000)])
    reason = settings.failure_reason("project.toml", error)
    assert reason.startswith("invalid project.toml: unknown key 'k0'")
    assert len(reason) <= settings.MAX_REASON_CHARS


# the property: any mapping either is an error or parses to exactly what it says


KEYS = st.sampled_from([*settings.FIELDS, "alow_raw_shell", "workspace", "Allow_Raw_Shell", ""])
SCALARS = (
    st.none() | st.booleans() | st.integers(-5, 2000) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from([*KINDS, "Shell", "bash", "true", "false"])
)  # fmt: skip
VALUES = (
    SCALARS | st.lists(SCALARS, max_size=4) | st.lists(st.lists(SCALARS, max_size=2), max_size=2)
)


def _valid(key: str, value: Any) -> bool:
    """The rules, stated independently of the parser."""
    if key in BOOL_KEYS:
        return type(value) is bool
    if key == "max_concurrent_commands":
        return type(value) is int and 1 <= value <= settings.MAX_CONCURRENT_LIMIT
    if key == "allowed_commands":
        return type(value) is list and all(type(v) is str and v in KINDS for v in value)
    if key == "daily_budget_usd":
        return type(value) in (int, float) and 0 < value <= 1_000_000
    if key == "description":
        limit = settings.MAX_DESCRIPTION_CHARS
        return type(value) is str and len(value) <= limit and "\x00" not in value
    return False


@given(st.dictionaries(KEYS, VALUES, max_size=6))
@example({"allow_raw_shell": "false"})
@example({"allow_raw_shell": 1})
@example({"max_concurrent_commands": True})
@example({"allowed_commands": ["shell", "Shell"]})
@example({"allow_raw_shell": True, "allowed_commands": ["git"], "max_concurrent_commands": 5})
def test_any_mapping_is_an_error_or_exactly_what_it_says(doc: dict[str, Any]) -> None:
    invalid = [key for key, value in doc.items() if not _valid(key, value)]
    if invalid:
        problems = problems_of(doc)
        assert len(problems) == len(invalid)
        for key, problem in zip(invalid, problems, strict=True):
            assert repr(key) in problem or problem.startswith(key), (key, problem)
        return
    parsed = parse_settings(doc)
    assert parsed.allow_raw_shell is (doc.get("allow_raw_shell") is True)
    assert parsed.allow_claude_shell is (doc.get("allow_claude_shell") is True)
    kinds = doc.get("allowed_commands", sorted(KINDS))
    assert parsed.allowed_kinds == {CommandKind(k) for k in kinds}
    assert parsed.max_concurrent == doc.get("max_concurrent_commands")
    assert parsed.description == doc.get("description", "")
    assert parsed.daily_budget_usd == doc.get("daily_budget_usd")


@given(st.sampled_from(BOOL_KEYS), st.text() | st.integers() | st.floats() | st.none())
def test_nothing_but_a_boolean_turns_a_permission_on(key: str, value: object) -> None:
    with pytest.raises(InvalidSettings):
        parse_settings({key: value})


# whether a project takes a command


def project(status: ProjectStatus, **fields: Any) -> Project:
    return Project(id="web", status=status, **fields)


@pytest.mark.parametrize("status", [s for s in ProjectStatus if s is not ProjectStatus.RUNNING])
@pytest.mark.parametrize("kind", list(CommandKind))
def test_a_project_that_is_not_running_takes_no_command(
    status: ProjectStatus, kind: CommandKind
) -> None:
    with pytest.raises(ProjectUnavailable) as info:
        settings.check_accepts(project(status), kind)
    assert info.value.details == {"status": status.value, "reason": f"the project is {status}"}
    assert info.value.code == "PROJECT_UNAVAILABLE"


def test_the_reason_is_passed_on() -> None:
    failed = project(ProjectStatus.FAILED, status_reason="invalid project.toml: x")
    with pytest.raises(ProjectUnavailable) as info:
        settings.check_accepts(failed, CommandKind.GIT)
    assert info.value.message == "project web is failed: invalid project.toml: x"
    assert info.value.details["reason"] == "invalid project.toml: x"


def test_a_running_project_takes_only_its_allowed_kinds() -> None:
    running = project(ProjectStatus.RUNNING, allowed_kinds=frozenset({CommandKind.GIT}))
    settings.check_accepts(running, CommandKind.GIT)
    for kind in (CommandKind.SHELL, CommandKind.CLAUDE):
        with pytest.raises(Forbidden):
            settings.check_accepts(running, kind)
