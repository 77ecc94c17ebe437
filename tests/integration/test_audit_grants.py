"""The audit log read within a key's grants, on SQLite and PostgreSQL: a project-restricted
reader sees entries about its projects and its own actions, nothing else, and the filter lives
in the query so cursor pages stay whole. Also the migration that gives old entries a project."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from rdev.adapters.sql import db
from rdev.bootstrap import Store, build_store
from rdev.config import Settings
from rdev.domain.models import AuditEntry
from rdev.ports import AuditFilter, AuditGrant
from tests.support import PG_ADMIN_URL

T0 = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
ME = "reader000001"
GRANT = AuditGrant(projects=frozenset({"a", "c"}), key_id=ME)


def entry(i: int, action: str, key_id: str | None, project: str | None) -> AuditEntry:
    return AuditEntry(
        id=None,
        at=T0 + timedelta(seconds=i),
        action=action,
        actor_key_id=key_id,
        target=f"t{i}",
        project=project,
        details={"n": i} | ({"project": project} if project else {}),
    )


# (action, actor, project, visible to GRANT)
MIX = [
    ("command.submit", "other0000001", "a", True),
    ("command.submit", "other0000001", "b", False),  # issue #8: B's argv seen from A
    ("key.create", "admin0000001", None, False),
    ("key.create", ME, None, True),  # its own action
    ("access.denied", ME, "b", True),  # its own, even about a project it lacks
    ("command.end", "other0000001", "c", True),
    ("command.end", None, "b", False),
    ("auth.failure", None, None, False),
    ("config.update", "admin0000001", "ab", False),  # a prefix is not a grant
    ("key.rotate", "admin0000001", None, False),
]


async def fill(store: Store, rows: list[tuple[str, str | None, str | None, bool]]) -> list[str]:
    """Append the rows; the targets of the visible ones, newest first."""
    for i, (action, key_id, project, _) in enumerate(rows):
        await store.audit_log.append(entry(i, action, key_id, project))
    return [f"t{i}" for i, row in reversed(list(enumerate(rows))) if row[3]]


async def targets(store: Store, **flt: object) -> list[str]:
    page = await store.audit_log.list(AuditFilter(**flt))  # type: ignore[arg-type]
    return [e.target or "" for e in page.items]


async def test_a_grant_sees_its_projects_and_its_own_actions_only(store: Store) -> None:
    visible = await fill(store, MIX)
    assert await targets(store, grant=GRANT) == visible
    assert len(await targets(store)) == len(MIX)  # no grant: everything


async def test_the_project_is_stored_and_read_back(store: Store) -> None:
    await store.audit_log.append(entry(0, "command.submit", "k", "a"))
    await store.audit_log.append(entry(1, "key.create", "k", None))
    page = await store.audit_log.list(AuditFilter())
    assert [e.project for e in page.items] == [None, "a"]


async def test_a_grant_combines_with_the_other_filters(store: Store) -> None:
    await fill(store, MIX)
    assert await targets(store, grant=GRANT, action="command.submit") == ["t0"]
    assert await targets(store, grant=GRANT, key_id=ME) == ["t4", "t3"]
    assert await targets(store, grant=GRANT, key_id="admin0000001") == []
    since = T0 + timedelta(seconds=4)
    assert await targets(store, grant=GRANT, since=since) == ["t5", "t4"]


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
async def test_pages_under_a_grant_have_no_gaps_or_duplicates(store: Store, limit: int) -> None:
    # mostly invisible entries, so a filter applied after paging would show short or empty pages
    rows = [MIX[i % len(MIX)] for i in range(57)]
    visible = await fill(store, rows)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.audit_log.list(AuditFilter(grant=GRANT, cursor=cursor, limit=limit))
        assert len(page.items) == limit or page.next_cursor is None
        seen.extend(e.target or "" for e in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == visible


async def test_an_empty_grant_sees_only_its_own_actions(store: Store) -> None:
    await fill(store, MIX)
    only_me = AuditGrant(projects=frozenset(), key_id=ME)
    assert await targets(store, grant=only_me) == ["t4", "t3"]


def _upgrade(url: str, revision: str) -> None:
    sync = create_engine(url)
    with sync.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(db.MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.execute(
            text("INSERT INTO audit_log (at, action, actor_key_id, outcome, details) VALUES "
                 "('2031-01-01 00:00:00', 'command.submit', 'k', 'ok', :with_project), "
                 "('2031-01-01 00:00:01', 'key.create', 'k', 'ok', :without)"),
            {"with_project": '{"project": "a", "argv": ["ls"]}', "without": '{"name": "x"}'},
        )  # fmt: skip
    sync.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema yet (the shared `store` fixture migrates to head)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    base: str = request.getfixturevalue("pg_url").rsplit("/", 1)[0]
    name = f"rdev_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: _drop(name))
    return f"{base}/{name}"


def _drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migration_gives_old_entries_their_project(empty_db: str) -> None:
    _upgrade(empty_db, "0002")
    store = build_store(Settings(database_url=empty_db))
    try:
        await store.db.migrate()
        page = await store.audit_log.list(AuditFilter())
        assert [(e.action, e.project) for e in page.items] == [
            ("key.create", None),
            ("command.submit", "a"),
        ]
        grant = AuditGrant(projects=frozenset({"a"}), key_id="someone")
        assert [e.action for e in (await store.audit_log.list(AuditFilter(grant=grant))).items] == [
            "command.submit"
        ]
    finally:
        await store.close()
