"""The git policy (domain/git*.py): everyday argv passes; every escape vector below is refused.

ESCAPES is the table quoted in docs/security.md: each row is an argv a `commands:git` key might
send to run another program, now or later, or to read or write outside its workspace, taken
from git's documentation and its CVE history."""

from __future__ import annotations

import pytest

from rdev.domain import git, git_env, policy
from rdev.domain.errors import CommandRejected, InvalidInput
from rdev.domain.git_specs import NO_DRIVERS

EVERYDAY: list[list[str]] = [
    ["status"], ["status", "--short", "--branch"], ["status", "--porcelain=v2", "-z"],
    ["status", "-uno"], ["diff"], ["diff", "--cached", "--stat"], ["diff", "HEAD~1", "--", "src"],
    ["diff", "main..feature", "--name-only"], ["log", "--oneline", "-5"],
    ["log", "-n", "3", "--format=%H %an %s"], ["log", "--graph", "--all", "--decorate"],
    ["log", "-p", "--follow", "--", "a.txt"], ["show", "HEAD"], ["show", "--stat", "HEAD~2"],
    ["show", "HEAD:README.md"], ["add", "-A"], ["add", "--", "a.txt", "dir/b.txt"],
    ["add", "."], ["commit", "-m", "a message; with $(shell) `chars`"],
    ["commit", "--amend", "--no-edit"], ["commit", "-a", "-m", "x"], ["commit", "-mmsg"],
    ["commit", "--message=x", "--author=A <a@b.c>"], ["branch"], ["branch", "-a", "-vv"],
    ["branch", "feature"], ["branch", "-d", "old"], ["branch", "-m", "a", "b"],
    ["branch", "--set-upstream-to=origin/main"], ["switch", "main"], ["switch", "-c", "new"],
    ["checkout", "main"], ["checkout", "-b", "topic", "origin/main"], ["checkout", "--", "f"],
    ["stash"], ["stash", "-u"], ["stash", "push", "-m", "wip"], ["stash", "list"],
    ["stash", "show", "-p", "stash@{0}"], ["stash", "pop"], ["stash", "apply", "--index"],
    ["stash", "drop"], ["stash", "branch", "b2"], ["tag"], ["tag", "v1.0"],
    ["tag", "-a", "v2", "-m", "release"], ["tag", "-d", "v1.0"], ["tag", "-l", "v*"],
    ["fetch"], ["fetch", "origin"], ["fetch", "--all", "--prune"],
    ["fetch", "https://example.com/r.git", "main"], ["pull"], ["pull", "--rebase", "origin", "main"],
    ["pull", "--ff-only"], ["push"], ["push", "-u", "origin", "main"],
    ["push", "origin", "HEAD:refs/heads/x"], ["push", "--force-with-lease=main", "origin"],
    ["push", "origin", ":old-branch"], ["push", "--tags"], ["rebase", "main"],
    ["rebase", "--onto=main", "a", "b"], ["rebase", "--continue"], ["rebase", "--abort"],
    ["merge", "feature"], ["merge", "--no-ff", "-m", "merge it", "feature"],
    ["merge", "-X", "theirs", "feature"], ["reset"], ["reset", "--hard", "HEAD~1"],
    ["reset", "--soft", "HEAD^"], ["reset", "--", "a.txt"], ["restore", "a.txt"],
    ["restore", "--staged", "a.txt"], ["restore", "--source=HEAD~1", "a.txt"], ["rm", "a.txt"],
    ["rm", "--cached", "-r", "dir"], ["mv", "a.txt", "b.txt"], ["mv", "-f", "a", "b"],
    ["rev-parse", "HEAD"], ["rev-parse", "--abbrev-ref", "HEAD"],
    ["rev-parse", "--show-toplevel"], ["ls-files"], ["ls-files", "-m", "-o", "--exclude-standard"],
    ["blame", "a.txt"], ["blame", "-L", "1,10", "--", "a.txt"], ["remote"], ["remote", "-v"],
    ["remote", "add", "origin", "https://github.com/org/repo.git"],
    ["remote", "add", "gh", "git@github.com:org/repo.git"],
    ["remote", "add", "s", "ssh://git@example.com:2222/srv/repo.git"],
    ["remote", "add", "g", "git://example.com/repo.git"],
    ["remote", "set-url", "origin", "https://example.org/r.git"],
    ["remote", "get-url", "origin"], ["remote", "remove", "origin"], ["remote", "show", "origin"],
    ["config", "user.name", "Ada Lovelace"], ["config", "user.email", "ada@example.com"],
    ["config", "--get", "user.name"], ["config", "user.name"], ["config", "--list"],
    ["config", "pull.rebase", "true"], ["config", "--unset", "user.name"],
    ["config", "branch.main.remote", "origin"], ["config", "advice.detachedHead", "false"],
    ["cherry-pick", "abc123"], ["revert", "--no-edit", "HEAD"], ["describe", "--tags"],
    ["shortlog", "-s", "-n"], ["grep", "-n", "TODO"], ["grep", "-e", "-dash"], ["init"],
    ["init", "-q", "-b", "main"],
]  # fmt: skip


@pytest.mark.parametrize("args", EVERYDAY, ids=" ".join)
def test_everyday_git_is_allowed(args: list[str]) -> None:
    argv = policy.check_git_args(args)
    assert argv[:2] == ("git", args[0])
    assert [a for a in argv if a not in NO_DRIVERS] == ["git", *args]


def test_diff_family_runs_without_external_diff_and_textconv() -> None:
    for args in (["diff"], ["log", "-p"], ["show"], ["stash", "show", "-p"]):
        argv = git.check_args(args)
        assert "--no-ext-diff" in argv and "--no-textconv" in argv
        assert argv.index("--no-ext-diff") < len(argv) - len(args) + 2  # before any `--`
    assert "--no-textconv" in git.check_args(["blame", "f"])


# (vector, argv, where it comes from)
ESCAPES: list[tuple[str, list[str], str]] = [
    ("fsmonitor", ["config", "core.fsmonitor", "sh -c 'id > ../../MARK'; false"], "finding"),
    ("sshCommand", ["config", "core.sshCommand", "sh -c id"], "finding"),
    ("pager", ["config", "core.pager", "sh -c id"], "git-config(1)"),
    ("pager.<cmd>", ["config", "pager.log", "sh -c id"], "git-config(1)"),
    ("editor", ["config", "core.editor", "sh -c id"], "git-config(1)"),
    ("sequence.editor", ["config", "sequence.editor", "sh -c id"], "git-config(1)"),
    ("diff.external", ["config", "diff.external", "/tmp/x"], "git-config(1)"),
    ("diff textconv", ["config", "diff.x.textconv", "sh -c id"], "gitattributes(5)"),
    ("diff driver", ["config", "diff.x.command", "sh -c id"], "gitattributes(5)"),
    ("filter clean", ["config", "filter.x.clean", "sh -c id"], "gitattributes(5)"),
    ("filter smudge", ["config", "filter.x.smudge", "sh -c id"], "gitattributes(5)"),
    ("filter process", ["config", "filter.x.process", "sh -c id"], "gitattributes(5)"),
    ("merge driver", ["config", "merge.x.driver", "sh -c id"], "gitattributes(5)"),
    ("alias", ["config", "alias.st", "!sh -c id"], "git-config(1)"),
    ("credential.helper", ["config", "credential.helper", "!sh -c id"], "gitcredentials(7)"),
    ("askPass", ["config", "core.askPass", "/tmp/x"], "gitcredentials(7)"),
    ("gpg.program", ["config", "gpg.program", "/tmp/x"], "git-config(1)"),
    ("ssh signing key cmd", ["config", "gpg.ssh.defaultKeyCommand", "id"], "git-config(1)"),
    ("hooksPath", ["config", "core.hooksPath", "/tmp/hooks"], "githooks(5)"),
    ("gitProxy", ["config", "core.gitProxy", "sh -c id"], "git-config(1)"),
    ("protocol.allow", ["config", "protocol.allow", "always"], "CVE-2015-7545"),
    ("protocol.ext", ["config", "protocol.ext.allow", "always"], "git-remote-ext(1)"),
    ("include.path", ["config", "include.path", "/etc/gitconfig"], "git-config(1)"),
    ("includeIf", ["config", "includeIf.gitdir:/.path", "/tmp/c"], "git-config(1)"),
    ("core.worktree", ["config", "core.worktree", "/etc"], "git-config(1)"),
    ("url insteadOf", ["config", "url.ext::sh -c id.insteadOf", "https://x"], "git-config(1)"),
    ("submodule update !", ["config", "submodule.x.update", "!sh -c id"], "CVE-2019-19604"),
    ("uploadpack hook", ["config", "uploadpack.packObjectsHook", "id"], "git-config(1)"),
    ("remote uploadpack", ["config", "remote.o.uploadpack", "sh -c id"], "git-fetch(1)"),
    ("remote vcs", ["config", "remote.o.vcs", "ext"], "gitremote-helpers(7)"),
    ("trailer cmd", ["config", "trailer.x.cmd", "id"], "git-interpret-trailers(1)"),
    ("config --global", ["config", "--global", "user.name", "x"], "finding"),
    ("config --system", ["config", "--system", "user.name", "x"], "git-config(1)"),
    ("config --file", ["config", "--file", "/tmp/c", "user.name", "x"], "finding"),
    ("config --file=", ["config", "--file=../c", "user.name", "x"], "finding"),
    ("config -f", ["config", "-f", "/tmp/c", "user.name", "x"], "git-config(1)"),
    ("config --worktree", ["config", "--worktree", "user.name", "x"], "git-config(1)"),
    ("config --blob", ["config", "--blob=HEAD:x", "--list"], "git-config(1)"),
    ("config --edit", ["config", "--edit"], "git-config(1)"),
    ("config --includes", ["config", "--includes", "--list"], "git-config(1)"),
    ("config name newline", ["config", "user.name", "a\n[core]\nfsmonitor=x"], "CVE-2023-29007"),
    ("-c on command line", ["-c", "core.pager=sh -c id", "log"], "git(1)"),
    ("-c after subcommand", ["log", "-c", "core.pager=id"], "git(1)"),
    ("--config-env", ["--config-env=core.pager=X", "log"], "git(1)"),
    ("-C", ["-C", "/", "status"], "finding"),
    ("--git-dir", ["--git-dir=/tmp/r/.git", "status"], "git(1)"),
    ("--work-tree", ["--work-tree=/", "status"], "git(1)"),
    ("--exec-path", ["--exec-path=/tmp", "status"], "git(1)"),
    ("--upload-pack", ["fetch", "--upload-pack=sh -c id", "origin"], "finding"),
    ("--upload-pack abbreviated", ["fetch", "--upload-p=sh -c id", "origin"], "parse-options"),
    ("fetch -u", ["fetch", "-u", "sh -c id", "origin"], "git-fetch(1)"),
    ("pull --upload-pack", ["pull", "--upload-pack", "id", "origin"], "git-pull(1)"),
    ("--receive-pack", ["push", "--receive-pack=sh -c id", "origin"], "git-push(1)"),
    ("push --exec", ["push", "--exec=id", "origin"], "git-push(1)"),
    ("push --repo", ["push", "--repo=/tmp/r"], "git-push(1)"),
    ("ext:: url", ["fetch", "ext::sh -c id% >&2"], "git-remote-ext(1)"),
    ("fd:: url", ["fetch", "fd::3"], "git-remote-fd(1)"),
    ("file:// url", ["fetch", "file:///etc"], "protocol.file"),
    ("local path remote", ["remote", "add", "o", "/tmp/other"], "git-fetch(1)"),
    ("relative path remote", ["remote", "add", "o", "../other"], "git-fetch(1)"),
    ("dash host (CVE)", ["remote", "add", "o", "ssh://-oProxyCommand=id/x"], "CVE-2017-1000117"),
    ("dash url", ["fetch", "-oProxyCommand=id"], "CVE-2017-1000117"),
    ("scp dash host", ["remote", "add", "o", "-oProxyCommand=id:x"], "CVE-2017-1000117"),
    ("helper url", ["remote", "add", "o", "testgit::/tmp/x"], "gitremote-helpers(7)"),
    ("set-url to path", ["remote", "set-url", "origin", "/tmp/x"], "git-remote(1)"),
    ("--open-files-in-pager", ["grep", "--open-files-in-pager=sh -c id", "x"], "finding"),
    ("grep -O", ["grep", "-Osh", "x"], "git-grep(1)"),
    ("grep -f file", ["grep", "-f", "/etc/passwd"], "git-grep(1)"),
    ("grep --no-index", ["grep", "--no-index", "root", "/etc/passwd"], "git-grep(1)"),
    ("diff --output", ["diff", "--output=/tmp/x"], "finding"),
    ("log --output", ["log", "--output=../x"], "git-log(1)"),
    ("diff --no-index", ["diff", "--no-index", "/etc/passwd", "a"], "git-diff(1)"),
    ("diff --ext-diff", ["diff", "--ext-diff"], "git-diff(1)"),
    ("diff --textconv", ["diff", "--textconv"], "git-diff(1)"),
    ("log --show-signature", ["log", "--show-signature"], "gpg"),
    ("log %G format", ["log", "--format=%G?"], "gpg"),
    ("init DIR", ["init", "/tmp/x"], "finding"),
    ("init rel DIR", ["init", "sub"], "finding"),
    ("init --template", ["init", "--template=/tmp/t"], "git-init(1)"),
    ("init --separate-git-dir", ["init", "--separate-git-dir=/tmp/g"], "git-init(1)"),
    ("clone", ["clone", "https://x/r.git"], "git-clone(1)"),
    ("clone --recurse", ["clone", "--recurse-submodules", "https://x/r"], "CVE-2024-32002"),
    ("clone -u", ["clone", "-u", "sh -c id", "https://x/r"], "git-clone(1)"),
    ("worktree", ["worktree", "add", "/tmp/w"], "git-worktree(1)"),
    ("submodule", ["submodule", "update", "--init"], "CVE-2019-19604"),
    ("fetch --recurse", ["fetch", "--recurse-submodules"], "CVE-2024-32002"),
    ("pull --recurse", ["pull", "--recurse-submodules"], "CVE-2024-32002"),
    ("rebase --exec", ["rebase", "--exec", "id", "main"], "git-rebase(1)"),
    ("rebase -x", ["rebase", "-x", "id", "main"], "git-rebase(1)"),
    ("rebase -i", ["rebase", "-i", "main"], "git-rebase(1)"),
    ("merge strategy", ["merge", "-s", "evil", "x"], "git-merge(1): git-merge-<strategy>"),
    ("pull strategy", ["pull", "--strategy=evil"], "git-pull(1)"),
    ("commit -S", ["commit", "-S", "-m", "x"], "gpg"),
    ("commit --gpg-sign", ["commit", "--gpg-sign=key", "-m", "x"], "gpg"),
    ("commit -F", ["commit", "-F", "/etc/passwd"], "git-commit(1)"),
    ("commit --template", ["commit", "--template=/etc/passwd"], "git-commit(1)"),
    ("commit --trailer", ["commit", "--trailer", "x=y", "-m", "m"], "trailer.<x>.cmd"),
    ("commit pathspec file", ["commit", "--pathspec-from-file=/etc/x", "-m", "m"], "git-commit(1)"),
    ("add -p", ["add", "-p"], "interactive"),
    ("add -e", ["add", "-e"], "editor"),
    ("tag -s", ["tag", "-s", "v1", "-m", "x"], "gpg"),
    ("tag -v", ["tag", "-v", "v1"], "gpg"),
    ("blame --contents", ["blame", "--contents", "/etc/passwd", "f"], "git-blame(1)"),
    ("blame -S", ["blame", "-S", "/etc/revs", "f"], "git-blame(1)"),
    ("ls-files -X", ["ls-files", "-X", "/etc/passwd"], "git-ls-files(1)"),
    ("absolute path", ["add", "/etc/passwd"], "pathspec"),
    ("dotdot path", ["add", "../other/x"], "pathspec"),
    ("dotdot after --", ["diff", "--", "a/../../x"], "pathspec"),
    ("home path", ["add", "~/x"], "pathspec"),
    ("mv into dir (symlink)", ["mv", "a", "link/"], "git mv follows symlinks"),
    ("mv out", ["mv", "a", "../a"], "pathspec"),
    ("bundled short flags", ["commit", "-am", "x"], "parse-options"),
    ("unknown subcommand", ["daemon", "--export-all"], "git-daemon(1)"),
    ("filter-branch", ["filter-branch", "--tree-filter", "id"], "git-filter-branch(1)"),
    ("difftool", ["difftool", "--extcmd=id"], "git-difftool(1)"),
    ("archive --remote", ["archive", "--exec=id", "--remote=x"], "git-archive(1)"),
    ("bisect run", ["bisect", "run", "id"], "git-bisect(1)"),
    ("remote ext url via push", ["push", "ext::sh -c id"], "git-remote-ext(1)"),
    ("rev-parse --git-path", ["rev-parse", "--git-path", "x"], "git-rev-parse(1)"),
    ("stash -p", ["stash", "push", "-p"], "interactive"),
    ("remote add -f ext", ["remote", "add", "-f", "o", "ext::id"], "git-remote-ext(1)"),
    ("checkout --recurse", ["checkout", "--recurse-submodules", "x"], "CVE-2024-32002"),
]  # fmt: skip


@pytest.mark.parametrize(("vector", "args", "source"), ESCAPES, ids=[e[0] for e in ESCAPES])
def test_escape_vector_is_refused(vector: str, args: list[str], source: str) -> None:
    with pytest.raises(CommandRejected) as info:
        policy.check_git_args(args)
    assert info.value.message.startswith("git")
    assert info.value.details  # names the subcommand, option or key


def test_there_are_many_distinct_vectors() -> None:
    assert len({args[0] if args[0] != "config" else args[1] for _, args, _ in ESCAPES}) >= 40


def test_refusal_names_the_option_and_the_key() -> None:
    with pytest.raises(CommandRejected) as info:
        git.check_args(["fetch", "--upload-pack=x", "origin"])
    assert info.value.details == {"subcommand": "fetch", "option": "--upload-pack"}
    with pytest.raises(CommandRejected) as info:
        git.check_args(["config", "core.fsmonitor", "x"])
    assert info.value.details == {"subcommand": "config", "key": "core.fsmonitor"}
    with pytest.raises(CommandRejected) as info:
        git.check_args(["worktree", "list"])
    assert "worktree" in info.value.message and info.value.details["subcommand"] == "worktree"


def test_long_options_with_a_value_need_the_equals_form() -> None:
    with pytest.raises(CommandRejected, match="--onto=VALUE"):
        git.check_args(["rebase", "--onto", "main", "x"])


def test_git_needs_a_subcommand() -> None:
    with pytest.raises(InvalidInput):
        policy.check_git_args([])
    with pytest.raises(InvalidInput):
        policy.check_git_args(["status", "a\x00"])


NETWORK_URLS = [
    "https://github.com/org/repo.git", "http://10.0.0.1:8080/r", "ssh://git@host/r.git",
    "ssh://host:22/~user/r", "git://example.com/r", "git@github.com:org/r.git",
    "host.example:path/r.git", "https://[::1]:8443/r", "HTTPS://Example.com/r",
]  # fmt: skip
NOT_NETWORK_URLS = [
    "file:///etc", "/tmp/repo", "./repo", "../repo", "repo/", ".", "~/repo", "ext::sh -c id",
    "fd::0", "testgit::x", "-u", "ssh://-oProxyCommand=id/x", "ssh:///x", "ftp://h/r",
    "rsync://h/r", "ssh://-oProxyCommand=id@h/r", "https://h/r x", "https://h/\nr", "git@-o:x", "host::x", "https://",
]  # fmt: skip


@pytest.mark.parametrize("url", NETWORK_URLS)
def test_network_urls_are_allowed(url: str) -> None:
    git.check_args(["remote", "add", "origin", url])


@pytest.mark.parametrize("url", NOT_NETWORK_URLS)
def test_other_remote_urls_are_refused(url: str) -> None:
    with pytest.raises(CommandRejected):
        git.check_args(["remote", "add", "origin", url])


# repository config that is already there (written by a shell key, or planted)

UNSAFE_REPO_KEYS = [
    "filter.x.clean", "filter.lfs.smudge", "filter.X.process", "diff.x.textconv",
    "diff.x.command", "merge.x.driver", "include.path",
    "includeIf.gitdir:/x/.path", "core.worktree", "trailer.sign.cmd", "trailer.s.command",
    "Filter.Mixed Case.Clean",
]  # fmt: skip
SAFE_REPO_KEYS = [
    "core.bare", "core.fsmonitor", "core.hooksPath", "core.pager", "core.sshCommand",
    "core.editor", "credential.helper", "gpg.program", "remote.origin.url", "branch.main.merge",
    "filter.lfs.required", "diff.x.xfuncname", "diff.x.binary", "merge.x.name", "user.name",
    "alias.st", "pager.log", "submodule.s.url", "diff.external",
]  # fmt: skip


@pytest.mark.parametrize("name", UNSAFE_REPO_KEYS)
def test_repo_config_naming_a_driver_program_is_unsafe(name: str) -> None:
    assert git_env.unsafe_repo_config([("local", name)]) == [name]
    assert git_env.unsafe_repo_config([("worktree", name)]) == [name]


@pytest.mark.parametrize("name", SAFE_REPO_KEYS)
def test_repo_config_rdev_overrides_or_that_runs_nothing_is_accepted(name: str) -> None:
    assert git_env.unsafe_repo_config([("local", name)]) == []


def test_rdev_own_overrides_are_not_counted() -> None:
    assert git_env.unsafe_repo_config([("command", "include.path")]) == []


def test_listing_is_parsed_in_scope_name_pairs() -> None:
    out = b"local\0core.bare\0local\0filter.x y.clean\0command\0core.pager\0"
    assert git_env.parse_listing(out) == [
        ("local", "core.bare"), ("local", "filter.x y.clean"), ("command", "core.pager"),
    ]  # fmt: skip


def test_environment_switches_off_every_program_git_reads_from_config() -> None:
    env = git_env.environment("/srv/ws/demo")
    overrides = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    assert overrides["core.fsmonitor"] == "false"
    assert overrides["core.hooksPath"] == "/dev/null"
    assert overrides["credential.helper"] == ""
    assert overrides["gpg.program"] == git_env.DISABLED_PROGRAM
    assert overrides["protocol.file.allow"] == "never"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_EDITOR"] == ":" and env["GIT_SEQUENCE_EDITOR"] == ":"
    assert env["GIT_PAGER"] == "cat" and env["GIT_ASKPASS"] == ""
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_PROXY_COMMAND"] == ""
    assert env["GIT_ALLOW_PROTOCOL"] == "https:http:ssh:git"
    assert env["GIT_CEILING_DIRECTORIES"] == "/srv/ws"
    assert git_env.environment("/workspace")["GIT_CEILING_DIRECTORIES"] == "/"
