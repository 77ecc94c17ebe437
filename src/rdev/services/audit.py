"""Writes audit entries with who, what, when, where and which request, and reads them within
the reader's grants: a key restricted to some projects sees the entries about those projects
and the entries of its own actions; entries about no project (key administration, other
keys' sign-in failures...) are for unrestricted keys only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rdev.domain.models import ApiKey, AuditEntry, Page
from rdev.ports import AuditFilter, AuditGrant, AuditLog


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: the key (if any), the client IP and the request id."""

    key_id: str | None = None
    client_ip: str | None = None
    request_id: str | None = None


SYSTEM = Actor(key_id=None, client_ip=None, request_id="cli")


class AuditService:
    def __init__(self, log: AuditLog, *, clock: Callable[[], datetime]) -> None:
        self._log = log
        self._clock = clock

    async def record(
        self,
        action: str,
        *,
        actor: Actor,
        target: str | None = None,
        outcome: str = "ok",
        project: str | None = None,
        **details: Any,
    ) -> None:
        """`project` is the project the entry is about (it decides who may read the entry);
        it is also kept in details, where readers found it before."""
        if project is not None:
            details = {"project": project, **details}
        await self._log.append(
            AuditEntry(
                id=None,
                at=self._clock(),
                action=action,
                actor_key_id=actor.key_id,
                target=target,
                client_ip=actor.client_ip,
                request_id=actor.request_id,
                outcome=outcome,
                details=details,
                project=project,
            )
        )

    async def list(self, flt: AuditFilter, *, by: ApiKey) -> Page[AuditEntry]:
        return await self._log.list(replace(flt, grant=grant_of(by)))


def grant_of(reader: ApiKey) -> AuditGrant | None:
    """What `reader` may see of the audit log; None is everything."""
    if not reader.projects:
        return None
    return AuditGrant(projects=reader.projects, key_id=reader.id)
