"""API keys: issue, list, rotate, revoke, and verify a presented key.

Administration is bounded by the caller's own authority (`domain/authority.py`): `by` is the
calling key, and a key beyond it cannot be created (403 naming what is too much) nor seen,
rotated or revoked (404, as if it did not exist: ids and names of keys one cannot manage are
not one's business). `by=None` is the operator at the database (`rdev keys create`).

A verified key is cached for at most `cache_seconds` (≤ 5 s). Revocation and rotation drop the
entry at once on this replica and tell the others over the bus."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from rdev.domain import authority, policy
from rdev.domain import keys as keyfmt
from rdev.domain.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from rdev.domain.models import ApiKey, IssuedKey, Scope
from rdev.ports import Bus, KeyStore
from rdev.services.audit import Actor, AuditService

KEYS_TOPIC = "keys"
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class NewKey:
    name: str
    scopes: Iterable[str]
    projects: Iterable[str] = ()
    allowed_ips: Iterable[str] = ()
    expires_at: datetime | None = None
    daily_budget_usd: float | None = None  # Claude spend per UTC day (services/usage.py)
    rate_limit_rps: float | None = None


class AuthFailure(Unauthenticated):
    """Carries the private reason (for the audit log); clients only ever see the generic 401."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__("missing or invalid API key")
        self.reason = reason
        self.key_id = key_id


class KeyService:
    def __init__(
        self,
        store: KeyStore,
        audit: AuditService,
        bus: Bus,
        *,
        clock: Callable[[], datetime],
        cache_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._audit = audit
        self._bus = bus
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._touched: dict[str, datetime] = {}
        bus.subscribe(KEYS_TOPIC, self._forget)

    async def issue(self, new: NewKey, *, actor: Actor, by: ApiKey | None) -> IssuedKey:
        name = policy.check_text(new.name, field="name", limit=200)
        now = self._clock()
        if new.expires_at is not None and new.expires_at <= now:
            raise InvalidInput("expires_at must be in the future", details={"field": "expires_at"})
        projects = frozenset(policy.check_name(p, field="projects") for p in new.projects)
        secret = keyfmt.new_secret()
        key = ApiKey(
            id=keyfmt.new_key_id(),
            name=name,
            secret_hash=keyfmt.hash_secret(secret),
            scopes=policy.parse_scopes(new.scopes),
            projects=projects,
            allowed_ips=policy.parse_cidrs(new.allowed_ips),
            expires_at=new.expires_at.astimezone(UTC) if new.expires_at else None,
            created_at=now,
            created_by=actor.key_id,
            daily_budget_usd=new.daily_budget_usd,
            rate_limit_rps=policy.check_key_rate(new.rate_limit_rps),
        )
        excess = authority.excess(by, key) if by is not None else None
        if excess is not None:
            raise Forbidden(excess.message, details=excess.details)
        await self._store.add(key)
        await self._audit.record(
            "key.create", actor=actor, target=key.id, name=name, scopes=sorted(key.scopes)
        )
        return IssuedKey(key=key, secret=keyfmt.format_key(key.id, secret))

    async def list(self, *, by: ApiKey | None) -> list[ApiKey]:
        keys = await self._store.list()
        return keys if by is None else [k for k in keys if authority.covers(by, k)]

    async def get(self, key_id: str, *, by: ApiKey | None) -> ApiKey:
        key = await self._store.get(key_id)
        if key is None or (by is not None and not authority.covers(by, key)):
            raise NotFound(f"key {key_id} not found")
        return key

    async def rotate(self, key_id: str, *, actor: Actor, by: ApiKey | None) -> IssuedKey:
        key = await self.get(key_id, by=by)
        if key.revoked_at is not None:
            raise InvalidInput("a revoked key cannot be rotated", details={"field": "id"})
        secret = keyfmt.new_secret()
        key = replace(key, secret_hash=keyfmt.hash_secret(secret))
        await self._store.set_secret_hash(key_id, key.secret_hash)
        await self._invalidate(key_id)
        await self._audit.record("key.rotate", actor=actor, target=key_id)
        return IssuedKey(key=key, secret=keyfmt.format_key(key.id, secret))

    async def revoke(self, key_id: str, *, actor: Actor, by: ApiKey | None) -> ApiKey:
        key = await self.get(key_id, by=by)
        if key.revoked_at is None:
            key = replace(key, revoked_at=self._clock())
            await self._store.revoke(key_id, key.revoked_at)  # type: ignore[arg-type]
            await self._audit.record("key.revoke", actor=actor, target=key_id)
        await self._invalidate(key_id)
        return key

    async def authenticate(self, raw: str | None) -> ApiKey:
        """The key a request presents, or AuthFailure with a private reason."""
        if not raw:
            raise AuthFailure("missing")
        parsed = keyfmt.parse_key(raw)
        if parsed is None:
            raise AuthFailure("malformed")
        key_id, secret = parsed
        key = await self._lookup(key_id)
        if key is None:
            raise AuthFailure("unknown", key_id)
        if not keyfmt.secret_matches(secret, key.secret_hash):
            raise AuthFailure("wrong_secret", key_id)
        now = self._clock()
        if key.revoked_at is not None:
            raise AuthFailure("revoked", key_id)
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthFailure("expired", key_id)
        await self._maybe_touch(key.id, now)
        return key

    async def live(self, key_id: str) -> ApiKey:
        """The key with this id when it is neither revoked nor expired, else AuthFailure: for
        a credential a key made (a stream token), which stands or falls with the key."""
        key = await self._lookup(key_id)
        if key is None:
            raise AuthFailure("unknown", key_id)
        now = self._clock()
        if key.revoked_at is not None:
            raise AuthFailure("revoked", key_id)
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthFailure("expired", key_id)
        await self._maybe_touch(key.id, now)
        return key

    async def record_failure(self, failure: AuthFailure, *, actor: Actor) -> None:
        await self._audit.record(
            "auth.failure",
            actor=Actor(
                key_id=failure.key_id, client_ip=actor.client_ip, request_id=actor.request_id
            ),
            outcome="denied",
            reason=failure.reason,
        )

    @staticmethod
    def authorize(key: ApiKey, scope: Scope, *, client_ip: str | None) -> None:
        if not policy.ip_allowed(client_ip, key.allowed_ips):
            raise Forbidden("client IP is not allowed for this key", details={"reason": "ip"})
        if not key.has_scope(scope):
            raise Forbidden(
                f"this key lacks the scope {scope.value}",
                details={"reason": "scope", "scope": scope.value},
            )

    async def _lookup(self, key_id: str) -> ApiKey | None:
        hit = self._cache.get(key_id)
        if hit is not None and self._monotonic() - hit[0] < self._cache_seconds:
            return hit[1]
        key = await self._store.get(key_id)
        if key is not None and self._cache_seconds > 0:
            self._cache[key_id] = (self._monotonic(), key)
        return key

    async def _maybe_touch(self, key_id: str, now: datetime) -> None:
        last = self._touched.get(key_id)
        if last is None or now - last >= _TOUCH_EVERY:
            self._touched[key_id] = now
            await self._store.touch(key_id, now)

    async def _invalidate(self, key_id: str) -> None:
        self._cache.pop(key_id, None)
        await self._bus.publish(KEYS_TOPIC, key_id)

    def _forget(self, key_id: str) -> None:
        if key_id == "*":
            self._cache.clear()
        else:
            self._cache.pop(key_id, None)
