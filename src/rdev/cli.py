"""The `rdev` command. Server side: `serve`, `migrate`, and `admin keys …` straight against the
database. Client side (rdev.clientcli, over the API): `projects`, `run`, `git`, `claude`,
`logs`, `status`, `cancel`, `commands`, `keys …`, `profile …`.

The server's modules (SQLAlchemy, the adapters, the services) are imported inside the server
commands only, so a client command starts without loading them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rdev import clientcli
from rdev.clientcli import keys as api_keys
from rdev.clientcli.profiles import server_named
from rdev.clientcli.session import Json, Key, Profile, Url

if TYPE_CHECKING:
    from rdev.config import Settings
    from rdev.services.keys import KeyService

app = typer.Typer(help="rdev: a remote development API.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Manage API keys: over the API when a server is named (--url, --profile, RDEV_URL, "
    "RDEV_PROFILE, a default profile), else (or with --db) straight in the database.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
clientcli.register(app)
err = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


def _settings(**overrides: Any) -> Settings:
    from rdev.config import ConfigError, load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as e:
        err.print(f"rdev: {e}", highlight=False)
        raise typer.Exit(2) from None


@app.command(rich_help_panel="Server")
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: $PORT or 8080).")] = None,
    demo: Annotated[bool, typer.Option(help="Create the `demo` project and an admin key.")] = False,
) -> None:
    """Run the API server."""
    from rdev import logsetup
    from rdev.config import ConfigError, check_data_dir

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = _settings(**overrides)
    try:
        check_data_dir(settings)
    except ConfigError as e:
        err.print(f"rdev: {e}", highlight=False)
        raise typer.Exit(2) from None
    logsetup.configure(fmt=settings.log_format, level=settings.log_level)
    if demo:
        _first_admin_key(settings)
    from rdev.bootstrap import run  # the web stack loads only for `serve`

    run(settings, demo=demo)


def _first_admin_key(settings: Settings) -> None:
    """On a fresh database, make an admin key and print it once."""
    from rdev.adapters.sql.store import build_store
    from rdev.services.audit import SYSTEM
    from rdev.services.keys import NewKey

    async def run() -> str | None:
        store = build_store(settings)
        try:
            await store.db.migrate()
            if await store.keys.list():
                return None
            issued = await _key_service(store, settings).issue(
                NewKey(name="demo-admin", scopes=["admin"]), actor=SYSTEM, by=None
            )
            return issued.secret
        finally:
            await store.close()

    secret = _run(run)
    if secret:
        err.print("\n[bold]Admin API key (shown once):[/bold]", highlight=False)
        print(secret, flush=True)
        err.print(
            'Try: curl -H "Authorization: Bearer <key>" '
            f"http://{settings.host}:{settings.port}/projects\n",
            highlight=False,
        )
    else:
        err.print("Keys exist already; make another with: rdev keys create --name me --scope admin")


Db = Annotated[bool, typer.Option("--db", help="Straight in the database, even if a server is "
                                  "named (RDEV_DATABASE_URL or RDEV_DATA_DIR).")]  # fmt: skip


def _over_api(db: bool, url: str | None, profile: str | None) -> bool:
    return not db and server_named(url, profile)


def _key_service(store: Any, settings: Settings) -> KeyService:
    from rdev.adapters.bus.memory import InProcessBus
    from rdev.clock import utcnow
    from rdev.services.audit import AuditService
    from rdev.services.keys import KeyService

    audit = AuditService(store.audit_log, clock=utcnow)
    return KeyService(store.keys, audit, InProcessBus(), clock=utcnow, cache_seconds=0)


def _with_keys(fn: Any) -> Any:
    from rdev.adapters.sql.store import build_store

    settings = _settings()

    async def run() -> Any:
        store = build_store(settings)
        try:
            await store.db.migrate()
            return await fn(_key_service(store, settings))
        finally:
            await store.close()

    return _run(run)


def _run(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run against the database; a refusal or an unreachable database is one line, exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from rdev.domain.errors import RdevError

    try:
        return asyncio.run(fn())
    except RdevError as e:
        err.print(f"rdev: {e.message}", highlight=False)
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as e:
        reason = (str(getattr(e, "orig", None) or e).strip().splitlines() or [""])[0]
        err.print(f"rdev: database error: {type(e).__name__}: {reason}", highlight=False)
        raise typer.Exit(1) from None


@app.command(rich_help_panel="Server")
def migrate() -> None:
    """Bring the database schema up to date."""
    from rdev.adapters.sql.store import build_store

    settings = _settings()

    async def run() -> None:
        store = build_store(settings)
        try:
            await store.db.migrate()
        finally:
            await store.close()

    _run(run)
    err.print("database is up to date")


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
    db: Db = False, url: Url = None, key: Key = None, profile: Profile = None,
) -> None:  # fmt: skip
    """Create a key and print its secret once."""
    if expires is not None and expires.tzinfo is None:
        from datetime import UTC

        expires = expires.replace(tzinfo=UTC)
    if _over_api(db, url, profile):
        return api_keys.create((url, key, profile), name, scope, projects=project or (),
                               allowed_ips=allow_ip or (),
                               expires_at=expires.isoformat() if expires else None,
                               rate_limit_rps=rate_limit_rps)  # fmt: skip
    from rdev.services.audit import SYSTEM
    from rdev.services.keys import NewKey

    new = NewKey(
        name=name,
        scopes=scope,
        projects=project or (),
        allowed_ips=allow_ip or (),
        expires_at=expires,
        rate_limit_rps=rate_limit_rps,
    )
    issued = _with_keys(lambda svc: svc.issue(new, actor=SYSTEM, by=None))
    err.print(f"created key {issued.key.id} ({name}); the secret is shown once:")
    print(issued.secret)


@keys_app.command("list")
def keys_list(
    db: Db = False, url: Url = None, key: Key = None, profile: Profile = None, json_: Json = False
) -> None:
    """List keys (never secrets)."""
    if _over_api(db, url, profile):
        return api_keys.list_((url, key, profile), as_json=json_)
    keys = _with_keys(lambda svc: svc.list(by=None))
    table = Table("id", "name", "scopes", "projects", "expires", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.name, ",".join(sorted(k.scopes)), ",".join(sorted(k.projects)) or "*",
            k.expires_at.isoformat() if k.expires_at else "", "yes" if k.revoked_at else "",
        )  # fmt: skip
    Console().print(table)


@keys_app.command("get")
def keys_get(key_id: str, url: Url = None, key: Key = None, profile: Profile = None,
             json_: Json = False) -> None:  # fmt: skip
    """One key (never its secret); over the API."""
    api_keys.get((url, key, profile), key_id, as_json=json_)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str, db: Db = False, url: Url = None, key: Key = None, profile: Profile = None
) -> None:
    """Revoke a key."""
    if _over_api(db, url, profile):
        return api_keys.revoke((url, key, profile), key_id)
    from rdev.services.audit import SYSTEM

    _with_keys(lambda svc: svc.revoke(key_id, actor=SYSTEM, by=None))
    err.print(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: str, db: Db = False, url: Url = None, key: Key = None, profile: Profile = None
) -> None:
    """Issue a new secret for a key; the old one stops working."""
    if _over_api(db, url, profile):
        return api_keys.rotate((url, key, profile), key_id)
    from rdev.services.audit import SYSTEM

    issued = _with_keys(lambda svc: svc.rotate(key_id, actor=SYSTEM, by=None))
    err.print(f"rotated {key_id}; the new secret is shown once:")
    print(issued.secret)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
