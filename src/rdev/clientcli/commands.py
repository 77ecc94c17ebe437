"""The CLI client's commands over the API: projects, run, git, claude, logs, status, cancel,
commands, and profiles of the config file. Each prints data to stdout and everything else
(progress, refusals) to stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rdev.client import Client, CommandHandle
from rdev.clientcli import profiles
from rdev.clientcli.render import OWN_FAILURE, Renderer, exit_code_of
from rdev.clientcli.session import Json, Key, Profile, Url, client, err, exit_with, follow

Detach = Annotated[bool, typer.Option("--detach", "-d", help="Print the command id and return.")]
CancelOnInterrupt = Annotated[
    bool, typer.Option("--cancel-on-interrupt", help="Ctrl-C cancels the command (default: "
                       "detach and leave it running).")
]  # fmt: skip
Cwd = Annotated[str | None, typer.Option(help="Working folder, relative to the workspace.")]
Timeout = Annotated[int | None, typer.Option("--timeout", help="Seconds before it is stopped.")]
Priority = Annotated[str, typer.Option(help="high, normal or low.")]


def _dump(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _options(cwd: str | None, timeout: int | None, priority: str) -> dict[str, Any]:
    return {"cwd": cwd, "timeout_seconds": timeout, "priority": priority}


def _start(c: Client, handle: CommandHandle, *, raw: bool, claude: bool, detach: bool,
           cancel_on_interrupt: bool) -> int:  # fmt: skip
    if detach:
        print(handle.id)
        return 0
    renderer = Renderer(raw_json=raw, claude=claude)
    return follow(c, handle, renderer, cancel_on_interrupt=cancel_on_interrupt)


def projects(
    url: Url = None, key: Key = None, profile: Profile = None, json_: Json = False
) -> None:
    """List the projects your key may see."""
    with client(url, key, profile) as c:
        found = c.projects()
    if json_:
        _dump([p.raw for p in found])
        return
    table = Table("project", "status", "commands", "description")
    for p in found:
        table.add_row(p.id, p.status, ",".join(p.allowed_commands), p.description or "")
    Console().print(table)


def run(
    project: Annotated[str, typer.Argument(help="The project.")],
    argv: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    cwd: Cwd = None, timeout: Timeout = None, priority: Priority = "normal",
    json_: Json = False, detach: Detach = False, cancel_on_interrupt: CancelOnInterrupt = False,
    url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """Run a command in a project; its stdout and stderr go to yours, its exit code is rdev's."""
    with client(url, key, profile, own_failure=OWN_FAILURE) as c:
        handle = c.run(project, argv, **_options(cwd, timeout, priority))
        code = _start(c, handle, raw=json_, claude=False, detach=detach,
                      cancel_on_interrupt=cancel_on_interrupt)  # fmt: skip
    exit_with(code)


def git(
    project: Annotated[str, typer.Argument(help="The project.")],
    args: Annotated[list[str], typer.Argument(help="git's arguments (after --).")],
    cwd: Cwd = None, timeout: Timeout = None, priority: Priority = "normal",
    json_: Json = False, detach: Detach = False, cancel_on_interrupt: CancelOnInterrupt = False,
    url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """Run git in a project."""
    with client(url, key, profile, own_failure=OWN_FAILURE) as c:
        handle = c.git(project, args, **_options(cwd, timeout, priority))
        code = _start(c, handle, raw=json_, claude=False, detach=detach,
                      cancel_on_interrupt=cancel_on_interrupt)  # fmt: skip
    exit_with(code)


def claude(
    project: Annotated[str, typer.Argument(help="The project.")],
    prompt: Annotated[str, typer.Argument(help="What to ask Claude.")],
    model: Annotated[str | None, typer.Option(help="Model name.")] = None,
    max_turns: Annotated[int | None, typer.Option(help="At most this many turns.")] = None,
    permission_mode: Annotated[str | None, typer.Option(help="Claude's permission mode.")] = None,
    resume: Annotated[str | None, typer.Option(help="A session id to continue.")] = None,
    timeout: Timeout = None, priority: Priority = "normal",
    json_: Json = False, detach: Detach = False, cancel_on_interrupt: CancelOnInterrupt = False,
    url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """Ask Claude Code to work in a project: its text, tool uses and the final cost."""
    options = {
        "model": model, "max_turns": max_turns, "permission_mode": permission_mode,
        "resume_session": resume, "timeout_seconds": timeout, "priority": priority,
    }  # fmt: skip
    with client(url, key, profile, own_failure=OWN_FAILURE) as c:
        handle = c.claude(project, prompt, **options)
        code = _start(c, handle, raw=json_, claude=True, detach=detach,
                      cancel_on_interrupt=cancel_on_interrupt)  # fmt: skip
    exit_with(code)


def logs(
    command_id: Annotated[str, typer.Argument(help="The command.")],
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends, "
                                          "stdout and stderr apart; exit with its code.")] = False,
    json_: Json = False, url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """A command's output: what is stored so far, or (-f) everything until it ends."""
    with client(url, key, profile, own_failure=OWN_FAILURE if follow_ else 1) as c:
        if not follow_:
            print(c.output(command_id), end="", flush=True)
            return
        code = follow(c, c.handle(command_id), Renderer(raw_json=json_))
    exit_with(code)


def status(
    command_id: Annotated[str, typer.Argument(help="The command.")],
    json_: Json = False, url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """A command's status, exit code, queue position, timing and cost."""
    with client(url, key, profile) as c:
        cmd = c.command(command_id)
    if json_:
        _dump(cmd.raw)
        return
    shown = {"command": cmd.command_id, "project": cmd.project, "kind": cmd.kind,
             "status": cmd.status, "exit_code": cmd.exit_code,
             "queue_position": cmd.queue_position, "duration_ms": cmd.duration_ms,
             "error": cmd.error, "total_cost_usd": cmd.total_cost_usd}  # fmt: skip
    for name, value in shown.items():
        if value is not None:
            print(f"{name}: {value}")


def cancel(
    command_id: Annotated[str, typer.Argument(help="The command.")],
    url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """Cancel a queued or running command."""
    with client(url, key, profile) as c:
        cmd = c.cancel(command_id)
    if cmd.done:
        err.print(f"rdev: {cmd.command_id} {cmd.status}", markup=False)
    else:  # a running command stops within the kill grace; `rdev status` tells when
        err.print(f"rdev: {cmd.command_id} cancel requested (now {cmd.status})", markup=False)


def commands(
    project: Annotated[str, typer.Argument(help="The project.")],
    status_: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    json_: Json = False, url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """A project's commands, newest first."""
    with client(url, key, profile) as c:
        page = c.commands(project, status=status_, limit=limit)
    if json_:
        _dump([cmd.raw for cmd in page.items])
        return
    table = Table("command", "kind", "status", "exit", "created", "argv")
    for cmd in page.items:
        code = "" if not cmd.done else str(exit_code_of(cmd.status, cmd.exit_code))
        table.add_row(cmd.command_id, cmd.kind, cmd.status, code, cmd.created_at or "",
                      " ".join(cmd.argv)[:60])  # fmt: skip
    Console(width=200).print(table)


profile_app = typer.Typer(help="Named servers and keys in the config file.", no_args_is_help=True)


@profile_app.command("set")
def profile_set(
    name: Annotated[str, typer.Argument(help="The profile's name.")],
    url: Annotated[str, typer.Option(help="Server URL.")],
    key: Annotated[str | None, typer.Option(help="API key (stored 0600).")] = None,
    default: Annotated[bool, typer.Option(help="Make it the default profile.")] = False,
) -> None:
    """Add or replace a profile."""
    try:
        path = profiles.save_profile(name, url, key, default=default)
    except (OSError, profiles.ProfileError) as e:
        err.print(f"rdev: {e}", markup=False)
        raise typer.Exit(2) from None
    err.print(f"rdev: saved profile {name} in {path}", markup=False)


@profile_app.command("list")
def profile_list() -> None:
    """The profiles (never their keys)."""
    try:
        config = profiles.load()
    except profiles.ProfileError as e:
        err.print(f"rdev: {e}", markup=False)
        raise typer.Exit(2) from None
    default = config.get("default_profile")
    for name, entry in sorted((config.get("profiles") or {}).items()):
        mark = "*" if name == default else " "
        print(f"{mark} {name}\t{entry.get('url', '')}")


def register(app: typer.Typer) -> None:
    plain: list[Callable[..., None]] = [projects, run, git, claude, logs, status, cancel, commands]
    for fn in plain:
        app.command(rich_help_panel="Client")(fn)
    app.add_typer(profile_app, name="profile", rich_help_panel="Client")
