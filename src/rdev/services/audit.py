"""Writes audit entries with who, what, when, where and which request, and reads them within
the reader's grants: a key restricted to some projects sees the entries about those projects
and the entries of its own actions; entries about no project (key administration, other
keys' sign-in failures...) are for unrestricted keys only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rdev.domain.models import ApiKey, AuditEntry, Command, Page
from rdev.ports import AuditFilter, AuditGrant, AuditLog, Finish


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
        await self.write(
            action, actor=actor, target=target, outcome=outcome, project=project, details=details
        )

    async def write(
        self,
        action: str,
        *,
        actor: Actor,
        details: dict[str, Any],
        target: str | None = None,
        outcome: str = "ok",
        project: str | None = None,
    ) -> None:
        """`record` with details as one dict, which may name a project of its own (a denied
        one, say) besides the one the entry is about."""
        await self._log.append(
            self.entry(
                action,
                actor=actor,
                details=details,
                target=target,
                outcome=outcome,
                project=project,
            )  # fmt: skip
        )

    def entry(
        self,
        action: str,
        *,
        actor: Actor,
        details: dict[str, Any],
        target: str | None = None,
        outcome: str = "ok",
        project: str | None = None,
    ) -> AuditEntry:
        """The entry `write` would write, for a store to write with the change it records."""
        if project is not None:
            details = {"project": project, **details}
        return AuditEntry(
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

    async def command_ended(self, command: Command, finish: Finish) -> None:
        """`command.end`, on behalf of the key that submitted the command. No env, no output."""
        started = command.started_at or finish.finished_at  # never started: 0, as its stream says
        await self.record(
            "command.end",
            actor=Actor(key_id=command.key_id),
            target=command.id,
            project=command.project_id,
            kind=command.kind.value,
            status=finish.status.value,
            exit_code=finish.exit_code,
            duration_ms=int((finish.finished_at - started).total_seconds() * 1000),
        )

    async def list(self, flt: AuditFilter, *, by: ApiKey) -> Page[AuditEntry]:
        return await self._log.list(replace(flt, grant=grant_of(by)))


def grant_of(reader: ApiKey) -> AuditGrant | None:
    """What `reader` may see of the audit log; None is everything."""
    if not reader.projects:
        return None
    return AuditGrant(projects=reader.projects, key_id=reader.id)
