"""The append-only audit log in SQL: inserts only, listed newest first with an id cursor. A
reader's grant is a condition of the query itself, so a page is never cut before filtering."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, insert, or_, select

from rdev.adapters.sql.db import Database, utc
from rdev.adapters.sql.tables import audit_log
from rdev.domain.errors import InvalidInput
from rdev.domain.models import AuditEntry, Page
from rdev.ports import AuditFilter


def _row_to_entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=utc(row.at),  # type: ignore[arg-type]
        action=row.action,
        actor_key_id=row.actor_key_id,
        target=row.target,
        client_ip=row.client_ip,
        request_id=row.request_id,
        outcome=row.outcome,
        details=row.details,
        project=row.project,
    )


_INSERT = insert(audit_log)
_CURSOR = re.compile(r"[0-9]{1,18}")  # an id, within a signed 64-bit integer


def entry_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": utc(entry.at),
        "action": entry.action,
        "actor_key_id": entry.actor_key_id,
        "target": entry.target,
        "client_ip": entry.client_ip,
        "request_id": entry.request_id,
        "outcome": entry.outcome,
        "details": entry.details,
        "project": entry.project,
    }


def insert_entry(conn: Connection, entry: AuditEntry) -> None:
    """Write an entry within another store's transaction (a command and its submit entry)."""
    conn.execute(_INSERT, entry_row(entry))


class SqlAuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: AuditEntry) -> None:
        row = entry_row(entry)
        await self._db.write(lambda conn: conn.execute(_INSERT, row), one_statement=True)

    async def list(self, flt: AuditFilter) -> Page[AuditEntry]:
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(flt.limit + 1)
        if flt.action:
            q = q.where(audit_log.c.action == flt.action)
        if flt.key_id:
            q = q.where(audit_log.c.actor_key_id == flt.key_id)
        if flt.since:
            q = q.where(audit_log.c.at >= utc(flt.since))
        if flt.until:
            q = q.where(audit_log.c.at < utc(flt.until))
        if flt.grant is not None:
            q = q.where(
                or_(
                    audit_log.c.project.in_(sorted(flt.grant.projects)),
                    audit_log.c.actor_key_id == flt.grant.key_id,
                )
            )
        if flt.cursor:
            if not _CURSOR.fullmatch(flt.cursor):  # not isdigit(): it takes '²'
                raise InvalidInput("cursor is invalid", details={"field": "cursor"})
            q = q.where(audit_log.c.id < int(flt.cursor))
        rows = await self._db.read(lambda conn: list(conn.execute(q)))
        items = [_row_to_entry(r) for r in rows[: flt.limit]]
        more = len(rows) > flt.limit
        return Page(items=items, next_cursor=str(items[-1].id) if more and items else None)
