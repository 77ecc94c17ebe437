"""API keys in SQL. Only the SHA-256 of a secret is ever stored."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from rdev.adapters.sql.db import Database, utc
from rdev.adapters.sql.tables import api_keys
from rdev.domain.models import ApiKey, Scope
from rdev.domain.webhooks import WebhookEvent

if TYPE_CHECKING:
    from rdev.adapters.sql.webhooks import Outbox


def _row_to_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        scopes=frozenset(Scope(s) for s in row.scopes),
        projects=frozenset(row.projects),
        allowed_ips=tuple(row.allowed_ips),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        expires_at=utc(row.expires_at),
        revoked_at=utc(row.revoked_at),
        last_used_at=utc(row.last_used_at),
        created_by=row.created_by,
        daily_budget_usd=row.daily_budget_usd,
        rate_limit_rps=row.rate_limit_rps,
    )


class SqlKeyStore:
    def __init__(self, db: Database, outbox: Outbox | None = None) -> None:
        self._db = db
        self._outbox = outbox  # webhooks: key.created, key.revoked in the same transaction

    async def add(self, key: ApiKey) -> None:
        q = insert(api_keys).values(
            id=key.id,
            name=key.name,
            secret_hash=key.secret_hash,
            scopes=sorted(key.scopes),
            projects=sorted(key.projects),
            allowed_ips=list(key.allowed_ips),
            created_at=utc(key.created_at),
            expires_at=utc(key.expires_at),
            revoked_at=utc(key.revoked_at),
            created_by=key.created_by,
            daily_budget_usd=key.daily_budget_usd,
            rate_limit_rps=key.rate_limit_rps,
        )
        outbox = self._outbox

        def add(conn: Connection) -> None:
            conn.execute(q)
            if outbox is not None:
                outbox.key(conn, WebhookEvent.KEY_CREATED, key)

        await self._db.write(add)
        if outbox is not None:
            outbox.flush()

    async def get(self, key_id: str) -> ApiKey | None:
        q = select(api_keys).where(api_keys.c.id == key_id)
        row = await self._db.read(lambda conn: conn.execute(q).first())
        return _row_to_key(row) if row else None

    async def list(self) -> list[ApiKey]:
        q = select(api_keys).order_by(api_keys.c.created_at.desc())
        return await self._db.read(lambda conn: [_row_to_key(r) for r in conn.execute(q)])

    async def _update(self, key_id: str, **values: Any) -> None:
        q = update(api_keys).where(api_keys.c.id == key_id).values(**values)
        await self._db.write(lambda conn: conn.execute(q))

    async def set_secret_hash(self, key_id: str, secret_hash: str) -> None:
        await self._update(key_id, secret_hash=secret_hash)

    async def revoke(self, key_id: str, at: datetime) -> None:
        if self._outbox is None:
            return await self._update(key_id, revoked_at=utc(at))
        outbox = self._outbox
        q = update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utc(at))

        def revoke(conn: Connection) -> None:
            if conn.execute(q).rowcount == 1:
                row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
                outbox.key(conn, WebhookEvent.KEY_REVOKED, _row_to_key(row))

        await self._db.write(revoke)
        outbox.flush()
        return None

    async def touch(self, key_id: str, at: datetime) -> None:
        await self._update(key_id, last_used_at=utc(at))
