"""The text policy (valid Unicode scalar values, no NUL), whole-string validators, and the rule
that every string an HTTP body carries is checked against it."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from rdev.adapters.http import schemas
from rdev.adapters.kubernetes import scripts
from rdev.domain import keys, policy, text
from rdev.domain.errors import CommandRejected, InvalidInput
from rdev.services import claude_config

LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "a\ud83d", "\ude00b", "\udfff\ud800"]
NOT_TEXT = [*LONE_SURROGATES, "\x00", "a\x00b", "\x00" * 3]
TEXT = ["", "a", "café", "😀", "\ufffd", "\U0010ffff", "\ue000", "\t\n\r", "\x7f"]


@pytest.mark.parametrize("value", NOT_TEXT)
def test_lone_surrogates_and_nul_are_not_text(value: str) -> None:
    assert text.problem(value) is not None
    assert text.decode(value.encode("utf-8", "surrogatepass")) is None


@pytest.mark.parametrize("value", TEXT)
def test_unicode_scalar_values_are_text(value: str) -> None:
    assert text.problem(value) is None
    assert text.decode(value.encode("utf-8")) == value
    assert text.scrub(value) == value


@pytest.mark.parametrize(
    "raw", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xe2\x82", b"\x80"]
)
def test_bytes_that_are_not_utf8_are_not_text(raw: bytes) -> None:
    assert text.decode(raw) is None


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")))
def test_every_string_of_scalar_values_is_text(value: str) -> None:
    assert text.problem(value) is None


@given(st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1))
def test_scrub_makes_any_surrogate_soup_encodable(value: str) -> None:
    scrubbed = text.scrub(value)
    assert text.problem(scrubbed) is None
    assert text.utf8(value) == scrubbed.encode("utf-8")


def test_scrub_replaces_each_lone_surrogate_and_keeps_the_rest() -> None:
    assert text.scrub("a\ud800b\udfffc😀") == "a\ufffdb\ufffdc😀"


@pytest.mark.parametrize("value", NOT_TEXT)
def test_policy_text_checks_refuse_what_is_not_text(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        policy.check_text(value + "x", field="prompt", limit=100)
    assert info.value.details["field"] == "prompt"
    with pytest.raises(InvalidInput):
        policy.check_argv(["echo", value])
    with pytest.raises(InvalidInput):
        policy.check_env({"A": value})
    with pytest.raises(InvalidInput):
        policy.check_relative_path("a" + value)


# whole-string validators: a trailing newline (which `$` lets through) and other tails

TAILS = ["\n", "\r\n", "\r", " ", "\t", "\x00", "\u2028", "\x0b", "\n\n"]


@pytest.mark.parametrize("tail", TAILS)
def test_validators_match_the_whole_string(tail: str) -> None:
    checks: list[tuple[Any, str]] = [
        (policy.check_name, "demo"),
        (policy.check_session_id, "0b9c6a2e-5f1d-4c8e-9a7b-3d2e1f0a9b8c"),
        (policy.check_model, "claude-sonnet-4-5"),
        (lambda v: policy.check_tools([v]), "Bash(git log)"),
        (policy.check_permission_mode, "plan"),
        (policy.check_idempotency_key, "key-1"),
        (claude_config.check_item_name, "deploy"),
    ]
    for check, good in checks:
        assert check(good) is not None
        if tail == " " and " " in good:
            continue  # a blank is in that alphabet
        with pytest.raises(InvalidInput):
            check(good + tail)
    with pytest.raises(InvalidInput):
        policy.check_env({"HOME" + tail: "/"})
    with pytest.raises((CommandRejected, InvalidInput)):
        policy.check_git_args(["status" + tail])
    assert keys.parse_key(keys.format_key("a" * 12, "b" * 43)) is not None
    assert keys.parse_key(keys.format_key("a" * 12, "b" * 42) + tail[:1]) is None


@pytest.mark.parametrize("name", ["LD_PRELOAD\n", "ld_preload\n", "PATH\n", "LD_AUDIT\r\n"])
def test_a_forbidden_env_name_with_a_tail_is_refused(name: str) -> None:
    with pytest.raises((InvalidInput, CommandRejected)):
        policy.check_env({name: "/tmp/x.so"})


@pytest.mark.parametrize("tail", TAILS)
def test_kubernetes_script_inputs_match_the_whole_string(tail: str) -> None:
    for pattern, good in ((scripts._TOKEN, "0123abcd"), (scripts._ENV_NAME, "HOME")):
        assert pattern.fullmatch(good)
        assert not pattern.fullmatch(good + tail)


# Idempotency-Key


@pytest.mark.parametrize(
    "key", ["a", "0", "550e8400-e29b-41d4-a716-446655440000", "!~" * 100, "A+/=", "x" * 200]
)
def test_idempotency_keys_of_visible_ascii_are_accepted(key: str) -> None:
    assert policy.check_idempotency_key(key) == key


@pytest.mark.parametrize(
    "key", ["", " ", "  ", "a b", " a", "a ", "\t", "x" * 201, "é", "\xa0", "\x7f", "a\x00", "²"]
)
def test_other_idempotency_keys_are_invalid_input(key: str) -> None:
    with pytest.raises(InvalidInput) as info:
        policy.check_idempotency_key(key)
    assert info.value.details["field"] == "Idempotency-Key"


# every string in every request body is Text


def _bodies() -> list[type[BaseModel]]:
    return [
        m
        for _, m in inspect.getmembers(schemas, inspect.isclass)
        if issubclass(m, BaseModel) and m.__module__ == schemas.__name__
    ]


def _bare_strings(annotation: Any) -> bool:
    """Whether a type holds a `str` that is not `Text`."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        checked = any(getattr(m, "func", None) is schemas._valid_text for m in metadata)
        return not checked and _bare_strings(base)
    return any(_bare_strings(arg) for arg in typing.get_args(annotation))


def test_every_string_field_of_every_body_is_text() -> None:
    models = _bodies()
    assert {m.__name__ for m in models} >= {"KeyCreate", "ClaudeRun", "ShellRun", "GitRun"}
    for model in models:
        for name, field in model.model_fields.items():
            hint = typing.get_type_hints(model, include_extras=True)[name]
            assert not _bare_strings(hint), f"{model.__name__}.{name} is a bare str"
            del field


@pytest.mark.parametrize("bad", NOT_TEXT)
def test_bodies_refuse_what_is_not_text_naming_the_field(bad: str) -> None:
    cases: list[tuple[type[BaseModel], dict[str, Any], tuple[Any, ...]]] = [
        (schemas.ShellRun, {"argv": ["echo", bad]}, ("argv", 1)),
        (schemas.ShellRun, {"argv": ["x"], "env": {"A": bad}}, ("env", "A")),
        (schemas.ShellRun, {"argv": ["x"], "env": {bad: "v"}}, ("env",)),
        (schemas.GitRun, {"args": [bad]}, ("args", 0)),
        (schemas.ClaudeRun, {"prompt": "p", "allowed_tools": [bad]}, ("allowed_tools", 0)),
        (schemas.KeyCreate, {"name": "k", "scopes": ["admin"], "projects": [bad]}, ("projects", 0)),
        (schemas.ConfigItemUpdate, {"content": bad}, ("content",)),
    ]
    for model, data, loc in cases:
        with pytest.raises(ValidationError) as info:
            model.model_validate(data)
        assert info.value.errors()[0]["loc"][: len(loc)] == loc, (model, data)
