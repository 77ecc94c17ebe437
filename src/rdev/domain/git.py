"""What a `commands:git` key may ask git to do, checked word by word against the table in
git_specs.py.

The promise behind it (ARCHITECTURE §13): a git-only key runs git and nothing else, now or
later, and reads and writes only inside its project's workspace. So the client's argv is
accepted only where every word is known: a listed subcommand, options spelled exactly as listed
(no abbreviations, no bundled short flags, long options with a value only as `--name=value`),
paths relative and without `..`, remotes as network URLs only, and config writes only to keys
that cannot name a program or a path (git_config.py). Global options before the subcommand are
rdev's alone. The environment and config overrides git runs under are in git_env.py; this
module decides only which argv may reach it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdev.domain import git_checks as c
from rdev.domain import git_config
from rdev.domain.errors import CommandRejected, InvalidInput
from rdev.domain.git_specs import ACTIONS, DROPPED, REMOTE_LIST, SPECS, SUBCOMMANDS, Spec


def check_args(args: Sequence[str]) -> tuple[str, ...]:
    """The full argv (`git SUB [rdev's options] ARGS…`) for a client's args, or a refusal."""
    if not args:
        raise InvalidInput("args must name a git subcommand", details={"field": "args"})
    sub, rest = args[0], list(args[1:])
    if sub.startswith("-"):
        raise CommandRejected(
            f"git option {sub!r} before the subcommand is not allowed (only rdev sets git's "
            "global options)",
            details={"subcommand": sub, "option": sub},
        )
    if sub == "config":
        return ("git", "config", *git_config.check(rest))
    if sub in ACTIONS:
        return ("git", sub, *_check_action(sub, rest))
    spec = SPECS.get(sub)
    if spec is None:
        reason = DROPPED.get(sub, "it is not on rdev's list of git subcommands")
        raise CommandRejected(
            f"git subcommand {sub!r} is not allowed: {reason}",
            details={"subcommand": sub, "allowed": sorted(SUBCOMMANDS)},
        )
    return ("git", sub, *spec.insert, *check_options(sub, spec, rest))


def _check_action(sub: str, rest: list[str]) -> list[str]:
    actions, implied = ACTIONS[sub]
    if rest and rest[0] in actions:
        action, words = rest[0], rest[1:]
    elif implied is not None and (not rest or rest[0].startswith("-")):
        action, words = implied, rest
        spec = actions[action]
        return [*spec.insert, *check_options(f"{sub} {action}", spec, words)]
    elif sub == "remote" and (not rest or rest[0].startswith("-")):
        return check_options(sub, REMOTE_LIST, rest)
    else:
        word = rest[0] if rest else ""
        raise CommandRejected(
            f"git {sub} {word!r} is not allowed; allowed: {', '.join(sorted(actions))}",
            details={"subcommand": sub, "action": word, "allowed": sorted(actions)},
        )
    spec = actions[action]
    return [action, *spec.insert, *check_options(f"{sub} {action}", spec, words)]


def check_options(sub: str, spec: Spec, args: Sequence[str]) -> list[str]:
    """Walk args as git's option parser would; refuse any option not in `spec`."""
    before: list[str] = []
    after: list[str] | None = None  # the words after `--`: paths only
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if after is not None:
            after.append(arg)
        elif arg == "--":
            after = []
        elif not arg.startswith("-"):
            before.append(arg)
        elif arg.startswith("--"):
            _long_option(sub, spec, arg)
        else:
            i += _short_option(sub, spec, arg, args[i] if i < len(args) else None)
    spec.positionals(sub, before, after or [])
    return list(args)


def _long_option(sub: str, spec: Spec, arg: str) -> None:
    name, eq, value = arg.partition("=")
    if eq:
        check = spec.values.get(name)
        if check is None:
            raise c.refuse_option(sub, name, "does not take a value here" if name in spec.flags
                                  else "is not allowed")  # fmt: skip
        check(sub, name, value)
    elif arg not in spec.flags:
        why = f"needs a value: use {arg}=VALUE" if arg in spec.values else "is not allowed"
        raise c.refuse_option(sub, arg, why)


def _short_option(sub: str, spec: Spec, arg: str, following: str | None) -> int:
    """How many extra words the option took (its separate value)."""
    if arg in spec.flags:
        return 0
    if spec.counts and arg[1:].isdigit():
        return 0
    check = spec.values.get(arg[:2])
    if check is None:
        raise c.refuse_option(sub, arg, "is not allowed (short flags are not combined)")
    if len(arg) > 2:
        check(sub, arg[:2], arg[2:])
        return 0
    if following is None:
        raise c.refuse_option(sub, arg, "needs a value")
    check(sub, arg, following)
    return 1
