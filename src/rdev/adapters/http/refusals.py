"""Audit entries for what the edge refuses: `access.denied` for every 403 and
`command.rejected` for every COMMAND_REJECTED. Both surface in one place, the error handler
(errors.py), whatever raised them: the auth dependency (scope, client IP), a service (project,
kind) or key administration (authority).

A denied caller could otherwise write rows as fast as it can send requests (a 403 for a
missing scope comes before the per-key rate limit). So entries are bounded per key (or client
IP), action and reason: `RDEV_AUDIT_REFUSALS_PER_MINUTE` a minute, counted by the shared
limiter (across replicas with Redis). Refusals beyond that are counted here and the count
rides on the next entry written for the same bucket, as `suppressed`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request

from rdev.domain import policy
from rdev.domain.errors import CommandRejected, Forbidden, InvalidInput, RdevError
from rdev.domain.models import CommandKind
from rdev.services.audit import Actor, AuditService

log = structlog.get_logger(__name__)

_MAX_BUCKETS = 10_000  # suppressed counts kept; beyond, the oldest counts are dropped
_MAX_ARGS = 16
_KINDS = {k.value for k in CommandKind}


class RefusalAudit:
    def __init__(self, audit: AuditService, allow: Callable[..., Awaitable[bool]]) -> None:
        """`allow(key, action, reason)`: whether one more entry fits this minute's allowance
        (`Limits.refusal_entry_allowed`)."""
        self._audit = audit
        self._allow = allow
        self._suppressed: dict[tuple[str, str, str], int] = {}

    async def record(self, request: Request, exc: RdevError) -> None:
        """Audit `exc` if it is a refusal; never raises (the client gets its answer anyway)."""
        try:
            if isinstance(exc, Forbidden):
                await self._denied(request, exc)
            elif isinstance(exc, CommandRejected):
                await self._rejected(request, exc)
        except Exception as e:
            log.warning("audit.refusal_failed", code=exc.code, error=type(e).__name__)

    async def _denied(self, request: Request, exc: Forbidden) -> None:
        reason = str(exc.details.get("reason", "other"))
        details = {
            **_short(exc.details), "reason": reason, "method": request.method,
            "path": policy.shorten(request.url.path, 200),
        }  # fmt: skip
        await self._write("access.denied", request, reason, details)

    async def _rejected(self, request: Request, exc: CommandRejected) -> None:
        kind = request.url.path.rsplit("/", 1)[-1]
        details = {
            **_short({k: v for k, v in exc.details.items() if k != "allowed"}),  # a fixed list
            "kind": kind if kind in _KINDS else None,
            "argv": [policy.shorten(a, 200) for a in exc.argv[:_MAX_ARGS]],
        }
        await self._write("command.rejected", request, "policy", details)

    async def _write(
        self, action: str, request: Request, reason: str, details: dict[str, Any]
    ) -> None:
        state = request.state
        key_id = getattr(state, "key_id", None)
        actor = Actor(key_id=key_id, client_ip=state.client_ip, request_id=state.request_id)
        bucket = (key_id or f"ip:{actor.client_ip}", action, reason)
        if not await self._allow(*bucket):
            self._count(bucket)
            return
        suppressed = self._suppressed.pop(bucket, 0)
        if suppressed:
            details["suppressed"] = suppressed
        await self._audit.write(
            action, actor=actor, outcome="denied", project=_project(request), details=details
        )

    def _count(self, bucket: tuple[str, str, str]) -> None:
        if bucket not in self._suppressed and len(self._suppressed) >= _MAX_BUCKETS:
            self._suppressed.pop(next(iter(self._suppressed)))
        self._suppressed[bucket] = self._suppressed.get(bucket, 0) + 1


def _project(request: Request) -> str | None:
    """A refusal is about the project its request names, if that is a well-formed name."""
    name = request.path_params.get("project_id")
    try:
        return policy.check_name(name) if isinstance(name, str) else None
    except InvalidInput:
        return None


def _short(details: dict[str, Any]) -> dict[str, Any]:
    """Details echo what the client sent (a project name in the path, a git subcommand)."""
    return {k: policy.shorten(v, 200) if isinstance(v, str) else v for k, v in details.items()}
