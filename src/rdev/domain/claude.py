"""Which Claude runs amount to a shell.

`commands:claude` means the Claude CLI under the project's permission policy: Claude may use a
tool only when a permission rule allows it (in `-p` mode nobody is there to say yes). A
permission mode that lets tools run without such a rule, or a rule that lets Bash run any
program, makes the run as strong as `commands:shell`, so it needs what a shell needs.

Both checks are allow-lists: the modes that keep the rules as the boundary, and shell-tool rules
that name the one program they allow (a literal first word). Anything else counts as a shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

# acceptEdits auto-approves file edits only; plan is read-only; dontAsk denies whatever no rule
# allows; default asks, which in `-p` mode is a denial. `bypassPermissions` skips every check
# and `auto` lets a classifier approve tool calls, so neither is in this list.
GUARDED_MODES: frozenset[str] = frozenset({"default", "acceptEdits", "plan", "dontAsk"})
# The CLI's tools that run arbitrary command lines.
SHELL_TOOLS: tuple[str, ...] = ("Bash", "PowerShell")
_RULE = re.compile(r"^(?P<name>[^()]*)(?:\((?P<spec>.*)\))?$", re.DOTALL)
# a program named literally: a path or a name, no wildcard, no `VAR=` prefix, no leading dash
_PROGRAM = re.compile(r"^[A-Za-z0-9_./+@~][A-Za-z0-9_./+@~-]*$")


@dataclass(frozen=True, slots=True)
class ShellGrant:
    """Why a run needs shell rights: `reason` is the request field that asks for them."""

    reason: str
    values: tuple[str, ...]


def mode_grants_shell(mode: str | None) -> bool:
    return mode is not None and mode not in GUARDED_MODES


def rule_grants_shell(rule: str) -> bool:
    """True when a permission rule could let a shell tool run any program: `Bash`, `Bash(*)`,
    `Bash(:*)`, `*`, `B*`, `Bash(* x)`, `Bash(FOO=1 x)`. `Bash(git status:*)` names `git` and
    is restricted to it."""
    match = _RULE.fullmatch(rule.strip())
    if match is None:
        return True  # not a rule we understand: assume the worst
    name = match["name"].strip().lower()
    if not any(fnmatchcase(tool.lower(), name) for tool in SHELL_TOOLS):
        return False
    spec = match["spec"]
    if spec is None:
        return True
    words = spec.strip().split()
    program = words[0].split(":", 1)[0] if words else ""
    return _PROGRAM.fullmatch(program) is None


def shell_grants(
    permission_mode: str | None, allowed_tools: Iterable[str] | None
) -> list[ShellGrant]:
    """What in a Claude request needs shell rights; empty when none of it does."""
    grants = []
    if mode_grants_shell(permission_mode):
        grants.append(ShellGrant("permission_mode", (str(permission_mode),)))
    wide = tuple(rule for rule in allowed_tools or () if rule_grants_shell(rule))
    if wide:
        grants.append(ShellGrant("allowed_tools", wide))
    return grants
