"""The `rdev` command of the client-only distribution (clients/python, `rdev-client`): the
client commands of `rdev.cli` (projects, run, git, claude, logs, status, cancel, commands,
profile) registered on their own app, without the server's `serve`, `migrate` and the database
half of `keys`. The full `rdev` (rdev.cli) registers the same commands."""

from __future__ import annotations

import sys

import typer

from rdev.clientcli.commands import register

app = typer.Typer(
    help="rdev (client only): talk to an rdev server over its API.", no_args_is_help=True
)
register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
