"""The `rdev` command: serve, migrate, and key administration straight against the database."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from rdev import logsetup
from rdev.adapters.bus.memory import InProcessBus
from rdev.adapters.sql.store import build_store
from rdev.clock import utcnow
from rdev.config import ConfigError, Settings, check_data_dir, load_settings
from rdev.domain.errors import RdevError
from rdev.services.audit import SYSTEM, AuditService
from rdev.services.keys import KeyService, NewKey

app = typer.Typer(help="rdev: a remote development API.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys straight in the database.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
err = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as e:
        err.print(f"rdev: {e}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: $PORT or 8080).")] = None,
    demo: Annotated[bool, typer.Option(help="Create the `demo` project and an admin key.")] = False,
) -> None:
    """Run the API server."""
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


def _key_service(store: Any, settings: Settings) -> KeyService:
    audit = AuditService(store.audit_log, clock=utcnow)
    return KeyService(store.keys, audit, InProcessBus(), clock=utcnow, cache_seconds=0)


def _with_keys(fn: Any) -> Any:
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
    try:
        return asyncio.run(fn())
    except RdevError as e:
        err.print(f"rdev: {e.message}", highlight=False)
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as e:
        reason = (str(getattr(e, "orig", None) or e).strip().splitlines() or [""])[0]
        err.print(f"rdev: database error: {type(e).__name__}: {reason}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
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
) -> None:
    """Create a key and print its secret once."""
    if expires is not None and expires.tzinfo is None:
        from datetime import UTC

        expires = expires.replace(tzinfo=UTC)
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
def keys_list() -> None:
    """List keys (never secrets)."""
    keys = _with_keys(lambda svc: svc.list(by=None))
    table = Table("id", "name", "scopes", "projects", "expires", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.name, ",".join(sorted(k.scopes)), ",".join(sorted(k.projects)) or "*",
            k.expires_at.isoformat() if k.expires_at else "", "yes" if k.revoked_at else "",
        )  # fmt: skip
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key."""
    _with_keys(lambda svc: svc.revoke(key_id, actor=SYSTEM, by=None))
    err.print(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(key_id: str) -> None:
    """Issue a new secret for a key; the old one stops working."""
    issued = _with_keys(lambda svc: svc.rotate(key_id, actor=SYSTEM, by=None))
    err.print(f"rotated {key_id}; the new secret is shown once:")
    print(issued.secret)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
