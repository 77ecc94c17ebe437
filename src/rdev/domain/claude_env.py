"""Which environment variables an operator may hand to the Claude CLI, and the environment a
claude command gets.

Two sources, both set by the operator, never by a client: `RDEV_CLAUDE_ENV` names variables
passed through from rdev's own environment (`ANTHROPIC_API_KEY,CLAUDE_CODE_USE_BEDROCK,...`),
and a project's `claude_env` setting gives values for that project. The values are secrets:
they live in memory and in the operator's files only, never in the command row, an event, a log
line, the audit log or an API response (only the names are shown).

The names pass an allow-list policy, checked when the setting is read (start-up, or the project
settings parser): an upper-case POSIX name, and none that would change how the runtime itself
works rather than configure Claude. Refused are:
- what rdev sets itself for every command or for Claude: PATH HOME USER LANG LC_* TZ TERM,
  RDEV_* (the command marker and rdev's own settings), CLAUDE_CONFIG_DIR (per project),
  TMPDIR (per command), CLAUDE_CODE_MAX_RETRIES (RDEV_CLAUDE_MAX_RETRIES);
- what makes the dynamic loader or a shell run code: LD_*, DYLD_*, BASH_ENV, ENV, BASH_FUNC_*,
  IFS, PS4, SHELLOPTS, BASHOPTS, CDPATH, PROMPT_COMMAND, SHELL;
- interpreter hooks the CLI's tools would inherit: NODE_OPTIONS, NODE_PATH, PYTHON*, PERL5*,
  PERLLIB, RUBYOPT, RUBYLIB, GIT_* (git's own environment policy is domain/git_env.py), and
  process identity: PWD OLDPWD SHLVL LOGNAME HOSTNAME.
Anything else of the right shape is allowed: ANTHROPIC_*, CLAUDE_CODE_* (Bedrock, Vertex),
AWS_*, GOOGLE_*, CLOUD_ML_REGION, HTTPS_PROXY, NO_PROXY, NODE_EXTRA_CA_CERTS, DISABLE_*, ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rdev.domain import text

MAX_NAMES = 64
MAX_NAME_CHARS = 128
MAX_VALUE_BYTES = 8192
NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
REFUSED_NAMES: frozenset[str] = frozenset(
    {
        # set by rdev for every command, or for Claude
        "PATH", "HOME", "USER", "LANG", "TZ", "TERM", "TMPDIR", "CLAUDE_CONFIG_DIR",
        "CLAUDE_CODE_MAX_RETRIES",
        # shells and loaders that run code from a variable
        "BASH_ENV", "ENV", "IFS", "PS4", "SHELLOPTS", "BASHOPTS", "CDPATH", "PROMPT_COMMAND",
        "SHELL", "GLOBIGNORE",
        # interpreter hooks
        "NODE_OPTIONS", "NODE_PATH", "PERLLIB", "RUBYOPT", "RUBYLIB",
        # process identity
        "PWD", "OLDPWD", "SHLVL", "LOGNAME", "HOSTNAME",
    }
)  # fmt: skip
REFUSED_PREFIXES: tuple[str, ...] = (
    "LD_", "DYLD_", "LC_", "RDEV_", "BASH_FUNC_", "PYTHON", "PERL5", "GIT_",
)  # fmt: skip


def name_problem(name: str) -> str | None:
    """Why `name` may not be given to Claude, or None when it may."""
    if not NAME.fullmatch(name):
        return (
            f"{_shown(name)} is not a variable name (upper-case letters, digits and _, "
            f"not starting with a digit, at most {MAX_NAME_CHARS} characters)"
        )
    if name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES):
        return f"{name} is set by rdev or changes how programs run, so it cannot be passed"
    return None


def value_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if text.problem(value) is not None:
        return "must be valid Unicode without NUL"
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        return f"must be at most {MAX_VALUE_BYTES} bytes"
    return None


def parse_names(spec: str) -> tuple[str, ...]:
    """`RDEV_CLAUDE_ENV`: comma-separated names; ValueError naming every bad one."""
    names = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    problems = [p for n in names if (p := name_problem(n))]
    if len(names) > MAX_NAMES:
        problems.append(f"at most {MAX_NAMES} names")
    if problems:
        raise ValueError("; ".join(problems))
    return names


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:37] + "...")


@dataclass(frozen=True, slots=True)
class ClaudeEnv:
    """Variables for claude commands. `repr` shows the names only, so a log line or a traceback
    that prints it carries no secret."""

    values: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ClaudeEnv(names={sorted(self.values)})"

    @property
    def names(self) -> list[str]:
        return sorted(self.values)

    @classmethod
    def passthrough(cls, names: Iterable[str], environ: Mapping[str, str]) -> ClaudeEnv:
        """The named variables that rdev's own environment has (a missing one is left out)."""
        return cls({n: environ[n] for n in names if n in environ})


def command_env(
    passthrough: ClaudeEnv,
    project: ClaudeEnv,
    own: Mapping[str, str],
    *,
    max_retries: int,
) -> dict[str, str]:
    """A claude command's environment: the pass-through list, then the project's values (the
    project wins), then the command's own env; `CLAUDE_CODE_MAX_RETRIES` is always rdev's."""
    return {
        **passthrough.values,
        **project.values,
        **own,
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }
