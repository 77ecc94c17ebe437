"""The SQL side alone, built from settings: what `rdev migrate` and `rdev keys` need, without
the web stack."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from rdev.adapters.sql import db
from rdev.adapters.sql.audit import SqlAuditLog
from rdev.adapters.sql.commands import SqlCommandStore
from rdev.adapters.sql.events import SqlEventLog
from rdev.adapters.sql.keys import SqlKeyStore
from rdev.config import Settings


@dataclass
class Store:
    engine: AsyncEngine
    keys: SqlKeyStore
    audit_log: SqlAuditLog
    commands: SqlCommandStore
    events: SqlEventLog

    async def close(self) -> None:
        await self.engine.dispose()


def build_store(settings: Settings) -> Store:
    engine = db.make_engine(settings.db_url)
    return Store(
        engine=engine,
        keys=SqlKeyStore(engine),
        audit_log=SqlAuditLog(engine),
        commands=SqlCommandStore(engine),
        events=SqlEventLog(engine),
    )
