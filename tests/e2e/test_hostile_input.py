"""Hostile input never becomes a 500 (issue #8, finding 5): text that is not valid Unicode is
refused at the edge before anything is stored, validators match whole strings, event ids take
ASCII digits only, an empty Idempotency-Key is refused, and text stored before these rules
cannot break a read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from rdev.config import Settings
from rdev.domain.models import AuditEntry, Command, CommandKind, CommandStatus, Event, EventType
from rdev.domain.models import Priority as CommandPriority
from tests.support import Running, serve, wait_status

JSON = {"content-type": "application/json"}

# (method, path, raw JSON body, the field the 422 must name). Bodies are raw bytes: a JSON
# encoder would refuse to write a lone surrogate.
BAD_BODIES: list[tuple[str, str, bytes, str]] = [
    ("POST", "/projects/demo/shell", rb'{"argv":["echo","\ud800"]}', "argv.1"),
    ("POST", "/projects/demo/shell", rb'{"argv":["echo","\udfff tail"]}', "argv.1"),
    ("POST", "/projects/demo/shell", rb'{"argv":["\ud83d"]}', "argv.0"),
    ("POST", "/projects/demo/shell", b'{"argv":["echo","\xed\xa0\x80"]}', "argv.1"),  # CESU
    ("POST", "/projects/demo/shell", rb'{"argv":["echo","a\u0000b"]}', "argv.1"),
    ("POST", "/projects/demo/shell", rb'{"command":"echo \ud800"}', "command"),
    ("POST", "/projects/demo/shell", rb'{"argv":["true"],"env":{"A":"\udfff"}}', "env.A"),
    ("POST", "/projects/demo/shell", rb'{"argv":["true"],"env":{"A\ud800":"x"}}', "env"),
    ("POST", "/projects/demo/shell", rb'{"argv":["true"],"cwd":"src\udc80"}', "cwd"),
    ("POST", "/projects/demo/git", rb'{"args":["log","\ud800"]}', "args.1"),
    ("POST", "/projects/demo/git", rb'{"args":["status"],"cwd":"\u0000"}', "cwd"),
    ("POST", "/projects/demo/claude", rb'{"prompt":"hi \ud800"}', "prompt"),
    ("POST", "/projects/demo/claude", rb'{"prompt":"hi","model":"\ud800"}', "model"),
    ("POST", "/projects/demo/claude", rb'{"prompt":"hi","allowed_tools":["\udbff"]}',
     "allowed_tools.0"),
    ("POST", "/projects/demo/claude", rb'{"prompt":"hi","append_system_prompt":"\ud800"}',
     "append_system_prompt"),
    ("POST", "/projects/demo/claude", rb'{"prompt":"hi","resume_session":"\ud800"}',
     "resume_session"),
    ("POST", "/projects/demo/claude", rb'{"prompt":"hi","permission_mode":"\ud800"}',
     "permission_mode"),
    ("POST", "/keys", rb'{"name":"k\ud800","scopes":["admin"]}', "name"),
    ("POST", "/keys", rb'{"name":"k\u0000","scopes":["admin"]}', "name"),
    ("POST", "/keys", rb'{"name":"k","scopes":["admin\ud800"]}', "scopes.0"),
    ("POST", "/keys", rb'{"name":"k","scopes":["admin"],"projects":["\ud800"]}', "projects.0"),
    ("POST", "/keys", rb'{"name":"k","scopes":["admin"],"allowed_ips":["\ud800"]}',
     "allowed_ips.0"),
    ("POST", "/projects/demo/claude-config/commands", rb'{"name":"a\ud800","content":"x"}',
     "name"),
    ("POST", "/projects/demo/claude-config/commands", rb'{"name":"a","content":"\ud800"}',
     "content"),
    ("PUT", "/projects/demo/claude-config/agents/a", rb'{"content":"x\udfff"}', "content"),
]  # fmt: skip


def _fields(resp: httpx.Response) -> list[str]:
    """The fields a 422 names, in either shape: FastAPI's `fields` or a policy's `field`."""
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "VALIDATION_ERROR", error
    details = error["details"]
    return [f["field"] for f in details["fields"]] if "fields" in details else [details["field"]]


async def _nothing_was_stored(rdev: Running) -> None:
    """Every read that lists what commands and the audit log hold still answers."""
    listed = await rdev.admin.get("/projects/demo/commands")
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []
    audit = await rdev.admin.get("/audit")
    assert audit.status_code == 200, audit.text
    actions = {e["action"] for e in audit.json()["data"]}
    assert not actions & {"command.submit", "config.create", "config.update"}
    keys = (await rdev.admin.get("/keys")).json()["data"]
    assert [k["name"] for k in keys] == ["admin"]


async def _refuses_bad_bodies(rdev: Running) -> None:
    for method, path, body, field in BAD_BODIES:
        resp = await rdev.admin.request(method, path, content=body, headers=JSON)
        fields = _fields(resp)
        assert any(f == field or f.startswith(field + ".") for f in fields), (body, fields)
        assert "\\ud" not in resp.text.lower(), "the refusal does not echo the surrogate"
    await _nothing_was_stored(rdev)


async def test_text_that_is_not_valid_unicode_is_refused_before_anything_is_stored(
    rdev: Running,
) -> None:
    await _refuses_bad_bodies(rdev)


@pytest.mark.postgres
async def test_text_that_is_not_valid_unicode_is_refused_on_postgres(
    settings_factory: Callable[..., Settings], own_pg_url: str
) -> None:
    settings = settings_factory(database_url=own_pg_url)
    (settings.workspace_root / "demo").mkdir(parents=True)
    async with serve(settings) as running:
        await _refuses_bad_bodies(running)


async def test_valid_unicode_including_astral_characters_is_accepted(rdev: Running) -> None:
    body = rb'{"argv":["echo","\ud83d\ude00 caf\u00e9 \u2603"],"env":{"GREETING":"\u00e9\ud83d\ude00"}}'
    resp = await rdev.admin.post("/projects/demo/shell", content=body, headers=JSON)
    assert resp.status_code == 201, resp.text
    cmd = resp.json()["data"]
    assert cmd["argv"] == ["echo", "😀 café ☃"]
    await wait_status(rdev.admin, cmd["command_id"], "succeeded")
    out = await rdev.admin.get(f"/commands/{cmd['command_id']}/output")
    assert out.text == "😀 café ☃\n"


@pytest.mark.parametrize(
    "path",
    [
        "/projects/%00",
        "/projects/demo%00",
        "/commands/cmd_%00",
        "/commands/cmd_%ED%A0%80",
        "/commands/cmd_%FF",
        "/commands/cmd_%C0%AF/events",
        "/keys/%00",
        "/keys/%FE",
        "/projects/demo/claude-config/commands/%00",
        "/projects/demo/claude-config/commands/a%ED%B0%80",
        "/projects/demo/commands?cursor=%00",
        "/projects/demo/commands?cursor=%ED%A0%80",
        "/projects/demo/events?stream_id=cmd_%00",
        "/projects/demo/events?stream_id=cmd_%FF",
        "/audit?action=%00",
        "/audit?key_id=%00",
        "/audit?key_id=%ED%A0%80",
        "/audit?%00=1",
        "/audit?action=a%FF",
    ],
)
async def test_paths_and_queries_that_are_not_valid_unicode_are_422(
    rdev: Running, path: str
) -> None:
    assert _fields(await rdev.admin.get(path))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/projects/caf%C3%A9", 404),
        ("/commands/cmd_%F0%9F%98%80", 404),
        ("/audit?action=caf%C3%A9&cursor=", 200),
        ("/audit?action=%E2%98%83+x", 200),
        ("/projects/demo/commands?limit=5&cursor=", 200),
    ],
)
async def test_paths_and_queries_of_valid_utf8_pass_the_edge(
    rdev: Running, path: str, status: int
) -> None:
    resp = await rdev.admin.get(path)
    assert resp.status_code == status, resp.text


@pytest.mark.postgres
async def test_paths_and_queries_with_nul_are_422_on_postgres(
    settings_factory: Callable[..., Settings], own_pg_url: str
) -> None:
    settings = settings_factory(database_url=own_pg_url)
    (settings.workspace_root / "demo").mkdir(parents=True)
    async with serve(settings) as running:
        for path in ("/commands/cmd_%00", "/keys/%00", "/audit?action=%00", "/audit?key_id=%00",
                     "/projects/demo/events?stream_id=cmd_%00"):  # fmt: skip
            resp = await running.admin.get(path)
            assert resp.status_code == 422, (path, resp.text)


# Idempotency-Key


async def _git(rdev: Running, key: str | bytes) -> httpx.Response:
    return await rdev.admin.post(
        "/projects/demo/git", json={"args": ["status"]}, headers={"Idempotency-Key": key}
    )


@pytest.mark.parametrize("key", ["", "a b", "tab\tkey", "caf\xe9", "x" * 201, "\xa0", "é" * 3])
async def test_unusable_idempotency_keys_are_422_every_time(rdev: Running, key: str) -> None:
    for _ in range(2):
        resp = await _git(rdev, key.encode("latin-1"))
        assert _fields(resp) == ["Idempotency-Key"]
    await _nothing_was_stored(rdev)


@pytest.mark.parametrize(
    "key", ["k", "0", "550e8400-e29b-41d4-a716-446655440000", "A+/=_.:~!-" * 3, "x" * 200]
)
async def test_idempotency_keys_of_visible_ascii_replay_the_same_command(
    rdev: Running, key: str
) -> None:
    first = await _git(rdev, key)
    assert first.status_code == 201, first.text
    again = await _git(rdev, key)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["command_id"] == first.json()["data"]["command_id"]


# Last-Event-ID


@pytest.fixture
async def finished(rdev: Running) -> AsyncIterator[tuple[Running, str]]:
    resp = await rdev.admin.post("/projects/demo/shell", json={"argv": ["echo", "hi"]})
    assert resp.status_code == 201, resp.text
    cid: str = resp.json()["data"]["command_id"]
    await wait_status(rdev.admin, cid, "succeeded")
    yield rdev, cid


# str.isdigit() takes the superscripts (which int() then refuses); int() takes " 1", "+1",
# "1_0" and other scripts' digits (Arabic-Indic, Bengali, mathematical bold).
NOT_ASCII_DIGITS = ["", "x", "-1", "+1", " 1", "1 ", "0x1", "1_0", "1e3", "1.0", "9" * 13,
                    "²", "¹", "³", "1²", "\u0661", "\u0663\u0664", "\u09e9", "\U0001d7cf",
                    "Ⅻ", "①", "FINAL", "final\n"]  # fmt: skip


async def test_event_ids_take_ascii_digits_only_in_the_header_and_the_query(
    finished: tuple[Running, str],
) -> None:
    rdev, cid = finished
    for n in NOT_ASCII_DIGITS:
        value = f"{cid}:{n}"
        tries: list[tuple[str, dict[str, Any], dict[str, str | bytes]]] = [
            (f"/commands/{cid}/events", {"last_event_id": value}, {}),
            ("/projects/demo/events", {"stream_id": cid, "last_event_id": value}, {}),
        ]
        if n == n.strip() and all(ord(ch) < 256 for ch in n):  # what a header can carry
            header = {"Last-Event-ID": value.encode("latin-1")}
            tries.append((f"/commands/{cid}/events", {}, header))
            tries.append(("/projects/demo/events", {"stream_id": cid}, header))
        for path, params, headers in tries:
            resp = await rdev.admin.get(path, params=params, headers=headers)
            assert resp.status_code == 400, (n, path, resp.text)
            assert resp.json()["error"]["code"] == "INVALID_EVENT_ID", n


async def test_event_ids_of_ascii_digits_resume(finished: tuple[Running, str]) -> None:
    rdev, cid = finished
    for n in ("0", "1", "000001"):
        resp = await rdev.admin.get(
            f"/commands/{cid}/events", params={"last_event_id": f"{cid}:{n}"}
        )
        assert resp.status_code == 200, (n, resp.text)
        assert "event: connected" in resp.text
    # after `complete` there is nothing more: 204 tells an EventSource to stop
    done = await rdev.admin.get(f"/commands/{cid}/events", params={"last_event_id": f"{cid}:final"})
    assert done.status_code == 204, done.text


# whole-string validators


async def test_a_trailing_newline_does_not_pass_a_validator(rdev: Running) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/projects/demo/claude-config/commands", {"name": "x\n", "content": "c"}),
        ("/projects/demo/claude-config/skills", {"name": "x\n", "content": "c"}),
        ("/projects/demo/shell", {"argv": ["true"], "env": {"LD_PRELOAD\n": "/tmp/x.so"}}),
        ("/projects/demo/shell", {"argv": ["true"], "env": {"HOME\n": "/"}}),
        ("/projects/demo/claude", {"prompt": "hi", "resume_session": "abc\n"}),
        ("/projects/demo/claude", {"prompt": "hi", "model": "sonnet\n"}),
        ("/projects/demo/claude", {"prompt": "hi", "allowed_tools": ["Read\n"]}),
        ("/projects/demo/claude", {"prompt": "hi", "permission_mode": "plan\n"}),
        ("/projects/demo/git", {"args": ["status\n"]}),
    ]
    for path, body in cases:
        resp = await rdev.admin.post(path, json=body)
        assert resp.status_code in (400, 422), (body, resp.text)
        assert resp.json()["error"]["code"] in ("VALIDATION_ERROR", "COMMAND_REJECTED"), body
    got = await rdev.admin.get("/projects/demo/claude-config/commands/x%0A")
    assert got.status_code == 422, got.text
    assert not any((rdev.workspace("demo") / ".claude").rglob("*\n*"))
    await _nothing_was_stored(rdev)


# text stored before these rules


@pytest.fixture
async def on_db(settings_factory: Callable[..., Settings], db_url: str) -> AsyncIterator[Running]:
    settings = settings_factory(database_url=db_url)
    (settings.workspace_root / "demo").mkdir(parents=True)
    async with serve(settings) as running:
        yield running


async def test_text_stored_with_a_lone_surrogate_never_breaks_a_read(on_db: Running) -> None:
    """Both databases held what earlier versions let in (JSON columns store it escaped);
    reads replace it with U+FFFD."""
    rdev = on_db
    store = rdev.app.store
    now = datetime.now(UTC)
    cmd = Command(
        id="cmd_0000000000000000000bad1", project_id="demo", kind=CommandKind.SHELL,
        argv=("echo", "\ud800"), status=CommandStatus.SUCCEEDED, priority=CommandPriority.NORMAL,
        created_at=now, timeout_seconds=60, env={"A": "\udfff"},
    )  # fmt: skip
    await store.commands.add(cmd, Event(cmd.id, 1, EventType.STATUS, {"status": "queued"}))
    await store.audit_log.append(
        AuditEntry(id=None, at=now, action="command.submit", target=cmd.id,
                   details={"argv": ["echo", "\ud800"]})
    )  # fmt: skip
    for path in (f"/commands/{cmd.id}", "/projects/demo/commands", "/audit"):
        resp = await rdev.admin.get(path)
        assert resp.status_code == 200, (path, resp.text)
        assert "\ufffd" in resp.text, path
    got = (await rdev.admin.get(f"/commands/{cmd.id}")).json()["data"]
    assert got["argv"] == ["echo", "\ufffd"]
    stream = await rdev.admin.get(f"/commands/{cmd.id}/events")
    assert stream.status_code == 200
    assert "event: complete" in stream.text
