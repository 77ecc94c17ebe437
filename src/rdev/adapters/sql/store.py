"""The SQL side alone, built from settings: what `rdev migrate` and `rdev keys` need, without
the web stack."""

from __future__ import annotations

from dataclasses import dataclass

from rdev.adapters.sql.audit import SqlAuditLog
from rdev.adapters.sql.commands import SqlCommandStore
from rdev.adapters.sql.db import Database, open_database
from rdev.adapters.sql.events import SqlEventLog
from rdev.adapters.sql.keys import SqlKeyStore
from rdev.adapters.sql.usage import SqlUsageStore
from rdev.adapters.sql.webhooks import Outbox, SqlWebhookStore
from rdev.clock import utcnow
from rdev.config import Settings


@dataclass
class Store:
    db: Database
    keys: SqlKeyStore
    audit_log: SqlAuditLog
    commands: SqlCommandStore
    events: SqlEventLog
    webhooks: SqlWebhookStore
    usage: SqlUsageStore

    async def close(self) -> None:
        await self.db.close()


def build_store(settings: Settings) -> Store:
    db = open_database(settings.db_url)
    outbox = Outbox(utcnow)
    return Store(
        db=db,
        keys=SqlKeyStore(db, outbox),
        audit_log=SqlAuditLog(db),
        commands=SqlCommandStore(db, outbox),
        events=SqlEventLog(db),
        webhooks=SqlWebhookStore(db, outbox),
        usage=SqlUsageStore(db),
    )
