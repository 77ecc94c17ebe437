"""The value checks behind the git policy (git.py): what an option's value, a path, a revision,
a refspec or a remote may be. Each check raises CommandRejected naming the subcommand, the
option and why; none looks at the file system (symlinks are git's and the backend's concern).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from rdev.domain.errors import CommandRejected

Check = Callable[[str, str, str], None]  # (subcommand, option, value) -> None or raise

NETWORK_SCHEMES = ("https", "http", "ssh", "git")
_INT = re.compile(r"^[0-9]{1,9}$")
_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@{}^~:+-]{0,254}$|^@$|^HEAD$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_REFSPEC = re.compile(r"^\+?[A-Za-z0-9._/@{}^~*-]{0,255}(:[A-Za-z0-9._/@{}^~*-]{0,255})?$")
_SCP = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?([A-Za-z0-9][A-Za-z0-9.-]*):([^:\s].*)$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")
_HELPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.-]*::")  # <transport>::<address>
_FILTER = re.compile(r"^[ACDMRTUXBacdmrtuxb*]{1,16}$")
_STAT = re.compile(r"^[0-9]{1,5}(,[0-9]{1,5}){0,2}$")
_DATE = re.compile(r"^[A-Za-z0-9%:._ +-]{1,100}$")
_LEASE = re.compile(r"^[A-Za-z0-9._/@{}^~-]{1,255}(:[A-Za-z0-9._/@{}^~-]{0,255})?$")
_STRATEGY_OPTIONS = frozenset({
    "ours", "theirs", "patience", "histogram", "diff-algorithm=patience",
    "diff-algorithm=histogram", "diff-algorithm=minimal", "diff-algorithm=myers",
    "ignore-space-change", "ignore-all-space", "ignore-space-at-eol", "ignore-cr-at-eol",
    "renormalize", "no-renormalize", "no-renames", "find-renames",
})  # fmt: skip


def refuse_option(sub: str, option: str, why: str) -> CommandRejected:
    return CommandRejected(
        f"git {sub}: option {option!r} {why}", details={"subcommand": sub, "option": option}
    )


def _refuse_value(sub: str, option: str, value: str, why: str) -> CommandRejected:
    return CommandRejected(
        f"git {sub}: {option} {value!r} is refused: {why}",
        details={"subcommand": sub, "option": option},
    )


def text(sub: str, option: str, value: str) -> None:
    """Free text (messages, patterns, dates): git reads it, never runs or opens it."""


def number(sub: str, option: str, value: str) -> None:
    if not _INT.match(value):
        raise _refuse_value(sub, option, value, "expected a number")


def rev(sub: str, option: str, value: str) -> None:
    if not _REV.match(value) or ".." in value.split("/"):
        raise _refuse_value(sub, option, value, "expected a branch, tag or revision name")


def path(sub: str, option: str, value: str) -> None:
    workspace_path(sub, value, option=option)


def pretty_format(sub: str, option: str, value: str) -> None:
    # %G… asks git to verify a signature, which runs the gpg/ssh program
    if "%G" in value:
        raise _refuse_value(sub, option, value, "signature placeholders (%G) run gpg")


def date_format(sub: str, option: str, value: str) -> None:
    if not _DATE.match(value):
        raise _refuse_value(sub, option, value, "expected a date format")


def diff_filter(sub: str, option: str, value: str) -> None:
    if not _FILTER.match(value):
        raise _refuse_value(sub, option, value, "expected diff-filter letters")


def stat_width(sub: str, option: str, value: str) -> None:
    if not _STAT.match(value):
        raise _refuse_value(sub, option, value, "expected WIDTH[,NAME-WIDTH[,COUNT]]")


def lease(sub: str, option: str, value: str) -> None:
    if not _LEASE.match(value) or value.startswith("-"):
        raise _refuse_value(sub, option, value, "expected REF[:EXPECTED]")


def strategy_option(sub: str, option: str, value: str) -> None:
    if value not in _STRATEGY_OPTIONS:
        raise _refuse_value(sub, option, value, f"allowed: {', '.join(sorted(_STRATEGY_OPTIONS))}")


def choice(*allowed: str) -> Check:
    def check(sub: str, option: str, value: str) -> None:
        if value not in allowed:
            raise _refuse_value(sub, option, value, f"allowed: {', '.join(allowed)}")

    return check


def workspace_path(sub: str, value: str, *, option: str = "path") -> None:
    """A pathspec or revision word: relative to the workspace and never climbing out of it.
    (Pathspec magic such as `:(top)` or `:!x` stays inside the repository.)"""
    if value.startswith(("/", "~")) or "\\" in value:
        raise _refuse_value(sub, option, value, "paths must be relative to the workspace")
    parts = value.split("/")
    if ".." in parts or any(p.endswith(":..") for p in parts):
        raise _refuse_value(sub, option, value, "paths must not climb out with '..'")


def refspec(sub: str, value: str) -> None:
    if not _REFSPEC.match(value) or value.lstrip("+").startswith("-"):
        raise _refuse_value(sub, "refspec", value, "expected [+]SRC[:DST] of ref names")


def remote(sub: str, value: str) -> None:
    """A configured remote's name, or a network URL."""
    if _NAME.match(value):
        return
    network_url(sub, value)


def network_url(sub: str, value: str, *, option: str = "url") -> None:
    """https/http/ssh/git URLs and scp-like user@host:path; never a local path, file://, a
    transport helper (`ext::`, `fd::`, `<vcs>::…`) or anything git could read as an option."""
    why = _url_problem(value)
    if why is not None:
        raise CommandRejected(
            f"git {sub}: {value!r} is not a network URL ({why}); allowed: "
            f"{', '.join(s + '://' for s in NETWORK_SCHEMES)} and user@host:path",
            details={"subcommand": sub, "option": option},
        )


def _url_problem(value: str) -> str | None:
    if any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in value):
        return "it contains blanks or control characters"
    if value.startswith("-"):
        return "it starts with '-'"
    if _HELPER.match(value):
        return "transport helpers are not allowed"
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() not in NETWORK_SCHEMES:
            return f"scheme {parts.scheme!r} is not allowed"
        if parts.netloc.startswith("-"):
            return "its user or host starts with '-'"
        host = parts.netloc.rpartition("@")[2]
        host = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
        if not host or host.startswith("-") or not _HOST.match(host):
            return "it names no valid host"
        return None
    scp = _SCP.match(value)
    if scp is None or "/" in value.partition(":")[0]:
        return "local paths are not allowed"
    return None


def remote_names(sub: str, before: list[str], after: list[str]) -> None:
    for value in [*before, *after]:
        if not _NAME.match(value):
            raise _refuse_value(sub, "remote", value, "expected a remote name")


def remote_add(sub: str, before: list[str], after: list[str]) -> None:
    words = [*before, *after]
    if len(words) != 2:
        raise CommandRejected(
            f"git {sub} takes NAME URL", details={"subcommand": sub, "argument": words}
        )
    remote_names(sub, words[:1], [])
    network_url(sub, words[1])


def remote_set_url(sub: str, before: list[str], after: list[str]) -> None:
    words = [*before, *after]
    if len(words) not in (2, 3):
        raise CommandRejected(
            f"git {sub} takes NAME NEWURL [OLDURL]", details={"subcommand": sub, "argument": words}
        )
    remote_names(sub, words[:1], [])
    network_url(sub, words[1])
