"""The policy for variables an operator hands to the Claude CLI (domain/claude_env.py), its use in
project settings and RDEV_CLAUDE_ENV, and how a claude command's environment is put together."""

from __future__ import annotations

import pytest

from rdev.config import ConfigError, load_settings
from rdev.domain.claude_env import (
    MAX_NAMES,
    MAX_VALUE_BYTES,
    ClaudeEnv,
    command_env,
    name_problem,
    parse_names,
)
from rdev.domain.errors import InvalidSettings
from rdev.domain.models import Project, ProjectStatus
from rdev.domain.settings import parse_settings

ALLOWED = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "HTTPS_PROXY",
    "NO_PROXY",
    "NODE_EXTRA_CA_CERTS",
    "DISABLE_AUTOUPDATER",
    "IS_SANDBOX",
    "_PRIVATE",
    "X1",
    "A" * 128,
]

REFUSED = [
    # rdev's own
    "PATH", "HOME", "USER", "LANG", "TZ", "TERM", "TMPDIR", "CLAUDE_CONFIG_DIR",
    "CLAUDE_CODE_MAX_RETRIES", "RDEV_COMMAND_ID", "RDEV_CLAUDE_BIN", "RDEV_DATABASE_URL",
    "LC_ALL", "LC_CTYPE",
    # loaders and shells
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_", "DYLD_INSERT_LIBRARIES", "BASH_ENV",
    "ENV", "IFS", "PS4", "SHELLOPTS", "BASHOPTS", "CDPATH", "PROMPT_COMMAND", "SHELL",
    "GLOBIGNORE", "BASH_FUNC_ls%%",
    # interpreters and git
    "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PERL5OPT",
    "PERL5LIB", "PERLLIB", "RUBYOPT", "RUBYLIB", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT",
    "GIT_DIR",
    # identity
    "PWD", "OLDPWD", "SHLVL", "LOGNAME", "HOSTNAME",
    # not a name of the allowed shape
    "", "path", "Anthropic_Api_Key", "1ABC", "A-B", "A B", "A=B", "A\nB", "A\x00B", "É",
    "A" * 129, " ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY\n",
]  # fmt: skip


@pytest.mark.parametrize("name", ALLOWED)
def test_names_that_configure_claude_are_allowed(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", REFUSED)
def test_names_that_would_subvert_the_runtime_are_refused(name: str) -> None:
    assert name_problem(name) is not None


def test_rdev_claude_env_is_a_checked_comma_separated_list() -> None:
    assert parse_names("") == ()
    assert parse_names(" ANTHROPIC_API_KEY , CLAUDE_CODE_USE_BEDROCK,,ANTHROPIC_API_KEY") == (
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_USE_BEDROCK",
    )
    with pytest.raises(ValueError, match=r"LD_PRELOAD.*'path'"):
        parse_names("ANTHROPIC_API_KEY,LD_PRELOAD,path")
    with pytest.raises(ValueError, match=f"at most {MAX_NAMES}"):
        parse_names(",".join(f"V{i}" for i in range(MAX_NAMES + 1)))


@pytest.mark.parametrize("spec", ["PATH", "ANTHROPIC_API_KEY,HOME", "lower", "RDEV_X"])
def test_a_refused_name_in_rdev_claude_env_stops_start_up(spec: str) -> None:
    with pytest.raises(ConfigError, match="RDEV_CLAUDE_ENV"):
        load_settings(claude_env=spec)


def test_passthrough_takes_the_named_variables_that_exist() -> None:
    environ = {"ANTHROPIC_API_KEY": "sk-secret", "OTHER": "x"}
    env = ClaudeEnv.passthrough(["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"], environ)
    assert env.values == {"ANTHROPIC_API_KEY": "sk-secret"}


def test_the_repr_shows_names_and_never_values() -> None:
    env = ClaudeEnv({"ANTHROPIC_API_KEY": "sk-secret-value"})
    project = Project("p", ProjectStatus.RUNNING, claude_env=env)
    for shown in (repr(env), str(env), repr(project)):
        assert "sk-secret-value" not in shown
    assert "ANTHROPIC_API_KEY" in repr(env)


def test_the_command_env_layers_project_over_passthrough_and_rdev_sets_the_retries() -> None:
    env = command_env(
        ClaudeEnv({"ANTHROPIC_API_KEY": "from-rdev", "ANTHROPIC_BASE_URL": "http://a"}),
        ClaudeEnv({"ANTHROPIC_API_KEY": "from-project"}),
        {},
        max_retries=2,
    )
    assert env == {
        "ANTHROPIC_API_KEY": "from-project",
        "ANTHROPIC_BASE_URL": "http://a",
        "CLAUDE_CODE_MAX_RETRIES": "2",
    }


def test_project_settings_take_claude_env_values() -> None:
    cfg = parse_settings({"claude_env": {"ANTHROPIC_API_KEY": "sk-1", "AWS_REGION": "eu"}})
    assert cfg.claude_env.values == {"ANTHROPIC_API_KEY": "sk-1", "AWS_REGION": "eu"}
    assert parse_settings({}).claude_env.values == {}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["ANTHROPIC_API_KEY"], "must be a mapping"),
        ("ANTHROPIC_API_KEY=x", "must be a mapping"),
        ({"PATH": "/evil"}, "PATH is set by rdev"),
        ({"LD_PRELOAD": "/x.so"}, "LD_PRELOAD"),
        ({"lower": "x"}, "'lower' is not a variable name"),
        ({"ANTHROPIC_API_KEY": 5}, "value of ANTHROPIC_API_KEY must be a string"),
        ({"ANTHROPIC_API_KEY": True}, "must be a string"),
        ({"ANTHROPIC_API_KEY": "a\x00b"}, "without NUL"),
        ({"ANTHROPIC_API_KEY": "x" * (MAX_VALUE_BYTES + 1)}, f"at most {MAX_VALUE_BYTES}"),
        ({f"V{i}": "x" for i in range(MAX_NAMES + 1)}, f"at most {MAX_NAMES} variables"),
    ],
)
def test_bad_claude_env_settings_are_refused_without_showing_values(
    value: object, problem: str
) -> None:
    with pytest.raises(InvalidSettings) as caught:
        parse_settings({"claude_env": value})
    assert problem in caught.value.message
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, str) and len(item) > 3:
                assert item not in caught.value.message


def test_a_problem_never_echoes_a_secret_value() -> None:
    with pytest.raises(InvalidSettings) as caught:
        parse_settings({"claude_env": {"ANTHROPIC_API_KEY": "sk-secret\x00", "HOME": "sk-too"}})
    assert "sk-secret" not in caught.value.message
    assert "sk-too" not in caught.value.message
