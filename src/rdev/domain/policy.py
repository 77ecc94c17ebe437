"""Validation and sanitizing rules for everything a client sends: argv, prompts, names, paths,
environment, CIDRs. Pure functions that raise domain errors.

Every rule is an allow-list matched against the whole string (`fullmatch`: `$` would let a
trailing newline through), and every text passes `text.problem` first."""

from __future__ import annotations

import ipaddress
import math
import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence

from rdev.domain import git, text
from rdev.domain.errors import CommandRejected, InvalidInput
from rdev.domain.models import Scope

MAX_PROMPT_BYTES = 100_000
MAX_ARG_BYTES = 16_384
MAX_ARGS = 256
MAX_COMMAND_BYTES = 16_384
MAX_ENV_VARS = 64
MAX_ENV_VALUE_BYTES = 8_192

DANGEROUS_PATTERNS: tuple[str, ...] = (
    "&&", "||", ">>", "$(", "rm -rf", "dd if=", ";", "|", "`", ">", "<",
)  # fmt: skip

# RDEV_COMMAND_ID marks every process of a command so that rdev can end them all; it is set by
# the backend, never by a client
FORBIDDEN_ENV: frozenset[str] = frozenset(
    {"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PATH", "RDEV_COMMAND_ID"}
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Claude session ids are UUIDs (the CLI's `--session-id` says "must be a valid UUID")
SESSION_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,99}")
# A permission rule: a tool name (letters first, `*` wildcards, `mcp__server__tool`), optionally
# with one parenthesised specifier such as `Bash(git status:*)` or `Edit(src/**)`.
TOOL = re.compile(r"[A-Za-z*][A-Za-z0-9_*.-]{0,99}(\([A-Za-z0-9_*:./ =@+~-]{0,190}\))?")
# Visible ASCII (no blank, no control): what a client's uuid, ulid or token looks like.
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,200}")
PERMISSION_MODES: frozenset[str] = frozenset(
    {"acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"}
)


def check_unicode(value: str, field: str) -> str:
    """Valid Unicode without NUL (see `text`), else InvalidInput naming the field."""
    reason = text.problem(value)
    if reason is not None:
        raise InvalidInput(f"{field} {reason}", details={"field": field})
    return value


def _max_bytes(value: str, limit: int, field: str) -> None:
    if len(value.encode("utf-8")) > limit:
        raise InvalidInput(
            f"{field} is longer than {limit} bytes", details={"field": field, "limit": limit}
        )


def check_text(value: str, *, field: str, limit: int, allow_empty: bool = False) -> str:
    check_unicode(value, field)
    _max_bytes(value, limit, field)
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{field} must not be empty", details={"field": field})
    return value


def check_argv(argv: Sequence[str], *, field: str = "argv") -> tuple[str, ...]:
    if not argv:
        raise InvalidInput(f"{field} must not be empty", details={"field": field})
    if len(argv) > MAX_ARGS:
        raise InvalidInput(f"{field} has more than {MAX_ARGS} items", details={"field": field})
    for item in argv:
        check_text(item, field=field, limit=MAX_ARG_BYTES, allow_empty=True)
    if not argv[0].strip():
        raise InvalidInput(f"{field}[0] must name a program", details={"field": field})
    return tuple(argv)


def dangerous_pattern(command: str) -> str | None:
    """The first dangerous pattern in the string (the longer one where two start together)."""
    hits = [(command.find(p), -len(p), p) for p in DANGEROUS_PATTERNS if p in command]
    return min(hits)[2] if hits else None


def split_shell(command: str, *, allow_raw_shell: bool = False) -> tuple[str, ...]:
    """Turn a shell string into argv. Refuse shell syntax unless the project allows raw shell,
    in which case the string runs under `sh -c`."""
    check_text(command, field="command", limit=MAX_COMMAND_BYTES)
    if allow_raw_shell:
        return ("sh", "-c", command)
    _refuse_dangerous(command)
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise InvalidInput(f"command cannot be parsed: {e}", details={"field": "command"}) from e
    # quotes and extra blanks can hide a pattern from the raw string ('"&"&', "rm  -rf")
    _refuse_dangerous(" ".join(argv))
    return check_argv(argv, field="command")


def _refuse_dangerous(command: str) -> None:
    pattern = dangerous_pattern(command)
    if pattern is not None:
        raise CommandRejected(
            f"command contains the forbidden pattern {pattern!r}",
            details={"pattern": pattern},
            argv=(command,),
        )


def check_git_args(args: Sequence[str]) -> tuple[str, ...]:
    """The argv for a git-only command: the policy is domain/git.py's."""
    if not args:
        raise InvalidInput("args must name a git subcommand", details={"field": "args"})
    check_argv(args, field="args")
    try:
        return git.check_args(args)
    except CommandRejected as e:
        if not e.argv:
            e.argv = ("git", *args)  # for the audit of the refusal
        raise


def check_env(env: dict[str, str]) -> dict[str, str]:
    if len(env) > MAX_ENV_VARS:
        raise InvalidInput(f"env has more than {MAX_ENV_VARS} variables", details={"field": "env"})
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise InvalidInput(f"env name {name!r} is invalid", details={"field": "env"})
        if name.upper() in FORBIDDEN_ENV:
            raise CommandRejected(
                f"env may not override {name}", details={"pattern": name, "field": "env"}
            )
        check_text(value, field=f"env.{name}", limit=MAX_ENV_VALUE_BYTES, allow_empty=True)
    return dict(env)


def check_relative_path(path: str, *, field: str = "cwd") -> str:
    """A path inside the workspace: relative, normalised, never escaping with `..`."""
    check_text(path, field=field, limit=1024)
    if path.startswith("/") or "\\" in path:
        raise InvalidInput(f"{field} must be relative to the workspace", details={"field": field})
    parts = path.split("/")
    if ".." in parts:
        raise InvalidInput(f"{field} must not contain '..'", details={"field": field})
    normal = posixpath.normpath(path)
    return "" if normal == "." else normal


def check_name(name: str, *, field: str = "name") -> str:
    """Names of config items and projects: no path separators, no hidden files."""
    check_unicode(name, field)
    if not _NAME.fullmatch(name) or name.endswith(".") or ".." in name:
        raise InvalidInput(
            f"{field} must be 1-64 characters of letters, digits, '_', '-', '.', "
            "starting with a letter or digit",
            details={"field": field},
        )
    return name


def check_session_id(value: str) -> str:
    """A UUID in its canonical hyphenated form; returned in lower case, as the CLI writes it."""
    normal = value.lower()
    if not SESSION_ID.fullmatch(normal):
        raise InvalidInput(
            "resume_session must be a session id (a UUID)", details={"field": "resume_session"}
        )
    return normal


def check_model(value: str) -> str:
    if not MODEL.fullmatch(value):
        raise InvalidInput("model is not a valid model name", details={"field": "model"})
    return value


def check_tools(tools: Iterable[str]) -> list[str]:
    out = list(tools)
    for tool in out:
        if not TOOL.fullmatch(tool):
            raise InvalidInput(
                f"allowed tool {tool!r} is invalid", details={"field": "allowed_tools"}
            )
    return out


def check_idempotency_key(value: str) -> str:
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput(
            "Idempotency-Key must be 1-200 visible ASCII characters (no blanks)",
            details={"field": "Idempotency-Key"},
        )
    return value


def check_permission_mode(mode: str) -> str:
    if mode not in PERMISSION_MODES:
        raise InvalidInput(
            f"permission_mode must be one of {sorted(PERMISSION_MODES)}",
            details={"field": "permission_mode"},
        )
    return mode


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    scopes: set[Scope] = set()
    unknown = []
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            unknown.append(value)
    if unknown:
        raise InvalidInput(
            f"unknown scopes: {', '.join(sorted(unknown))}",
            details={"field": "scopes", "unknown": sorted(unknown)},
        )
    if not scopes:
        raise InvalidInput("at least one scope is required", details={"field": "scopes"})
    return frozenset(scopes)


def parse_cidrs(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as e:
            raise InvalidInput(
                f"{value!r} is not a valid IP address or CIDR", details={"field": "allowed_ips"}
            ) from e
    return tuple(out)


MAX_KEY_RATE_LIMIT_RPS = 10_000.0


def check_key_rate(value: float | None) -> float | None:
    """A key's own rate limit: requests per second, more than 0 and at most
    MAX_KEY_RATE_LIMIT_RPS (the moving window holds one timestamp per request), or None."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_KEY_RATE_LIMIT_RPS
    ):
        raise InvalidInput(
            f"rate_limit_rps must be a number above 0 and at most {MAX_KEY_RATE_LIMIT_RPS:g}",
            details={"field": "rate_limit_rps"},
        )
    return float(value)


def ip_allowed(client_ip: str | None, allowed: Sequence[str]) -> bool:
    if not allowed:
        return True
    if client_ip is None:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(cidr) for cidr in allowed)


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
