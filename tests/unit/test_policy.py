"""Validation rules for what clients send: scopes, CIDRs, shell strings, git, env, paths, names."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rdev.domain import git, policy
from rdev.domain.errors import CommandRejected, InvalidInput
from rdev.domain.models import Scope

# scopes


def test_parse_scopes_accepts_every_known_scope() -> None:
    assert policy.parse_scopes([s.value for s in Scope]) == frozenset(Scope)
    assert policy.parse_scopes(["projects:read", "projects:read"]) == {Scope.PROJECTS_READ}


@pytest.mark.parametrize("bad", ["projects:write", "ADMIN", "", " admin", "keys"])
def test_unknown_scope_is_invalid_input_naming_it(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        policy.parse_scopes(["admin", bad])
    assert info.value.details["field"] == "scopes"
    assert info.value.details["unknown"] == [bad]


def test_no_scopes_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        policy.parse_scopes([])


# CIDRs and client IPs


def test_parse_cidrs_normalises() -> None:
    assert policy.parse_cidrs(["10.1.2.3/8", " 192.168.0.1 ", "2001:DB8::1/32", "::1"]) == (
        "10.0.0.0/8",
        "192.168.0.1/32",
        "2001:db8::/32",
        "::1/128",
    )


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "300.1.1.1", "example.com", "", "::1/129", "1.2.3"])
def test_invalid_cidr_is_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        policy.parse_cidrs([bad])
    assert info.value.details["field"] == "allowed_ips"


@pytest.mark.parametrize(
    ("ip", "allowed", "expected"),
    [
        ("127.0.0.1", (), True),
        (None, (), True),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("11.1.2.3", ("10.0.0.0/8",), False),
        ("127.0.0.1", ("10.0.0.0/8", "127.0.0.0/8"), True),
        ("::1", ("::1/128",), True),
        ("::1", ("2001:db8::/32",), False),
        ("2001:db8::42", ("2001:db8::/32",), True),
        ("2001:db9::42", ("2001:db8::/32",), False),
        ("::ffff:10.1.2.3", ("10.0.0.0/8",), True),
        ("::ffff:11.1.2.3", ("10.0.0.0/8",), False),
        ("::ffff:127.0.0.1", ("127.0.0.1/32",), True),
        ("10.1.2.3", ("2001:db8::/32",), False),
        ("2001:db8::1", ("10.0.0.0/8",), False),
        (None, ("10.0.0.0/8",), False),
        ("not-an-ip", ("10.0.0.0/8",), False),
        ("", ("0.0.0.0/0",), False),
    ],
)
def test_ip_allowed(ip: str | None, allowed: tuple[str, ...], expected: bool) -> None:
    assert policy.ip_allowed(ip, allowed) is expected


# shell strings


def test_split_shell_splits_like_a_shell() -> None:
    assert policy.split_shell("ls -la 'a b' \"c d\"") == ("ls", "-la", "a b", "c d")


@pytest.mark.parametrize("pattern", policy.DANGEROUS_PATTERNS)
def test_each_dangerous_pattern_is_refused_by_name(pattern: str) -> None:
    with pytest.raises(CommandRejected) as info:
        policy.split_shell(f"echo a {pattern} b")
    assert info.value.details["pattern"] == pattern
    assert repr(pattern) in info.value.message


@pytest.mark.parametrize(
    ("command", "pattern"),
    [("a && b", "&&"), ("a || b", "||"), ("a >> f", ">>"), ("echo $(id)", "$("),
     ("rm -rf /", "rm -rf"), ("dd if=/dev/zero", "dd if="), ("a; b", ";"), ("a | b", "|"),
     ("echo `id`", "`"), ("a > f", ">"), ("a < f", "<")],
)  # fmt: skip
def test_dangerous_pattern_named_exactly(command: str, pattern: str) -> None:
    with pytest.raises(CommandRejected) as info:
        policy.split_shell(command)
    assert info.value.details["pattern"] == pattern


def test_raw_shell_projects_run_the_string_under_sh() -> None:
    assert policy.split_shell("a && b", allow_raw_shell=True) == ("sh", "-c", "a && b")


@pytest.mark.parametrize("command", ["", "   ", "echo 'unterminated", "echo \x00"])
def test_unusable_shell_strings_are_invalid_input(command: str) -> None:
    with pytest.raises(InvalidInput):
        policy.split_shell(command)


def test_oversized_shell_string_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        policy.split_shell("echo " + "a" * policy.MAX_COMMAND_BYTES)
    assert info.value.details["limit"] == policy.MAX_COMMAND_BYTES


_shellish = st.text(alphabet="&|;<>$()`'\"\\ \t-rmdif=ab", max_size=24)


@given(st.one_of(st.text(max_size=80), _shellish))
@settings(max_examples=300)
@example('"&"&')  # quotes split a pattern in the string but join it in argv
@example("sh -c 'rm'' -rf /'")
@example("rm  -rf /")
@example('rm "-rf" /')
@example("dd 'if=/dev/zero'")
def test_split_shell_never_returns_a_dangerous_pattern(command: str) -> None:
    try:
        argv = policy.split_shell(command)
    except (InvalidInput, CommandRejected):
        return
    for arg in argv:
        assert policy.dangerous_pattern(arg) is None
    assert policy.dangerous_pattern(" ".join(argv)) is None


# argv


def test_check_argv_limits() -> None:
    assert policy.check_argv(["ls", ""]) == ("ls", "")
    with pytest.raises(InvalidInput):
        policy.check_argv([])
    with pytest.raises(InvalidInput):
        policy.check_argv([" "])
    with pytest.raises(InvalidInput):
        policy.check_argv(["x"] * (policy.MAX_ARGS + 1))
    with pytest.raises(InvalidInput):
        policy.check_argv(["echo", "a\x00b"])
    with pytest.raises(InvalidInput):
        policy.check_argv(["echo", "a" * (policy.MAX_ARG_BYTES + 1)])
    # the limit counts bytes, not characters
    with pytest.raises(InvalidInput):
        policy.check_argv(["echo", "é" * (policy.MAX_ARG_BYTES // 2 + 1)])


# git


@pytest.mark.parametrize(
    "sub", sorted(git.SUBCOMMANDS - {"init", "remote", "config", "mv", "stash"})
)
def test_allowed_git_subcommands(sub: str) -> None:
    assert policy.check_git_args([sub, "x"])[-1] == "x"


@pytest.mark.parametrize("sub", ["gc", "filter-branch", "-c", "--exec-path=/tmp", "STATUS", ""])
def test_other_git_subcommands_are_rejected(sub: str) -> None:
    with pytest.raises((CommandRejected, InvalidInput)):
        policy.check_git_args([sub])


def test_git_subcommand_rejection_names_it() -> None:
    with pytest.raises(CommandRejected) as info:
        policy.check_git_args(["gc", "--aggressive"])
    assert info.value.details["subcommand"] == "gc"


def test_git_needs_args() -> None:
    with pytest.raises(InvalidInput):
        policy.check_git_args([])


# env


def test_env_accepts_ordinary_names() -> None:
    assert policy.check_env({"FOO": "1", "_x9": ""}) == {"FOO": "1", "_x9": ""}


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "LD_AUDIT",
        "path",
        "RDEV_COMMAND_ID",
        "rdev_command_id",
    ],
)
def test_env_may_not_override_loader_or_path(name: str) -> None:
    with pytest.raises(CommandRejected) as info:
        policy.check_env({name: "/tmp/x"})
    assert info.value.details["pattern"] == name


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B", "A\x00", "x" * 129])
def test_env_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(InvalidInput):
        policy.check_env({name: "v"})


def test_env_values_and_counts_are_limited() -> None:
    with pytest.raises(InvalidInput):
        policy.check_env({"A": "a\x00"})
    with pytest.raises(InvalidInput):
        policy.check_env({"A": "a" * (policy.MAX_ENV_VALUE_BYTES + 1)})
    with pytest.raises(InvalidInput):
        policy.check_env({f"V{i}": "" for i in range(policy.MAX_ENV_VARS + 1)})


# relative paths


@pytest.mark.parametrize(
    ("path", "normal"),
    [("src", "src"), ("a/./b", "a/b"), (".", ""), ("a/b/", "a/b"), ("a//b", "a/b")],
)
def test_relative_paths_are_normalised(path: str, normal: str) -> None:
    assert policy.check_relative_path(path) == normal


@pytest.mark.parametrize(
    "path", ["..", "../x", "a/../../x", "a/..", "/etc", "/", "a\\..\\b", "", "a\x00b", "a" * 1025]
)
def test_escaping_absolute_or_bad_paths_are_invalid_input(path: str) -> None:
    with pytest.raises(InvalidInput) as info:
        policy.check_relative_path(path, field="cwd")
    assert info.value.details["field"] == "cwd"


# names


@pytest.mark.parametrize("name", ["demo", "a", "My_proj-1.2", "x" * 64])
def test_good_names(name: str) -> None:
    assert policy.check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "_x", "a/b", "a..b", "..", "a.", "x" * 65, "a\x00", "a b", "é"]
)
def test_bad_names_are_invalid_input(name: str) -> None:
    with pytest.raises(InvalidInput):
        policy.check_name(name)


# text


def test_check_text_refuses_nul_empty_and_oversize() -> None:
    assert policy.check_text("hi", field="prompt", limit=10) == "hi"
    assert policy.check_text("", field="x", limit=10, allow_empty=True) == ""
    for bad in ("a\x00", " ", "a" * 11):
        with pytest.raises(InvalidInput) as info:
            policy.check_text(bad, field="prompt", limit=10)
        assert info.value.details["field"] == "prompt"


def test_other_client_values() -> None:
    sid = "0f8e2b1c-3d4a-4b5c-8d6e-7f8091a2b3c4"
    assert policy.check_session_id(sid) == sid
    assert policy.check_model("claude-sonnet-4[1m]") == "claude-sonnet-4[1m]"
    assert policy.check_tools(["Bash(git:*)", "Read"]) == ["Bash(git:*)", "Read"]
    assert policy.check_permission_mode("plan") == "plan"
    for call in (
        lambda: policy.check_session_id("../x"),
        lambda: policy.check_model("a b;c"),
        lambda: policy.check_tools(["a\nb"]),
        lambda: policy.check_permission_mode("yolo"),
    ):
        with pytest.raises(InvalidInput):
            call()
