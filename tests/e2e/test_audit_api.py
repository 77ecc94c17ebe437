"""The audit log through the real server: read within the reader's grants (issue #8, finding 3),
and what it records besides administration: 403 denials (bounded per key and reason), refused
commands, every command's end. Nothing it records is a secret."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from rdev.domain import keys as keyfmt
from rdev.ports import AuditFilter
from tests.e2e.conftest import Launch
from tests.support import Running, eventually, wait_status


def key_id(raw: str) -> str:
    return keyfmt.parse_key(raw)[0]  # type: ignore[index]


async def audit(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    resp = await client.get("/audit", params={"limit": 500, **params})
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


async def all_pages(client: httpx.AsyncClient, limit: int, **flt: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": limit, **flt} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/audit", params=params)).json()
        out += body["data"]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            return out


async def shell(client: httpx.AsyncClient, project: str, *argv: str, **body: Any) -> str:
    resp = await client.post(f"/projects/{project}/shell", json={"argv": list(argv), **body})
    assert resp.status_code == 201, resp.text
    command_id: str = resp.json()["data"]["command_id"]
    return command_id


# audit within its grants


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_project_restricted_reader_sees_only_its_projects_and_itself(
    launch: Launch, request: pytest.FixtureRequest, database: str
) -> None:
    overrides = (
        {"database_url": request.getfixturevalue("pg_url")} if database == "postgres" else {}
    )
    marker = f"b-only-{uuid.uuid4().hex[:8]}"
    async with launch(projects={"a": {}, "b": {}}, **overrides) as rdev:
        # the PostgreSQL database is shared by the session: look only at this test's entries
        since = {"since": datetime.now(UTC).isoformat()}
        reader_raw = await rdev.new_key(scopes=["audit:read", "commands:shell", "commands:read"],
                                        projects=["a"])  # fmt: skip
        reader = rdev.client(reader_raw)
        me = key_id(reader_raw)
        in_b = await shell(rdev.admin, "b", "echo", marker)  # issue #8: A's reader saw this argv
        in_a = await shell(rdev.admin, "a", "echo", "a-by-admin")
        mine = await shell(reader, "a", "echo", "a-by-me")
        await rdev.admin.post("/keys", json={"name": "made", "scopes": ["projects:read"]})
        denied = await reader.post("/projects/b/shell", json={"argv": ["true"]})
        assert denied.status_code == 403
        for cid in (in_a, in_b, mine):
            await wait_status(rdev.admin, cid, "succeeded")

        everything = await audit(rdev.admin, **since)
        seen = await audit(reader, **since)
        assert marker in str(everything)
        assert marker not in str(seen)
        assert seen, "the reader sees something"
        for e in seen:
            assert e["project"] == "a" or e["key_id"] == me, e
        assert {e["target"] for e in seen if e["action"] == "command.submit"} == {in_a, mine}
        assert not [e for e in seen if e["action"] == "key.create"]
        assert [e["details"]["project"] for e in seen if e["action"] == "access.denied"] == ["b"]
        expected = [e for e in everything if e["project"] == "a" or e["key_id"] == me]
        assert seen == expected
        for limit in (1, 2, 5):  # the filter is in the query: pages stay whole
            assert await all_pages(reader, limit, **since) == seen


async def test_an_unrestricted_reader_sees_every_entry(rdev: Running) -> None:
    reader = rdev.client(await rdev.new_key(scopes=["audit:read"]))
    await rdev.admin.post("/keys", json={"name": "made", "scopes": ["projects:read"]})
    assert await audit(reader) == await audit(rdev.admin)
    assert any(e["action"] == "key.create" for e in await audit(reader))


# what else the audit records: denials


async def _entries(rdev: Running, action: str) -> list[dict[str, Any]]:
    return await audit(rdev.admin, action=action)


async def test_every_kind_of_denial_is_audited_once(launch: Launch) -> None:
    projects = {"a": {}, "git-only": {"allowed_commands": ["git"]}}
    async with launch(projects=projects) as rdev:
        narrow_raw = await rdev.new_key(scopes=["projects:read", "commands:shell"], projects=["a"])
        narrow = rdev.client(narrow_raw)
        narrow.headers["X-Request-ID"] = "req-denied"
        fenced_raw = await rdev.new_key(scopes=["projects:read"], allowed_ips=["10.0.0.0/8"])
        minter_raw = await rdev.new_key(scopes=["keys:admin"])
        cases = [
            (narrow, "GET", "/audit", None, {"reason": "scope", "scope": "audit:read"}),
            (narrow, "POST", "/projects/b/shell", {"argv": ["true"]},
             {"reason": "project", "project": "b"}),
            (rdev.admin, "POST", "/projects/git-only/shell", {"argv": ["true"]},
             {"reason": "kind", "kind": "shell"}),
            (rdev.client(fenced_raw), "GET", "/projects", None, {"reason": "ip"}),
            (rdev.client(minter_raw), "POST", "/keys", {"name": "x", "scopes": ["admin"]},
             {"reason": "scope", "scope": "admin"}),
        ]  # fmt: skip
        for client, method, path, body, details in cases:
            resp = await client.request(method, path, json=body)
            assert resp.status_code == 403, (path, resp.text)
            assert resp.json()["error"]["details"] == details
        entries = list(reversed(await _entries(rdev, "access.denied")))
        assert len(entries) == len(cases)
        ids = [key_id(narrow_raw), key_id(narrow_raw), key_id(rdev.admin_key),
               key_id(fenced_raw), key_id(minter_raw)]  # fmt: skip
        for entry, (_, method, path, _, details), kid in zip(entries, cases, ids, strict=True):
            assert entry["key_id"] == kid
            assert entry["outcome"] == "denied"
            assert entry["client_ip"] == "127.0.0.1"
            about = {"project": entry["project"]} if entry["project"] else {}
            assert entry["details"] == about | details | {"method": method, "path": path}
        assert entries[0]["request_id"] == "req-denied"
        assert [e["project"] for e in entries] == [None, "b", "git-only", None, None]


async def test_denial_entries_are_bounded_per_key_and_reason(launch: Launch) -> None:
    async with launch(audit_refusals_per_minute=3) as rdev:
        a = rdev.client(await rdev.new_key(scopes=["commands:git"], projects=["demo"]))
        b = rdev.client(await rdev.new_key(scopes=["projects:read"]))
        for _ in range(25):
            assert (await a.get("/audit")).status_code == 403
        for _ in range(5):
            assert (
                await a.post("/projects/other/git", json={"args": ["status"]})
            ).status_code == 403
        assert (await b.get("/audit")).status_code == 403
        entries = await _entries(rdev, "access.denied")
        by_reason = [(e["key_id"], e["details"]["reason"]) for e in entries]
        assert len(entries) == 3 + 3 + 1, by_reason
        assert all("suppressed" not in e["details"] for e in entries)


async def test_refused_commands_are_audited_without_env_values(rdev: Running) -> None:
    marker = f"env-value-{uuid.uuid4().hex}"
    long = "echo " + "x" * 1000 + " ; true"
    cases = [
        ("shell", {"command": "ls && rm -rf /"}, {"pattern": "&&"}, ["ls && rm -rf /"]),
        ("shell", {"command": long}, {"pattern": ";"}, None),
        ("git", {"args": ["daemon", "--export-all"]}, {"subcommand": "daemon"},
         ["git", "daemon", "--export-all"]),
        ("shell", {"argv": ["true"], "env": {"PATH": marker}},
         {"pattern": "PATH", "field": "env"}, []),
    ]  # fmt: skip
    for kind, body, _, _ in cases:
        resp = await rdev.admin.post(f"/projects/demo/{kind}", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "COMMAND_REJECTED"
    entries = list(reversed(await _entries(rdev, "command.rejected")))
    assert len(entries) == len(cases)
    for entry, (kind, _, details, argv) in zip(entries, cases, strict=True):
        assert entry["project"] == "demo"
        assert entry["key_id"] == key_id(rdev.admin_key)
        assert entry["outcome"] == "denied"
        assert entry["details"]["kind"] == kind
        assert details.items() <= entry["details"].items()
        if argv is not None:
            assert entry["details"]["argv"] == argv
    assert len(entries[1]["details"]["argv"][0]) <= 200
    assert marker not in str(await audit(rdev.admin))


# what else the audit records: every command's end


async def test_every_command_end_is_audited(launch: Launch) -> None:
    projects: dict[str, dict[str, Any]] = {"demo": {}, "solo": {"max_concurrent_commands": 1}}
    async with launch(projects) as rdev:
        raw = await rdev.new_key(scopes=["commands:shell", "commands:read", "commands:cancel"])
        client = rdev.client(raw)
        ok = await shell(client, "demo", "true")
        failed = await shell(client, "demo", "sh", "-c", "exit 3")
        slow = await shell(client, "demo", "sleep", "30", timeout_seconds=1)
        running = await shell(client, "solo", "sleep", "30")
        await wait_status(client, running, "running")
        queued = await shell(client, "solo", "true")
        for cid in (queued, running):
            assert (await client.post(f"/commands/{cid}/cancel")).status_code == 200
        expected = {
            ok: ("demo", "succeeded", 0),
            failed: ("demo", "failed", 3),
            slow: ("demo", "timed_out", None),
            running: ("solo", "cancelled", None),
            queued: ("solo", "cancelled", None),
        }
        for cid, (_, status, _) in expected.items():
            await wait_status(client, cid, status, timeout=30)

        async def ends() -> dict[str, dict[str, Any]] | None:
            found = {e["target"]: e for e in await _entries(rdev, "command.end")}
            return found if set(found) >= set(expected) else None

        found = await eventually(ends)
        assert len(found) == len(expected)
        for cid, (project, status, exit_code) in expected.items():
            e = found[cid]
            assert e["key_id"] == key_id(raw)
            assert e["project"] == project
            d = e["details"]
            assert (d["project"], d["kind"], d["status"]) == (project, "shell", status)
            if exit_code is not None:
                assert d["exit_code"] == exit_code
            assert isinstance(d["duration_ms"], int) and d["duration_ms"] >= 0
        assert found[slow]["details"]["duration_ms"] >= 1000
        assert found[queued]["details"]["duration_ms"] == 0


# nothing secret


async def test_the_audit_log_never_holds_a_secret(rdev: Running) -> None:
    """Every action that touches a secret, then the whole log, raw from the database and
    through the API, searched for each secret in every form it could take."""
    env_value = f"env-secret-{uuid.uuid4().hex}"
    made = (await rdev.admin.post("/keys", json={"name": "s", "scopes": ["commands:shell"]})).json()
    rotated = (await rdev.admin.post(f"/keys/{made['data']['id']}/rotate")).json()["data"]["key"]
    user = rdev.client(rotated)
    ok = await shell(user, "demo", "true", env={"TOKEN": env_value})
    await user.post("/projects/demo/shell", json={"argv": ["true"], "env": {"PATH": env_value}})
    await user.get("/audit")  # denied: no audit:read
    wrong = keyfmt.format_key(made["data"]["id"], keyfmt.new_secret())
    await rdev.client(wrong).get("/projects")  # a failed sign-in with a real id
    await rdev.client(made["data"]["key"]).get("/projects")  # the rotated-out secret
    await wait_status(rdev.admin, ok, "succeeded")
    await eventually(lambda: _has_end(rdev, ok))

    secrets = [made["data"]["key"], rotated, wrong, rdev.admin_key]
    needles = {env_value}
    for raw in secrets:
        secret = keyfmt.parse_key(raw)[1]  # type: ignore[index]
        needles |= {raw, secret, keyfmt.hash_secret(secret)}
    page = await rdev.app.store.audit_log.list(AuditFilter(limit=10_000))
    actions = {e.action for e in page.items}
    assert {"key.create", "key.rotate", "command.submit", "command.end", "command.rejected",
            "access.denied", "auth.failure"} <= actions  # fmt: skip
    raw_log = repr(page.items)
    api_log = (await rdev.admin.get("/audit", params={"limit": 500})).text
    for needle in needles:
        assert needle not in raw_log
        assert needle not in api_log
    assert "rdev_sk_" not in raw_log + api_log


async def _has_end(rdev: Running, command_id: str) -> bool:
    return any(e["target"] == command_id for e in await audit(rdev.admin, action="command.end"))
