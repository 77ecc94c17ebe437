"""The table behind the git policy (git.py): each subcommand a git-only key may run, the options
it accepts (flags, and options with a value and the check of that value) and what its positional
arguments may be; the subcommands left out and why. Everything not listed is refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rdev.domain import git_checks as c
from rdev.domain.errors import CommandRejected

Positionals = Callable[[str, list[str], list[str]], None]  # (subcommand, before --, after --)

# rdev's options after diff-family subcommands: external diff and textconv drivers are programs
NO_DRIVERS = ("--no-ext-diff", "--no-textconv")


def _any_paths(sub: str, before: list[str], after: list[str]) -> None:
    for arg in [*before, *after]:
        c.workspace_path(sub, arg)


def _no_positionals(sub: str, before: list[str], after: list[str]) -> None:
    if before or after:
        raise CommandRejected(
            f"git {sub} takes no arguments here (a directory would be outside rdev's control)",
            details={"subcommand": sub, "argument": (before + after)[0]},
        )


def _remote_then_refspecs(sub: str, before: list[str], after: list[str]) -> None:
    if after:
        raise CommandRejected(f"git {sub} takes no paths", details={"subcommand": sub})
    if before:
        c.remote(sub, before[0])
    for refspec in before[1:]:
        c.refspec(sub, refspec)


def _rename_in_place(sub: str, before: list[str], after: list[str]) -> None:
    """git mv follows a symlinked destination directory out of the workspace (`git mv f link/`
    moves f to the link's target), so a git-only key renames within one directory: give it as
    `cwd` and name the files only."""
    names = before + after
    for name in names:
        c.workspace_path(sub, name)
        if "/" in name or name in (".", ".."):
            raise CommandRejected(
                "git mv renames within one directory: pass the directory as cwd and bare "
                f"file names (got {name!r})",
                details={"subcommand": sub, "argument": name},
            )


@dataclass(frozen=True, slots=True)
class Spec:
    """One subcommand (or one action of stash/remote): its flags (no value), its options that
    take a value (name -> check), what its positionals may be, and what rdev adds."""

    flags: frozenset[str] = frozenset()
    values: Mapping[str, c.Check] = field(default_factory=dict)
    positionals: Positionals = _any_paths
    counts: bool = False  # accepts `-<n>` (log -5)
    insert: tuple[str, ...] = ()


def _spec(
    flags: str = "",
    values: Mapping[str, c.Check] | None = None,
    positionals: Positionals = _any_paths,
    *,
    counts: bool = False,
    insert: tuple[str, ...] = (),
) -> Spec:
    return Spec(frozenset(flags.split()), dict(values or {}), positionals, counts, insert)


_COLOR = {"--color": c.choice("always", "never", "auto")}
_DIFF_FLAGS = (
    "-p --patch -s --no-patch --stat --numstat --shortstat --name-only --name-status --summary "
    "--raw -w --ignore-all-space -b --ignore-space-change --ignore-blank-lines --word-diff -R "
    "--minimal --patience --histogram --no-color --color --relative -z -M --find-renames "
    "--no-renames --full-index --binary --abbrev --check --exit-code --quiet"
)
_DIFF_VALUES: dict[str, c.Check] = {
    "-U": c.number, "--unified": c.number, "--diff-filter": c.diff_filter, "--abbrev": c.number,
    "--word-diff": c.choice("color", "plain", "porcelain", "none"), "--stat": c.stat_width,
    "--diff-algorithm": c.choice("patience", "minimal", "histogram", "myers"),
    "--relative": c.path, **_COLOR,
}  # fmt: skip
_LOG_FLAGS = (
    "--oneline --graph --decorate --no-decorate --all --branches --tags --remotes --reverse "
    "--first-parent --no-merges --merges --follow --abbrev-commit --topo-order --date-order "
    "--left-right --cherry-pick --cherry-mark --boundary -i --regexp-ignore-case --all-match "
    "--pretty --source --full-history --simplify-by-decoration --walk-reflogs -g"
)
_LOG_VALUES: dict[str, c.Check] = {
    "-n": c.number, "--max-count": c.number, "--skip": c.number, "--since": c.text,
    "--until": c.text, "--after": c.text, "--before": c.text, "--author": c.text,
    "--committer": c.text, "--grep": c.text, "--format": c.pretty_format,
    "--pretty": c.pretty_format, "--date": c.date_format,
    "--decorate": c.choice("short", "full", "auto", "no"), "--since-as-filter": c.text,
    "--branches": c.rev, "--tags": c.rev, "--remotes": c.rev, "-S": c.text, "-G": c.text,
}  # fmt: skip

_STASH: dict[str, Spec] = {
    "push": _spec(
        "-u --include-untracked -a --all -k --keep-index --no-keep-index -q --quiet --staged -S",
        {"-m": c.text, "--message": c.text},
    ),
    "list": _spec(_LOG_FLAGS, _LOG_VALUES, _no_positionals),
    "show": _spec(_DIFF_FLAGS + " -u --include-untracked", _DIFF_VALUES, insert=NO_DRIVERS),
    "pop": _spec("--index -q --quiet"),
    "apply": _spec("--index -q --quiet"),
    "drop": _spec("-q --quiet"),
    "clear": _spec(positionals=_no_positionals),
    "branch": _spec(),
}

_REMOTE: dict[str, Spec] = {
    "add": _spec(
        "-f --fetch --tags --no-tags",
        {"-t": c.rev, "--track": c.rev, "-m": c.rev, "--master": c.rev},
        c.remote_add,
    ),
    "set-url": _spec("--push --add", positionals=c.remote_set_url),
    "get-url": _spec("--push --all", positionals=c.remote_names),
    "show": _spec("-n", positionals=c.remote_names),
    "remove": _spec(positionals=c.remote_names),
    "rm": _spec(positionals=c.remote_names),
    "rename": _spec("--progress --no-progress", positionals=c.remote_names),
    "prune": _spec("-n --dry-run", positionals=c.remote_names),
    "set-head": _spec("-a --auto -d --delete", positionals=c.remote_names),
}

# fmt: off
SPECS: dict[str, Spec] = {
    "status": _spec(
        "-s --short -b --branch --porcelain --long -z --ignored --show-stash --ahead-behind "
        "--no-ahead-behind --renames --no-renames -uno -unormal -uall",
        {"--porcelain": c.choice("v1", "v2"), "--untracked-files": c.choice("no", "normal", "all"),
         "--ignored": c.choice("traditional", "no", "matching"), "--column": c.text},
    ),
    "diff": _spec(
        _DIFF_FLAGS + " --cached --staged --merge-base", _DIFF_VALUES, insert=NO_DRIVERS
    ),
    "log": _spec(
        _LOG_FLAGS + " " + _DIFF_FLAGS, _LOG_VALUES | _DIFF_VALUES, counts=True, insert=NO_DRIVERS
    ),
    "show": _spec(
        _LOG_FLAGS + " " + _DIFF_FLAGS, _LOG_VALUES | _DIFF_VALUES, insert=NO_DRIVERS
    ),
    "shortlog": _spec(
        "-s --summary -n --numbered -e --email --all --no-merges",
        {"--since": c.text, "--until": c.text, "--group": c.choice("author", "committer")},
        counts=True,
    ),
    "add": _spec(
        "-A --all -u --update -N --intent-to-add -f --force -v --verbose -n --dry-run "
        "--ignore-errors --refresh --renormalize --ignore-missing --sparse --no-all",
        {"--chmod": c.choice("+x", "-x")},
    ),
    "commit": _spec(
        "-a --all --amend --no-edit --allow-empty --allow-empty-message -q --quiet -s --signoff "
        "--no-signoff -n --no-verify --reset-author --only -o --include -i --dry-run --short "
        "--porcelain --no-gpg-sign --no-status",
        {"-m": c.text, "--message": c.text, "--author": c.text, "--date": c.text,
         "--fixup": c.rev, "--squash": c.rev, "-c": c.rev, "-C": c.rev, "--reuse-message": c.rev,
         "--cleanup": c.choice("strip", "whitespace", "verbatim", "scissors", "default")},
    ),
    "branch": _spec(
        "-a --all -r --remotes -v -vv --verbose --list -l --show-current -d -D --delete -m -M "
        "--move -c -C --copy -f --force --unset-upstream --track --no-track --no-color "
        "--merged --no-merged --contains --no-contains -q --quiet",
        {"-u": c.rev, "--set-upstream-to": c.rev, "--sort": c.text, "--format": c.pretty_format,
         "--merged": c.rev, "--no-merged": c.rev, "--contains": c.rev, "--no-contains": c.rev,
         "--points-at": c.rev, "--track": c.choice("direct", "inherit"), **_COLOR},
    ),
    "switch": _spec(
        "-d --detach -f --force --discard-changes -m --merge -t --track --no-track --guess "
        "--no-guess -q --quiet",
        {"-c": c.rev, "-C": c.rev, "--create": c.rev, "--force-create": c.rev,
         "--orphan": c.rev, "--track": c.choice("direct", "inherit")},
    ),
    "checkout": _spec(
        "--detach -f --force -q --quiet -t --track --no-track -m --merge --ours --theirs "
        "--guess --no-guess",
        {"-b": c.rev, "-B": c.rev, "--orphan": c.rev, "--track": c.choice("direct", "inherit")},
    ),
    "restore": _spec(
        "-S --staged -W --worktree --ours --theirs -m --merge -q --quiet --ignore-unmerged",
        {"-s": c.rev, "--source": c.rev},
    ),
    "reset": _spec("--soft --mixed --hard --keep --merge -q --quiet -N --intent-to-add"),
    "rm": _spec("--cached -r -f --force -n --dry-run -q --quiet --ignore-unmatch --sparse"),
    "mv": _spec("-f --force -k -n --dry-run -v --verbose", positionals=_rename_in_place),
    "tag": _spec(
        "-l --list -n -a --annotate -d --delete -f --force --no-sign --contains --no-contains "
        "--merged --no-merged --column --no-column -i --ignore-case",
        {"-m": c.text, "--message": c.text, "-n": c.number, "--sort": c.text,
         "--format": c.pretty_format,
         "--contains": c.rev, "--no-contains": c.rev, "--merged": c.rev, "--no-merged": c.rev,
         "--points-at": c.rev, **_COLOR},
    ),
    "fetch": _spec(
        "--all -p --prune -P --prune-tags -t --tags -n --no-tags -q --quiet -v --verbose "
        "--dry-run -f --force --atomic --unshallow --append -a --no-recurse-submodules "
        "--progress --no-progress --keep --no-write-fetch-head --write-fetch-head",
        {"--depth": c.number, "--deepen": c.number, "--shallow-since": c.text,
         "--shallow-exclude": c.rev},
        _remote_then_refspecs,
    ),
    "pull": _spec(
        "-r --rebase --no-rebase --ff --ff-only --no-ff -q --quiet -v --verbose -t --tags "
        "--no-tags -p --prune --autostash --no-autostash --squash --no-squash --commit "
        "--no-commit --edit --no-edit --allow-unrelated-histories --stat -n --no-stat "
        "--no-recurse-submodules --progress --no-progress --all",
        {"--rebase": c.choice("true", "false", "merges"), "--depth": c.number,
         "--deepen": c.number, "--shallow-since": c.text},
        _remote_then_refspecs,
    ),
    "push": _spec(
        "--all --branches --tags --follow-tags -u --set-upstream -f --force --force-with-lease "
        "--no-force-with-lease --force-if-includes -d --delete -n --dry-run -q --quiet -v "
        "--verbose --prune --no-verify --atomic --porcelain --progress --no-progress "
        "--no-recurse-submodules --no-signed --no-thin --thin",
        {"--force-with-lease": c.lease},
        _remote_then_refspecs,
    ),
    "merge": _spec(
        "--ff --no-ff --ff-only --squash --no-squash --commit --no-commit --abort --continue "
        "--quit --no-edit -q --quiet -v --verbose --allow-unrelated-histories --autostash "
        "--no-autostash --stat -n --no-stat --no-verify --progress --no-progress "
        "--no-verify-signatures --no-gpg-sign --log --no-log",
        {"-m": c.text, "--message": c.text, "-X": c.strategy_option,
         "--strategy-option": c.strategy_option, "--log": c.number},
    ),
    "rebase": _spec(
        "--continue --abort --skip --quit --autostash --no-autostash -q --quiet -v --verbose "
        "--root --no-verify --committer-date-is-author-date --ignore-date --reset-author-date "
        "--reapply-cherry-picks --no-reapply-cherry-picks -f --force-rebase --no-ff "
        "--keep-base --stat -n --no-stat --fork-point --no-fork-point --update-refs "
        "--no-update-refs --no-gpg-sign --rebase-merges --no-rebase-merges --apply --merge",
        {"--onto": c.rev, "-X": c.strategy_option, "--strategy-option": c.strategy_option,
         "--rebase-merges": c.choice("rebase-cousins", "no-rebase-cousins")},
    ),
    "cherry-pick": _spec(
        "-n --no-commit -x -s --signoff --continue --abort --skip --quit --ff --allow-empty "
        "--allow-empty-message --keep-redundant-commits --no-edit --no-gpg-sign",
        {"-m": c.number, "--mainline": c.number, "-X": c.strategy_option,
         "--strategy-option": c.strategy_option},
    ),
    "revert": _spec(
        "-n --no-commit --no-edit -s --signoff --continue --abort --skip --quit --no-gpg-sign",
        {"-m": c.number, "--mainline": c.number, "-X": c.strategy_option,
         "--strategy-option": c.strategy_option},
    ),
    "rev-parse": _spec(
        "--abbrev-ref --short --verify -q --quiet --show-toplevel --show-prefix --show-cdup "
        "--is-inside-work-tree --is-inside-git-dir --is-bare-repository --is-shallow-repository "
        "--symbolic --symbolic-full-name --all --branches --tags --remotes --git-dir "
        "--absolute-git-dir --git-common-dir --show-object-format",
        {"--short": c.number, "--abbrev-ref": c.choice("strict", "loose")},
    ),
    "ls-files": _spec(
        "-c --cached -d --deleted -m --modified -o --others -i --ignored --exclude-standard "
        "-s --stage -u --unmerged -k --killed -z -t -v -f --full-name --directory "
        "--no-empty-directory --error-unmatch --eol --deduplicate",
        {"--abbrev": c.number, "--format": c.pretty_format},
    ),
    "blame": _spec(
        "-w -M -C -e --show-email -s -l -t --porcelain --line-porcelain -p --root -n "
        "--show-number -f --show-name --show-stats -c --incremental --minimal --progress "
        "--no-progress",
        {"-L": c.text, "--date": c.date_format, "--abbrev": c.number},
        insert=("--no-textconv",),
    ),
    "describe": _spec(
        "--tags --all --long --always --dirty --exact-match --contains --first-parent",
        {"--abbrev": c.number, "--match": c.text, "--exclude": c.text, "--candidates": c.number},
    ),
    "grep": _spec(
        "-i --ignore-case -I -n --line-number --column -w --word-regexp -v --invert-match -l "
        "--files-with-matches -L --files-without-match -c --count -E --extended-regexp -F "
        "--fixed-strings -G --basic-regexp -P --perl-regexp --cached --untracked -h -H "
        "--heading --break --full-name -q --quiet -z --null --all-match --and --or --not "
        "--no-textconv -o --only-matching -a --text -p --show-function -W --function-context "
        "--no-color",
        {"-e": c.text, "--max-depth": c.number, "-A": c.number, "-B": c.number, "-C": c.number,
         "--context": c.number, "--after-context": c.number, "--before-context": c.number,
         "-m": c.number, "--max-count": c.number, **_COLOR},
    ),
    "init": _spec(
        "-q --quiet", {"-b": c.rev, "--initial-branch": c.rev}, positionals=_no_positionals
    ),
}

# fmt: on

# not offered to a git-only key, and why (quoted in refusals; see docs/security.md)
DROPPED: dict[str, str] = {
    "worktree": "a worktree is a second checkout whose path and .git link rdev cannot confine",
    "clone": "its destination can be a symlink out of the workspace; use remote add + fetch",
    "submodule": "submodules run git in other repositories with their own config",
    "config --global/--system/--file": "only the repository's own config may be written",
}

ACTIONS: dict[str, tuple[dict[str, Spec], str | None]] = {
    # subcommand -> (actions, the action implied when the first word is an option or absent)
    "stash": (_STASH, "push"),
    "remote": (_REMOTE, None),
}
REMOTE_LIST = _spec("-v --verbose", positionals=_no_positionals)

SUBCOMMANDS: frozenset[str] = frozenset({*SPECS, *ACTIONS, "config"})
