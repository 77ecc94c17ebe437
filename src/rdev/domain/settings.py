"""A project's own settings, parsed by one function for both backends (`.settings/<project>.toml`
beside the workspaces locally, the `rdev-projects` ConfigMap entry on Kubernetes), and the rule
for whether a project takes a command.

Settings widen what a key can do in a project (raw shell, Claude with a shell's power), so the
parser fails closed: each key is on an allow-list with one exact type and range, and anything
else — an unknown or misspelt key, `"false"` for a boolean, `2.5` or `true` for a count, an
unknown command kind — is an error listing every problem, never a default. A project whose
settings are an error takes no commands at all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rdev.domain.claude_env import MAX_NAMES, ClaudeEnv, name_problem, value_problem
from rdev.domain.errors import Forbidden, InvalidSettings, ProjectUnavailable
from rdev.domain.models import CommandKind, Project, ProjectStatus

MAX_CONCURRENT_LIMIT = 1000
MAX_DESCRIPTION_CHARS = 1000
MAX_REASON_CHARS = 1000


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """The defaults are what a project without settings gets."""

    description: str = ""
    allowed_kinds: frozenset[CommandKind] = frozenset(CommandKind)
    max_concurrent: int | None = None  # None: the server's CONCURRENT_COMMANDS
    allow_raw_shell: bool = False
    allow_claude_shell: bool = False
    claude_env: ClaudeEnv = field(default_factory=ClaudeEnv)
    daily_budget_usd: float | None = None  # None: the server's RDEV_PROJECT_DAILY_BUDGET_USD


class _Bad(Exception):
    """One key's problem, as a phrase that follows the key's name."""


def _type_name(value: object) -> str:
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a decimal number",
             str: "a string", list: "a list", dict: "a mapping"}  # fmt: skip
    for kind, name in names.items():
        if type(value) is kind:
            return name
    return "a mapping" if isinstance(value, Mapping) else f"a {type(value).__name__}"


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _got(value: object) -> str:
    shown = _short(value)
    return f"{_type_name(value)} {shown}" if isinstance(value, str | int | float) else shown


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {_got(value)}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, got {_type_name(value)}")
    if len(value) > MAX_DESCRIPTION_CHARS:
        raise _Bad(f"must be at most {MAX_DESCRIPTION_CHARS} characters")
    if "\x00" in value:
        raise _Bad("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad("must be valid Unicode (it holds a lone surrogate)") from None
    return value


def _limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"must be a whole number, got {_got(value)}")
    if not 1 <= value <= MAX_CONCURRENT_LIMIT:
        raise _Bad(f"must be between 1 and {MAX_CONCURRENT_LIMIT}, got {value}")
    return value


def _kinds(value: object) -> frozenset[CommandKind]:
    if not isinstance(value, list):
        raise _Bad(f"must be a list of command kinds, got {_type_name(value)}")
    known = {k.value: k for k in CommandKind}
    unknown = [item for item in value if not (isinstance(item, str) and item in known)]
    if unknown:
        names = ", ".join(sorted(known))
        shown = ", ".join(_short(item) for item in unknown)
        raise _Bad(f"has unknown command kinds {shown} (known: {names})")
    return frozenset(known[item] for item in value)


def _claude_env(value: object) -> ClaudeEnv:
    """A mapping of variable names (domain/claude_env.py's policy) to string values. A problem
    names the variable, never its value (a secret)."""
    if not isinstance(value, Mapping):
        raise _Bad(f"must be a mapping of variable names to values, got {_type_name(value)}")
    problems = []
    for name, item in value.items():
        problem = name_problem(name) if isinstance(name, str) else "a name must be a string"
        if problem is None and (bad := value_problem(item)) is not None:
            problem = f"the value of {name} {bad}"
        if problem is not None:
            problems.append(problem)
    if len(value) > MAX_NAMES:
        problems.append(f"at most {MAX_NAMES} variables")
    if problems:
        raise _Bad("has problems: " + "; ".join(problems))
    return ClaudeEnv(dict(value))


MAX_BUDGET_USD = 1_000_000


def _budget(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"must be a number of US dollars, got {_got(value)}")
    if not 0 < value <= MAX_BUDGET_USD:  # NaN fails this too
        raise _Bad(f"must be more than 0 and at most {MAX_BUDGET_USD}, got {value}")
    return float(value)


# settings key -> (ProjectSettings field, value parser): the allow-list
FIELDS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "description": ("description", _text),
    "allowed_commands": ("allowed_kinds", _kinds),
    "max_concurrent_commands": ("max_concurrent", _limit),
    "allow_raw_shell": ("allow_raw_shell", _bool),
    "allow_claude_shell": ("allow_claude_shell", _bool),
    "claude_env": ("claude_env", _claude_env),
    "daily_budget_usd": ("daily_budget_usd", _budget),
}


def _unknown(key: object) -> str:
    close = difflib.get_close_matches(key, list(FIELDS), n=1) if isinstance(key, str) else []
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(FIELDS)}"
    return f"unknown key {_short(key)} ({hint})"


def parse_settings(doc: object) -> ProjectSettings:
    """Settings from a parsed document, or InvalidSettings naming every problem."""
    if not isinstance(doc, Mapping):
        raise InvalidSettings([f"settings must be a mapping of keys to values, got {_got(doc)}"])
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in doc.items():
        known = FIELDS.get(key) if isinstance(key, str) else None
        if known is None:
            problems.append(_unknown(key))
            continue
        name, parse = known
        try:
            values[name] = parse(value)
        except _Bad as e:
            problems.append(f"{key} {e}")
    if problems:
        raise InvalidSettings(problems)
    return ProjectSettings(**values)


def failure_reason(source: str, error: InvalidSettings) -> str:
    """The status reason of a project whose settings are invalid, bounded in length."""
    reason = f"invalid {source}: {error.message}"
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


def check_accepts(project: Project, kind: CommandKind) -> None:
    """A project takes a command only while running, and only of a kind its settings allow."""
    if project.status is not ProjectStatus.RUNNING:
        reason = project.status_reason or f"the project is {project.status.value}"
        raise ProjectUnavailable(
            f"project {project.id} is {project.status.value}: {reason}",
            details={"status": project.status.value, "reason": reason},
        )
    if kind not in project.allowed_kinds:
        raise Forbidden(
            f"project {project.id} does not allow {kind.value} commands",
            details={"reason": "kind", "kind": kind.value},
        )
