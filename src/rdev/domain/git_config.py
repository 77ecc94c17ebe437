"""`git config` for a git-only key: read the repository's config, and write (set or unset) only
keys on an allow-list of settings that cannot name a program or a path. No other file: no
--file/--global/--system/--worktree/--blob, no includes, no editor."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rdev.domain import git_checks as c
from rdev.domain.errors import CommandRejected

_BOOL = c.choice("true", "false", "yes", "no", "on", "off", "1", "0")
_USER_TEXT = re.compile(r"^[^<>\n]{1,200}$")
_EMAIL = re.compile(r"^[^<>\s]{1,200}$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9-]*(\.[^\n\x00]{1,200})?\.[A-Za-z][A-Za-z0-9-]*$")


def _user_text(sub: str, option: str, value: str) -> None:
    if not _USER_TEXT.match(value):
        raise CommandRejected(
            f"git {sub}: {option} must be 1-200 characters without '<', '>' or newlines",
            details={"subcommand": sub, "key": option},
        )


def _email(sub: str, option: str, value: str) -> None:
    if not _EMAIL.match(value):
        raise CommandRejected(
            f"git {sub}: {option} must be an address without blanks, '<' or '>'",
            details={"subcommand": sub, "key": option},
        )


def _remote(sub: str, option: str, value: str) -> None:
    c.remote(sub, value)


# key (section and name lowercased, `*` for a subsection) -> check of its value
WRITABLE: dict[str, Callable[[str, str, str], None]] = {
    "user.name": _user_text,
    "user.email": _email,
    "core.autocrlf": c.choice("true", "false", "input"),
    "core.eol": c.choice("lf", "crlf", "native"),
    "core.safecrlf": c.choice("true", "false", "warn"),
    "core.filemode": _BOOL,
    "core.ignorecase": _BOOL,
    "core.quotepath": _BOOL,
    "core.abbrev": c.number,
    "init.defaultbranch": c.rev,
    "pull.rebase": c.choice("true", "false", "merges"),
    "pull.ff": c.choice("true", "false", "only"),
    "push.default": c.choice("nothing", "current", "upstream", "simple", "matching"),
    "push.autosetupremote": _BOOL,
    "push.followtags": _BOOL,
    "fetch.prune": _BOOL,
    "fetch.prunetags": _BOOL,
    "merge.ff": c.choice("true", "false", "only"),
    "merge.conflictstyle": c.choice("merge", "diff3", "zdiff3"),
    "rebase.autostash": _BOOL,
    "rebase.updaterefs": _BOOL,
    "branch.autosetupmerge": c.choice("true", "false", "always", "inherit", "simple"),
    "branch.autosetuprebase": c.choice("never", "local", "remote", "always"),
    "branch.*.remote": _remote,
    "branch.*.merge": c.rev,
    "branch.*.rebase": _BOOL,
    "branch.*.description": c.text,
    "color.ui": c.choice("auto", "always", "never", "true", "false"),
    "log.decorate": c.choice("short", "full", "auto", "no", "true", "false"),
    "diff.renames": c.choice("true", "false", "copies", "copy"),
    "diff.algorithm": c.choice("myers", "minimal", "patience", "histogram"),
    "status.short": _BOOL,
    "status.branch": _BOOL,
    "status.showuntrackedfiles": c.choice("no", "normal", "all"),
    "advice.*": _BOOL,  # advice.<hint> has no subsection, see _pattern
}

_READ_FLAGS = frozenset({
    "--get", "--get-all", "--get-regexp", "-l", "--list", "--local", "--name-only", "-z",
    "--null", "--show-origin", "--show-scope", "--bool", "--int", "--bool-or-int",
})  # fmt: skip
_WRITE_FLAGS = frozenset({"--unset", "--unset-all", "--local", "--bool", "--int", "--add"})


def check(args: Sequence[str]) -> list[str]:
    """`git config` args: reading anything in the repository's config, or writing a key from
    WRITABLE (`KEY VALUE`, `--unset KEY`)."""
    options = [a for a in args if a.startswith("-")]
    words = [a for a in args if not a.startswith("-")]
    for option in options:
        if option not in _READ_FLAGS | _WRITE_FLAGS:
            raise c.refuse_option(
                "config", option, "is not allowed: only the repository's own config, by key"
            )
    reading = bool({"--get", "--get-all", "--get-regexp", "-l", "--list"} & set(options))
    if reading or (len(words) == 1 and not {"--unset", "--unset-all"} & set(options)):
        if len(words) > 2:
            raise CommandRejected(
                "git config: too many arguments", details={"subcommand": "config"}
            )
        return list(args)
    if not words:
        raise CommandRejected("git config: name a key", details={"subcommand": "config"})
    key = words[0]
    pattern = _pattern(key)
    if pattern not in WRITABLE:
        raise CommandRejected(
            f"git config: key {key!r} may not be written by a git-only key (allowed: "
            f"{', '.join(sorted(WRITABLE))})",
            details={"subcommand": "config", "key": key},
        )
    unsetting = bool({"--unset", "--unset-all"} & set(options))
    if unsetting and len(words) == 1:
        return list(args)
    if unsetting or len(words) != 2:
        raise CommandRejected("git config: expected KEY VALUE", details={"subcommand": "config"})
    WRITABLE[pattern]("config", key, words[1])
    return list(args)


def _pattern(key: str) -> str:
    """`Branch.Main.Remote` -> `branch.*.remote`; section and name are case-insensitive."""
    if not _KEY.match(key):
        return ""
    section, _, rest = key.partition(".")
    subsection, _, name = rest.rpartition(".")
    if not subsection:
        lowered = f"{section.lower()}.{name.lower()}"
        return "advice.*" if section.lower() == "advice" else lowered
    return f"{section.lower()}.*.{name.lower()}"
