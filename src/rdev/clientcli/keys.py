"""`rdev keys …` over the API, within the calling key's authority (scope keys:admin). The
`keys` commands themselves live in rdev.cli, which sends them here when a server is named and
to the database otherwise (see `profiles.server_named`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from rdev.client import Key as ApiKey
from rdev.clientcli.session import client, err


def create(
    target: tuple[str | None, str | None, str | None], name: str, scopes: Sequence[str], *,
    projects: Sequence[str], allowed_ips: Sequence[str], expires_at: str | None,
    rate_limit_rps: float | None = None,
) -> None:  # fmt: skip
    """Create a key and print its secret once (on stdout, alone)."""
    with client(*target) as c:
        issued = c.create_key(name, scopes, projects=projects, allowed_ips=allowed_ips,
                              expires_at=expires_at, rate_limit_rps=rate_limit_rps)  # fmt: skip
    err.print(f"created key {issued.id} ({name}); the secret is shown once:", markup=False)
    print(issued.key)


def list_(target: tuple[str | None, str | None, str | None], *, as_json: bool) -> None:
    with client(*target) as c:
        found = c.keys()
    show(found, as_json)


def get(target: tuple[str | None, str | None, str | None], key_id: str, *, as_json: bool) -> None:
    with client(*target) as c:
        found = c.key(key_id)
    show([found], as_json)


def show(found: list[ApiKey], as_json: bool) -> None:
    if as_json:
        print(json.dumps([k.raw for k in found], indent=2))
        return
    table = Table("id", "name", "scopes", "projects", "expires", "revoked")
    for k in found:
        table.add_row(k.id, k.name, ",".join(k.scopes), ",".join(k.projects) or "*",
                      k.expires_at or "", "yes" if k.revoked_at else "")  # fmt: skip
    Console(width=200).print(table)


def revoke(target: tuple[str | None, str | None, str | None], key_id: str) -> None:
    with client(*target) as c:
        c.revoke_key(key_id)
    err.print(f"revoked {key_id}", markup=False)


def rotate(target: tuple[str | None, str | None, str | None], key_id: str) -> None:
    with client(*target) as c:
        issued = c.rotate_key(key_id)
    err.print(f"rotated {key_id}; the new secret is shown once:", markup=False)
    print(issued.key)
