"""The `rdev` command of the client-only distribution (clients/python, `rdev-client`): the
client commands of `rdev.cli` (projects, run, git, claude, logs, status, cancel, commands,
profile) registered on their own app, and `keys …` over the API only. The server's `serve`,
`migrate` and `keys --db` stay in `rdev.cli`, which registers the same client commands."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from rdev.clientcli import keys as api_keys
from rdev.clientcli.commands import register
from rdev.clientcli.session import Json, Key, Profile, Url

app = typer.Typer(
    help="rdev (client only): talk to an rdev server over its API.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Manage API keys over the API (scope keys:admin), on the server named by --url, "
    "--profile, RDEV_URL, RDEV_PROFILE or the default profile.",
    no_args_is_help=True,
)
register(app)
app.add_typer(keys_app, name="keys", rich_help_panel="Client")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key.")],
    scope: Annotated[list[str], typer.Option(help="A scope; repeat for more.")],
    project: Annotated[list[str] | None, typer.Option(help="Grant one project; repeat.")] = None,
    allow_ip: Annotated[list[str] | None, typer.Option(help="Allowed CIDR; repeat.")] = None,
    expires: Annotated[datetime | None, typer.Option(help="Expiry (ISO 8601, UTC).")] = None,
    rate_limit_rps: Annotated[
        float | None, typer.Option(help="The key's own rate limit (requests per second).")
    ] = None,
    url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """Create a key and print its secret once."""
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    api_keys.create((url, key, profile), name, scope, projects=project or (),
                    allowed_ips=allow_ip or (),
                    expires_at=expires.isoformat() if expires else None,
                    rate_limit_rps=rate_limit_rps)  # fmt: skip


@keys_app.command("list")
def keys_list(url: Url = None, key: Key = None, profile: Profile = None,
              json_: Json = False) -> None:  # fmt: skip
    """List keys (never secrets)."""
    api_keys.list_((url, key, profile), as_json=json_)


@keys_app.command("get")
def keys_get(key_id: str, url: Url = None, key: Key = None, profile: Profile = None,
             json_: Json = False) -> None:  # fmt: skip
    """One key (never its secret)."""
    api_keys.get((url, key, profile), key_id, as_json=json_)


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: Url = None, key: Key = None, profile: Profile = None) -> None:
    """Revoke a key."""
    api_keys.revoke((url, key, profile), key_id)


@keys_app.command("rotate")
def keys_rotate(key_id: str, url: Url = None, key: Key = None, profile: Profile = None) -> None:
    """Issue a new secret for a key; the old one stops working."""
    api_keys.rotate((url, key, profile), key_id)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
