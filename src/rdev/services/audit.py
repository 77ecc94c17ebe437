"""Writes audit entries with who, what, when, where and which request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rdev.domain.models import AuditEntry, Page
from rdev.ports import AuditFilter, AuditLog


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
        **details: Any,
    ) -> None:
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
            )
        )

    async def list(self, flt: AuditFilter) -> Page[AuditEntry]:
        return await self._log.list(flt)
