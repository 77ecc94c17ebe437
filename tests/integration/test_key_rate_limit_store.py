"""A key's own `rate_limit_rps` on SQLite and PostgreSQL, and migration 0008 that added it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from rdev.adapters.sql.store import Store, build_store
from rdev.config import Settings
from rdev.domain.models import ApiKey, Scope
from tests.support import at_revision


def _key(kid: str, rps: float | None) -> ApiKey:
    return ApiKey(
        id=kid, name=kid, secret_hash="0" * 64, scopes=frozenset({Scope.PROJECTS_READ}),
        created_at=datetime.now(UTC), rate_limit_rps=rps,
    )  # fmt: skip


async def test_a_keys_rate_limit_round_trips(store: Store) -> None:
    for kid, rps in (("rlkeyslow001", 0.25), ("rlkeyfast001", 2500.0), ("rlkeydflt001", None)):
        await store.keys.add(_key(kid, rps))
        got = await store.keys.get(kid)
        assert got is not None and got.rate_limit_rps == rps
    listed = {k.id: k.rate_limit_rps for k in await store.keys.list()}
    assert listed["rlkeyslow001"] == 0.25 and listed["rlkeydflt001"] is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("own_pg_url")
    return url


async def test_migration_0008_keeps_existing_keys_on_the_default_rate(fresh_url: str) -> None:
    with at_revision(fresh_url, "0005") as conn:
        conn.execute(
            text("INSERT INTO api_keys (id, name, secret_hash, scopes, projects, allowed_ips, "
                 "created_at) VALUES ('oldkey000001', 'old', :h, '[\"projects:read\"]', '[]', "
                 "'[]', '2026-11-01 00:00:00+00')"),
            {"h": "0" * 64},
        )  # fmt: skip
    store = build_store(Settings(database_url=fresh_url))
    try:
        await store.db.migrate()
        got = await store.keys.get("oldkey000001")
        assert got is not None and got.rate_limit_rps is None and got.name == "old"
        await store.keys.add(_key("newkey000001", 3.0))
        new = await store.keys.get("newkey000001")
        assert new is not None and new.rate_limit_rps == 3.0
    finally:
        await store.close()
