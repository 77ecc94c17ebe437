"""The environment every `git` command of kind git runs under, and the check of a repository's
own config that runs before it.

git reads programs to run from its config (fsmonitor, hooks, pager, editor, ssh, askpass,
credential helpers, gpg, proxy) and from drivers that `.gitattributes` names (filters, diff
and merge drivers). The argv policy (git.py) stops a git-only key from *writing* such config;
this module makes sure config written some other way (a shell key, a planted
`.git/config`, the server's own ~/.gitconfig) cannot make a git-only key's git run a program:

- system and global config are not read at all (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL);
- every program-naming key git lets the command line override is overridden through
  GIT_CONFIG_COUNT/KEY/VALUE (which beats the repository's config and reaches git's own child
  processes), and where git prefers an environment variable, that variable is set;
- what cannot be overridden by name, because the repository chooses the name (filter.<x>.clean,
  diff.<x>.textconv, merge.<x>.driver, …), is looked for in the repository's effective config
  before the command runs (`unsafe_repo_config`), and the command is refused if it is there.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from rdev.domain.git_checks import NETWORK_SCHEMES

DISABLED_PROGRAM = "/dev/null/rdev-disabled"  # can never exist: /dev/null is not a directory
SSH_COMMAND = "ssh -o BatchMode=yes"

# key -> value, applied above the repository's config
CONFIG_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("core.askPass", ""),
    ("core.sshCommand", SSH_COMMAND),
    ("core.attributesFile", "/dev/null"),
    ("credential.helper", ""),  # an empty helper empties the list, URL-specific ones too
    ("gpg.program", DISABLED_PROGRAM),
    ("gpg.openpgp.program", DISABLED_PROGRAM),
    ("gpg.x509.program", DISABLED_PROGRAM),
    ("gpg.ssh.program", DISABLED_PROGRAM),
    ("gpg.ssh.defaultKeyCommand", DISABLED_PROGRAM),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("tag.forceSignAnnotated", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("merge.verifySignatures", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("diff.ignoreSubmodules", "all"),  # status/diff would run git inside each submodule
    ("status.submoduleSummary", "false"),
    ("protocol.allow", "never"),
    *((f"protocol.{scheme}.allow", "always") for scheme in NETWORK_SCHEMES),
    ("protocol.file.allow", "never"),
    ("protocol.ext.allow", "never"),
)

# variables git reads in preference to its config
ENVIRONMENT: dict[str, str] = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",  # set but empty: git then skips core.askPass and SSH_ASKPASS
    "SSH_ASKPASS": "",
    "GIT_PAGER": "cat",  # "cat" means no pager to git
    "PAGER": "cat",
    "GIT_EDITOR": ":",  # ":" means no editor to git
    "GIT_SEQUENCE_EDITOR": ":",
    "EDITOR": ":",
    "VISUAL": ":",
    "GIT_SSH_COMMAND": SSH_COMMAND,
    "GIT_SSH_VARIANT": "ssh",
    "GIT_PROXY_COMMAND": "",  # set but empty: core.gitProxy is not consulted
    "GIT_ALLOW_PROTOCOL": ":".join(NETWORK_SCHEMES),
}


def environment(workspace: str) -> dict[str, str]:
    """The variables for one git command in `workspace` (the project's absolute workspace)."""
    env = dict(ENVIRONMENT)
    env["GIT_CONFIG_COUNT"] = str(len(CONFIG_OVERRIDES))
    for i, (key, value) in enumerate(CONFIG_OVERRIDES):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if workspace.startswith("/"):
        # git may not look above the workspace for a repository (a workspace that is not one
        # would otherwise act on an enclosing checkout, such as rdev's own)
        env["GIT_CEILING_DIRECTORIES"] = posixpath.dirname(workspace.rstrip("/")) or "/"
    return env


# `git config` listing rdev reads before each git command; entries are `SCOPE\0NAME\0`
LIST_CONFIG_ARGV = ("git", "config", "--list", "--show-scope", "--name-only", "-z")

# keys of driver sections that are safe; any other key in these sections names a program
_DRIVER_KEYS: dict[str, frozenset[str]] = {
    "filter": frozenset({"required"}),
    "diff": frozenset({"binary", "xfuncname", "funcname", "wordregex", "cachetextconv"}),
    "merge": frozenset({"name", "recursive"}),
    "trailer": frozenset({"key", "where", "ifexists", "ifmissing"}),
}
# keys refused outright: a program, or files and work trees outside the workspace
_REFUSED = frozenset({"core.worktree", "include.path"})  # diff.external: see NO_DRIVERS
_REFUSED_SECTIONS = frozenset({"includeif"})


def parse_listing(output: bytes) -> list[tuple[str, str]]:
    """(scope, name) pairs from LIST_CONFIG_ARGV's output."""
    fields = output.decode("utf-8", "replace").split("\0")
    return [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]


def unsafe_repo_config(entries: Iterable[tuple[str, str]]) -> list[str]:
    """The keys of the repository's config (not rdev's own overrides) that would make git run
    a program rdev cannot switch off by name, or reach outside the workspace."""
    bad = []
    for scope, name in entries:
        if scope == "command":
            continue
        section, _, rest = name.partition(".")
        section = section.lower()
        subsection, _, key = rest.rpartition(".")
        key = key.lower()
        refused = section in _REFUSED_SECTIONS or f"{section}.{key}" in _REFUSED
        driver = bool(subsection) and key not in _DRIVER_KEYS.get(section, {key})
        if refused or driver:
            bad.append(name)
    return sorted(set(bad))
