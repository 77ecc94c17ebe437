"""Validation and sanitizing rules for everything a client sends: argv, prompts, names, paths,
environment, CIDRs. Pure functions that raise domain errors."""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence

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

GIT_SUBCOMMANDS: frozenset[str] = frozenset(
    {
        "status", "log", "diff", "show", "branch", "checkout", "switch", "add", "commit",
        "pull", "push", "fetch", "merge", "rebase", "stash", "tag", "reset", "restore",
        "rev-parse", "remote", "blame", "ls-files", "init", "clone", "config", "describe",
        "shortlog", "grep", "mv", "rm", "cherry-pick", "revert", "worktree",
    }
)  # fmt: skip

# RDEV_COMMAND_ID marks every process of a command so that rdev can end them all; it is set by
# the backend, never by a client
FORBIDDEN_ENV: frozenset[str] = frozenset(
    {"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PATH", "RDEV_COMMAND_ID"}
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_MODEL = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,100}$")
_TOOL = re.compile(r"^[A-Za-z0-9_*:()./ -]{1,200}$")
PERMISSION_MODES: frozenset[str] = frozenset(
    {"default", "acceptEdits", "bypassPermissions", "plan", "dontAsk"}
)


def _no_nul(value: str, field: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL byte", details={"field": field})


def _max_bytes(value: str, limit: int, field: str) -> None:
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidInput(
            f"{field} is longer than {limit} bytes", details={"field": field, "limit": limit}
        )


def check_text(value: str, *, field: str, limit: int, allow_empty: bool = False) -> str:
    _no_nul(value, field)
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
            f"command contains the forbidden pattern {pattern!r}", details={"pattern": pattern}
        )


def check_git_args(args: Sequence[str]) -> tuple[str, ...]:
    if not args:
        raise InvalidInput("args must name a git subcommand", details={"field": "args"})
    check_argv(args, field="args")
    if args[0] not in GIT_SUBCOMMANDS:
        raise CommandRejected(
            f"git subcommand {args[0]!r} is not allowed",
            details={"subcommand": args[0], "allowed": sorted(GIT_SUBCOMMANDS)},
        )
    return ("git", *args)


def check_env(env: dict[str, str]) -> dict[str, str]:
    if len(env) > MAX_ENV_VARS:
        raise InvalidInput(f"env has more than {MAX_ENV_VARS} variables", details={"field": "env"})
    for name, value in env.items():
        if not _ENV_NAME.match(name):
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
    _no_nul(name, field)
    if not _NAME.match(name) or name.endswith(".") or ".." in name:
        raise InvalidInput(
            f"{field} must be 1-64 characters of letters, digits, '_', '-', '.', "
            "starting with a letter or digit",
            details={"field": field},
        )
    return name


def check_session_id(value: str) -> str:
    if not _SESSION.match(value):
        raise InvalidInput(
            "resume_session is not a valid session id", details={"field": "resume_session"}
        )
    return value


def check_model(value: str) -> str:
    if not _MODEL.match(value):
        raise InvalidInput("model is not a valid model name", details={"field": "model"})
    return value


def check_tools(tools: Iterable[str]) -> list[str]:
    out = list(tools)
    for tool in out:
        if not _TOOL.match(tool):
            raise InvalidInput(
                f"allowed tool {tool!r} is invalid", details={"field": "allowed_tools"}
            )
    return out


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
