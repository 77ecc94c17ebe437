"""Stream tokens: made by a key for one command, accepted only for that command while the key
is live and unchanged, and only until they expire. The key store and clocks are the fakes of
test_key_service; time is moved, never slept."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from rdev.domain import stream_tokens as tokens
from rdev.domain.models import Command, CommandKind, CommandStatus, Priority
from rdev.services.audit import SYSTEM
from rdev.services.keys import AuthFailure, KeyService, NewKey
from rdev.services.stream_tokens import StreamTokenService
from tests.unit.test_key_service import (
    T0,
    Clocks,
    FakeAuditLog,
    FakeKeyStore,
    audit_log,
    clocks,
    make_service,
    store,
)

__all__ = ["audit_log", "clocks", "store"]  # fixtures, imported for pytest

CMD = "cmd_0190000000000aabbccddeeff"
OTHER = "cmd_0190000000001aabbccddeeff"


def _command(cid: str = CMD) -> Command:
    return Command(
        id=cid, project_id="demo", kind=CommandKind.SHELL, argv=("true",),
        status=CommandStatus.RUNNING, priority=Priority.NORMAL, created_at=T0,
        timeout_seconds=60,
    )  # fmt: skip


class World:
    def __init__(self, store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks) -> None:
        self.clocks = clocks
        self.keys: KeyService = make_service(store, audit_log, clocks, cache_seconds=0)
        self.tokens = self.service(b"")

    def service(self, secret: bytes, ttl: int = 300) -> StreamTokenService:
        return StreamTokenService(
            self.keys, ttl_seconds=ttl, server_secret=secret, clock=self.clocks.wall
        )

    async def key(self, **fields: object) -> str:
        fields.setdefault("name", "k")
        fields.setdefault("scopes", ["commands:read"])
        issued = await self.keys.issue(NewKey(**fields), actor=SYSTEM, by=None)  # type: ignore[arg-type]
        return issued.key.id

    async def token(self, key_id: str, cid: str = CMD) -> str:
        key = await self.keys.get(key_id, by=None)
        return self.tokens.issue(key, _command(cid)).token


@pytest.fixture
def world(store: FakeKeyStore, audit_log: FakeAuditLog, clocks: Clocks) -> World:
    return World(store, audit_log, clocks)


async def _refused(world: World, token: str, cid: str = CMD) -> str:
    with pytest.raises(AuthFailure) as caught:
        await world.tokens.authenticate(token, cid)
    assert caught.value.message == "missing or invalid API key"  # the one generic 401
    return caught.value.reason


async def test_a_token_authenticates_its_key_for_its_command(world: World) -> None:
    key_id = await world.key()
    token = await world.token(key_id)
    assert token.startswith("rdev_st.") and key_id in token and CMD in token
    assert (await world.tokens.authenticate(token, CMD)).id == key_id


async def test_a_token_is_refused_for_another_command(world: World) -> None:
    token = await world.token(await world.key())
    assert await _refused(world, token, OTHER) == "token_other_command"


async def test_a_token_expires_after_its_ttl_and_a_replay_is_refused(world: World) -> None:
    key_id = await world.key()
    token = await world.token(key_id)
    world.clocks.advance(299)
    assert (await world.tokens.authenticate(token, CMD)).id == key_id
    world.clocks.advance(1)
    assert await _refused(world, token) == "token_expired"
    world.clocks.advance(3600)
    assert await _refused(world, token) == "token_expired"


async def test_a_token_never_outlives_its_key(world: World) -> None:
    key_id = await world.key(expires_at=T0 + timedelta(seconds=60))
    key = await world.keys.get(key_id, by=None)
    issued = world.tokens.issue(key, _command())
    assert issued.expires_at == T0 + timedelta(seconds=60)
    world.clocks.advance(60)
    assert await _refused(world, issued.token) == "expired"  # the key's own expiry


@pytest.mark.parametrize(
    "field", ["key_id", "command_id", "expires", "mac"], ids=lambda f: f"tampered-{f}"
)
async def test_a_tampered_token_is_refused(world: World, field: str) -> None:
    key_id = await world.key()
    other_key = await world.key(name="other")
    claims = tokens.parse(await world.token(key_id))
    assert claims is not None
    parts = {
        "key_id": claims.key_id, "command_id": claims.command_id,
        "expires": str(claims.expires), "mac": claims.mac,
    }  # fmt: skip
    parts[field] = {
        "key_id": other_key,
        "command_id": OTHER,
        "expires": str(claims.expires + 3600),
        "mac": base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode(),
    }[field]
    forged = "rdev_st." + ".".join(parts[f] for f in ("key_id", "command_id", "expires", "mac"))
    assert tokens.parse(forged) is not None  # well formed, only wrong
    assert await _refused(world, forged, parts["command_id"]) == "token_forged"


async def test_another_keys_token_does_not_become_this_keys(world: World) -> None:
    """A token names its key: it authenticates that key, never the one a client also holds."""
    mine, theirs = await world.key(name="mine"), await world.key(name="theirs")
    token = await world.token(theirs)
    assert (await world.tokens.authenticate(token, CMD)).id == theirs != mine


async def test_revoking_the_key_kills_its_tokens(world: World) -> None:
    key_id = await world.key()
    token = await world.token(key_id)
    await world.keys.revoke(key_id, actor=SYSTEM, by=None)
    assert await _refused(world, token) == "revoked"


async def test_rotating_the_key_kills_its_tokens(world: World) -> None:
    key_id = await world.key()
    token = await world.token(key_id)
    await world.keys.rotate(key_id, actor=SYSTEM, by=None)
    assert await _refused(world, token) == "token_forged"
    assert (await world.tokens.authenticate(await world.token(key_id), CMD)).id == key_id


async def test_a_deleted_key_kills_its_tokens(world: World, store: FakeKeyStore) -> None:
    key_id = await world.key()
    token = await world.token(key_id)
    del store.rows[key_id]
    assert await _refused(world, token) == "unknown"


async def test_the_server_secret_is_part_of_the_signature(world: World) -> None:
    key_id = await world.key()
    key = await world.keys.get(key_id, by=None)
    token = world.service(b"one").issue(key, _command()).token
    assert (await world.service(b"one").authenticate(token, CMD)).id == key_id
    with pytest.raises(AuthFailure) as caught:
        await world.service(b"two").authenticate(token, CMD)
    assert caught.value.reason == "token_forged"
    assert await _refused(world, token) == "token_forged"  # no secret is not any secret


@pytest.mark.parametrize(
    "raw",
    [
        "", "rdev_st", "rdev_st.", "garbage", "rdev_sk_abcdefghijkl_" + "a" * 43,
        "rdev_st.ABCDEFGHIJKL.cmd_01.1.AAAA", "rdev_st.abcdefghijkl.cmd_01.1." + "A" * 42,
        "rdev_st.abcdefghijkl.cmd_01.-1." + "A" * 43, "rdev_st.abcdefghijkl.job_01.1." + "A" * 43,
        "rdev_st.abcdefghijkl.cmd_01.1." + "A" * 43 + ".x", " rdev_st.abcdefghijkl.cmd_01.1." + "A" * 43,
        "rdev_st.abcdefghijkl.cmd_01.1." + "A" * 43 + "\n", "x" * 10_000,
    ],
)  # fmt: skip
async def test_a_malformed_token_is_refused_before_any_lookup(
    world: World, store: FakeKeyStore, raw: str
) -> None:
    before = store.gets
    assert await _refused(world, raw) == "token_malformed"
    assert store.gets == before


async def test_the_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[str, str]] = []
    real = tokens.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    token = tokens.sign(
        key_id="k" * 12, secret_hash="h", command_id=CMD, expires=1, server_secret=b""
    )
    claims = tokens.parse(token)
    assert claims is not None and tokens.signed_by(claims, secret_hash="h", server_secret=b"")
    assert compared and compared[0][1] == claims.mac
