"""KeyService against small in-memory fakes: issuing, authenticating, the verified-key cache,
rotation, revocation and last-used bookkeeping. Time is injected, never slept."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rdev.adapters.bus.memory import InProcessBus
from rdev.domain import keys as keyfmt
from rdev.domain.errors import Forbidden, InvalidInput, NotFound
from rdev.domain.models import ApiKey, AuditEntry, Page, Scope
from rdev.ports import AuditFilter, Bus
from rdev.services.audit import SYSTEM, Actor, AuditService
from rdev.services.keys import AuthFailure, KeyService, NewKey

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeKeyStore:
    def __init__(self) -> None:
        self.rows: dict[str, ApiKey] = {}
        self.gets = 0
        self.touches: list[tuple[str, datetime]] = []

    async def add(self, key: ApiKey) -> None:
        assert key.id not in self.rows
        self.rows[key.id] = key

    async def get(self, key_id: str) -> ApiKey | None:
        self.gets += 1
        return self.rows.get(key_id)

    async def list(self) -> list[ApiKey]:
        return list(self.rows.values())

    async def set_secret_hash(self, key_id: str, secret_hash: str) -> None:
        self.rows[key_id] = replace(self.rows[key_id], secret_hash=secret_hash)

    async def revoke(self, key_id: str, at: datetime) -> None:
        self.rows[key_id] = replace(self.rows[key_id], revoked_at=at)

    async def touch(self, key_id: str, at: datetime) -> None:
        self.touches.append((key_id, at))
        self.rows[key_id] = replace(self.rows[key_id], last_used_at=at)


class FakeAuditLog:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def append(self, entry: AuditEntry) -> None:
        self.entries.append(replace(entry, id=len(self.entries) + 1))

    async def list(self, flt: AuditFilter) -> Page[AuditEntry]:
        return Page(items=list(reversed(self.entries)))


class Clocks:
    """A wall clock and a monotonic clock that only move when told to."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def store() -> FakeKeyStore:
    return FakeKeyStore()


@pytest.fixture
def audit_log() -> FakeAuditLog:
    return FakeAuditLog()


def make_service(
    store: FakeKeyStore,
    audit_log: FakeAuditLog,
    clocks: Clocks,
    bus: Bus | None = None,
    cache_seconds: float = 5.0,
) -> KeyService:
    return KeyService(
        store,
        AuditService(audit_log, clock=clocks.wall),
        bus or InProcessBus(),
        clock=clocks.wall,
        cache_seconds=cache_seconds,
        monotonic=clocks.monotonic,
    )


@pytest.fixture
def svc(store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks) -> KeyService:
    return make_service(store, audit_log, clocks)


async def issue(svc: KeyService, **fields: object) -> tuple[str, str]:
    fields.setdefault("name", "k")
    fields.setdefault("scopes", ["projects:read"])
    issued = await svc.issue(NewKey(**fields), actor=SYSTEM, by=None)  # type: ignore[arg-type]
    return issued.key.id, issued.secret


async def reason(svc: KeyService, raw: str | None) -> str:
    with pytest.raises(AuthFailure) as info:
        await svc.authenticate(raw)
    assert info.value.message == "missing or invalid API key"
    return info.value.reason


# issuing


async def test_issue_stores_only_the_hash(svc: KeyService, store: FakeKeyStore) -> None:
    key_id, raw = await issue(svc, projects=["demo"], allowed_ips=["10.0.0.0/8"])
    _, secret = keyfmt.parse_key(raw) or ("", "")
    stored = store.rows[key_id]
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored)
    assert stored.scopes == {Scope.PROJECTS_READ}
    assert stored.projects == {"demo"}
    assert stored.allowed_ips == ("10.0.0.0/8",)
    assert stored.created_at == T0


async def test_issue_is_audited(svc: KeyService, audit_log: FakeAuditLog) -> None:
    key_id, _ = await issue(svc)
    [entry] = audit_log.entries
    assert (entry.action, entry.target, entry.request_id) == ("key.create", key_id, "cli")


@pytest.mark.parametrize(
    "fields",
    [
        {"scopes": ["nope"]},
        {"scopes": []},
        {"allowed_ips": ["10.0.0.0/33"]},
        {"projects": ["../etc"]},
        {"name": " "},
        {"expires_at": T0},
        {"expires_at": T0 - timedelta(seconds=1)},
    ],
)
async def test_issue_refuses_bad_input(
    svc: KeyService, store: FakeKeyStore, fields: dict[str, object]
) -> None:
    with pytest.raises(InvalidInput):
        await issue(svc, **fields)
    assert store.rows == {}


# authentication reasons


async def test_a_good_key_authenticates(svc: KeyService) -> None:
    key_id, raw = await issue(svc)
    assert (await svc.authenticate(raw)).id == key_id


async def test_missing_key(svc: KeyService) -> None:
    assert await reason(svc, None) == "missing"
    assert await reason(svc, "") == "missing"


async def test_malformed_key_never_reaches_the_store(svc: KeyService, store: FakeKeyStore) -> None:
    for raw in ("nope", "rdev_sk_x_y", "rdev_sk_" + "a" * 65536):
        assert await reason(svc, raw) == "malformed"
    assert store.gets == 0


async def test_unknown_key(svc: KeyService) -> None:
    raw = keyfmt.format_key("a" * 12, keyfmt.new_secret())
    assert await reason(svc, raw) == "unknown"


async def test_wrong_secret(svc: KeyService) -> None:
    key_id, _ = await issue(svc)
    raw = keyfmt.format_key(key_id, keyfmt.new_secret())
    with pytest.raises(AuthFailure) as info:
        await svc.authenticate(raw)
    assert (info.value.reason, info.value.key_id) == ("wrong_secret", key_id)


async def test_expired_key(svc: KeyService, clocks: Clocks) -> None:
    _, raw = await issue(svc, expires_at=T0 + timedelta(seconds=10))
    await svc.authenticate(raw)
    clocks.advance(10)
    assert await reason(svc, raw) == "expired"


async def test_revoked_key(svc: KeyService) -> None:
    key_id, raw = await issue(svc)
    await svc.revoke(key_id, actor=SYSTEM, by=None)
    assert await reason(svc, raw) == "revoked"


async def test_failure_is_audited_with_reason_and_ip(
    svc: KeyService, audit_log: FakeAuditLog
) -> None:
    with pytest.raises(AuthFailure) as info:
        await svc.authenticate("garbage")
    await svc.record_failure(info.value, actor=Actor(client_ip="10.9.8.7", request_id="r1"))
    entry = audit_log.entries[-1]
    assert (entry.action, entry.outcome, entry.client_ip, entry.request_id) == (
        "auth.failure",
        "denied",
        "10.9.8.7",
        "r1",
    )
    assert entry.details == {"reason": "malformed"}


# authorization


async def test_authorize_checks_ip_then_scope(svc: KeyService, store: FakeKeyStore) -> None:
    key_id, _ = await issue(svc, allowed_ips=["2001:db8::/32"])
    key = store.rows[key_id]
    svc.authorize(key, Scope.PROJECTS_READ, client_ip="2001:db8::5")
    with pytest.raises(Forbidden) as info:
        svc.authorize(key, Scope.PROJECTS_READ, client_ip="::1")
    assert info.value.details == {"reason": "ip"}
    with pytest.raises(Forbidden) as info:
        svc.authorize(key, Scope.KEYS_ADMIN, client_ip="2001:db8::5")
    assert info.value.details == {"reason": "scope", "scope": "keys:admin"}


# the cache


async def test_cache_spares_the_store(svc: KeyService, store: FakeKeyStore, clocks: Clocks) -> None:
    _, raw = await issue(svc)
    await svc.authenticate(raw)
    await svc.authenticate(raw)
    assert store.gets == 1
    clocks.advance(5)
    await svc.authenticate(raw)
    assert store.gets == 2


async def test_revocation_works_at_once_on_the_same_service(svc: KeyService) -> None:
    key_id, raw = await issue(svc)
    await svc.authenticate(raw)  # now cached
    await svc.revoke(key_id, actor=SYSTEM, by=None)
    assert await reason(svc, raw) == "revoked"


async def test_revocation_reaches_another_service_at_once_over_a_shared_bus(
    store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks
) -> None:
    bus = InProcessBus()
    a = make_service(store, audit_log, clocks, bus)
    b = make_service(store, audit_log, clocks, bus)
    key_id, raw = await issue(a)
    await b.authenticate(raw)  # cached on b
    await a.revoke(key_id, actor=SYSTEM, by=None)
    assert await reason(b, raw) == "revoked"
    await bus.close()


async def test_without_a_shared_bus_revocation_reaches_another_service_within_the_cache_window(
    store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks
) -> None:
    a = make_service(store, audit_log, clocks, InProcessBus())
    b = make_service(store, audit_log, clocks, InProcessBus())
    key_id, raw = await issue(a)
    await b.authenticate(raw)
    await a.revoke(key_id, actor=SYSTEM, by=None)
    clocks.advance(4.9)
    await b.authenticate(raw)  # still the cached copy, within the window
    clocks.advance(0.1)
    assert await reason(b, raw) == "revoked"


async def test_rotation_invalidates_the_old_secret_everywhere(
    store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks
) -> None:
    bus = InProcessBus()
    a = make_service(store, audit_log, clocks, bus)
    b = make_service(store, audit_log, clocks, bus)
    key_id, old = await issue(a)
    await a.authenticate(old)
    await b.authenticate(old)
    rotated = await a.rotate(key_id, actor=SYSTEM, by=None)
    assert rotated.key.id == key_id
    assert rotated.secret != old
    for svc in (a, b):
        assert await reason(svc, old) == "wrong_secret"
        assert (await svc.authenticate(rotated.secret)).id == key_id
    assert [e.action for e in audit_log.entries] == ["key.create", "key.rotate"]


async def test_revoked_key_cannot_be_rotated(svc: KeyService) -> None:
    key_id, _ = await issue(svc)
    await svc.revoke(key_id, actor=SYSTEM, by=None)
    with pytest.raises(InvalidInput):
        await svc.rotate(key_id, actor=SYSTEM, by=None)


async def test_revoke_twice_keeps_the_first_time_and_audits_once(
    svc: KeyService, store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks
) -> None:
    key_id, _ = await issue(svc)
    await svc.revoke(key_id, actor=SYSTEM, by=None)
    clocks.advance(60)
    again = await svc.revoke(key_id, actor=SYSTEM, by=None)
    assert again.revoked_at == T0
    assert store.rows[key_id].revoked_at == T0
    assert [e.action for e in audit_log.entries].count("key.revoke") == 1


async def test_unknown_ids_are_not_found(svc: KeyService) -> None:
    for call in (lambda k: svc.get(k, by=None), lambda k: svc.revoke(k, actor=SYSTEM, by=None)):
        with pytest.raises(NotFound):
            await call("zzzzzzzzzzzz")
    with pytest.raises(NotFound):
        await svc.rotate("zzzzzzzzzzzz", actor=SYSTEM, by=None)


# last used


async def test_last_used_is_written_at_most_once_a_minute(
    svc: KeyService, store: FakeKeyStore, clocks: Clocks
) -> None:
    key_id, raw = await issue(svc)
    await svc.authenticate(raw)
    clocks.advance(30)
    await svc.authenticate(raw)
    clocks.advance(29.9)
    await svc.authenticate(raw)
    assert store.touches == [(key_id, T0)]
    clocks.advance(0.1)
    await svc.authenticate(raw)
    assert store.touches == [(key_id, T0), (key_id, T0 + timedelta(seconds=60))]
    assert store.rows[key_id].last_used_at == T0 + timedelta(seconds=60)


# administration within the caller's authority


async def test_issue_beyond_the_callers_authority_is_forbidden_and_stores_nothing(
    svc: KeyService, store: FakeKeyStore
) -> None:
    holder_id, _ = await issue(svc, scopes=["admin"], projects=["a"])
    holder = store.rows[holder_id]
    with pytest.raises(Forbidden) as info:
        await svc.issue(NewKey(name="x", scopes=["admin"]), actor=SYSTEM, by=holder)
    assert info.value.details == {"reason": "project", "project": "*"}
    assert set(store.rows) == {holder_id}
    made = await svc.issue(
        NewKey(name="y", scopes=["admin"], projects=["a"]), actor=SYSTEM, by=holder
    )
    assert made.key.projects == {"a"}


async def test_the_operator_is_unrestricted(svc: KeyService, store: FakeKeyStore) -> None:
    made = await svc.issue(NewKey(name="root", scopes=["admin"]), actor=SYSTEM, by=None)
    assert store.rows[made.key.id].scopes == {Scope.ADMIN}
    assert [k.id for k in await svc.list(by=None)] == [made.key.id]


async def test_keys_beyond_the_callers_authority_are_not_found(
    svc: KeyService, store: FakeKeyStore
) -> None:
    holder_id, _ = await issue(svc, scopes=["keys:admin", "projects:read"])
    holder = store.rows[holder_id]
    above_id, above_raw = await issue(svc, scopes=["projects:read", "audit:read"])
    below_id, _ = await issue(svc, scopes=["projects:read"], projects=["a"])
    assert {k.id for k in await svc.list(by=holder)} == {holder_id, below_id}
    for call in (
        lambda: svc.get(above_id, by=holder),
        lambda: svc.rotate(above_id, actor=SYSTEM, by=holder),
        lambda: svc.revoke(above_id, actor=SYSTEM, by=holder),
    ):
        with pytest.raises(NotFound):
            await call()
    assert (await svc.authenticate(above_raw)).id == above_id  # neither rotated nor revoked
    assert (await svc.revoke(below_id, actor=SYSTEM, by=holder)).revoked_at == T0
