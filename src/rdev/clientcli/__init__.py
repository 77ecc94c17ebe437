"""The `rdev` command's client half: commands that talk to an rdev server over its API
through the SDK (`rdev.client`), with typer and rich, and nothing of the server, so `rdev run`
starts fast and works where only the client is installed. See docs/cli.md."""

from __future__ import annotations

from rdev.clientcli.commands import register

__all__ = ["register"]
