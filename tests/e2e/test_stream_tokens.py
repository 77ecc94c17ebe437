"""Stream tokens over HTTP: `POST /commands/{id}/stream-token` gives a token that opens that
command's event stream as `?token=` (what a browser's EventSource can send), and nothing else."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rdev.clock import utcnow
from rdev.config import Settings
from tests.e2e.conftest import Launch
from tests.support import (
    Running,
    eventually,
    free_port,
    make_project,
    read_sse,
    serve,
    two_replicas,
    wait_status,
)

READER = {"scopes": ["commands:read"]}


@pytest.fixture
async def fast(launch: Launch) -> AsyncIterator[Running]:
    async with launch(sse_heartbeat_seconds=0.2) as running:
        yield running


async def _shell(rdev: Running, script: str) -> str:
    resp = await rdev.admin.post("/projects/demo/shell", json={"argv": ["sh", "-c", script]})
    assert resp.status_code == 201, resp.text
    cid: str = resp.json()["data"]["command_id"]
    return cid


async def _token(rdev: Running, key: str, cid: str, **headers: str) -> str:
    resp = await rdev.client(key).post(f"/commands/{cid}/stream-token", headers=headers)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["command_id"] == cid
    assert data["events_url"] == f"/commands/{cid}/events?token={data['token']}"
    token: str = data["token"]
    return token


def _assert_401(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "UNAUTHORIZED"


async def test_a_stream_token_opens_its_commands_stream_without_any_header(fast: Running) -> None:
    cid = await _shell(fast, "for i in 1 2 3; do echo line $i; done")
    token = await _token(fast, await fast.new_key(**READER), cid)
    anonymous = fast.client()
    events = await read_sse(anonymous, f"/commands/{cid}/events?token={token}")
    assert [e.data["line"] for e in events if e.event == "output"] == ["line 1", "line 2", "line 3"]
    assert events[-1].event == "complete"
    # and it resumes, as EventSource does, with Last-Event-ID
    last = events[-2].id
    assert last is not None
    again = await read_sse(
        anonymous, f"/commands/{cid}/events?token={token}", headers={"Last-Event-ID": last}
    )
    assert [e.event for e in again] == ["connected", "complete"]
    resp = await anonymous.get(
        f"/commands/{cid}/events?token={token}", headers={"Last-Event-ID": f"{cid}:final"}
    )
    assert resp.status_code == 204


async def test_issuing_a_token_needs_commands_read_and_the_project_grant(fast: Running) -> None:
    cid = await _shell(fast, "echo hi")
    no_scope = fast.client(await fast.new_key(scopes=["projects:read"]))
    resp = await no_scope.post(f"/commands/{cid}/stream-token")
    assert resp.status_code == 403 and resp.json()["error"]["details"]["scope"] == "commands:read"
    other_project = fast.client(await fast.new_key(projects=["other"], **READER))
    resp = await other_project.post(f"/commands/{cid}/stream-token")
    assert resp.status_code == 404, resp.text
    resp = await fast.admin.post("/commands/cmd_0190000000000aabbccddeeff/stream-token")
    assert resp.status_code == 404, resp.text
    _assert_401(await fast.client().post(f"/commands/{cid}/stream-token"))


async def test_a_token_is_refused_everywhere_but_its_own_stream(fast: Running) -> None:
    cid = await _shell(fast, "echo hi")
    other = await _shell(fast, "echo other")
    await wait_status(fast.admin, other, "succeeded")
    token = await _token(fast, fast.admin_key, cid)
    anonymous = fast.client()
    for method, path in [
        ("GET", f"/commands/{other}/events?token={token}"),  # another command's stream
        ("GET", f"/projects/demo/events?stream_id={cid}&token={token}"),  # the project stream
        ("GET", f"/commands/{cid}?token={token}"),
        ("GET", f"/commands/{cid}/output?token={token}"),
        ("POST", f"/commands/{cid}/cancel?token={token}"),
        ("POST", f"/commands/{cid}/stream-token?token={token}"),
        ("GET", f"/projects?token={token}"),
        ("GET", f"/projects/demo/commands?token={token}"),
        ("GET", f"/keys?token={token}"),
        ("GET", f"/health?token={token}"),
        ("GET", f"/openapi.json?token={token}"),
        ("HEAD", f"/commands/{cid}/events?token={token}"),
        ("GET", f"/commands/{cid}?tok%65n={token}"),  # escaped, still a token
    ]:
        resp = await anonymous.request(method, path)
        assert resp.status_code == 401, (method, path, resp.status_code)
        if method != "HEAD":
            assert resp.json()["error"]["code"] == "UNAUTHORIZED"
    # ... even beside a valid key: a token is never ignored on a route that does not take it
    resp = await fast.admin.get(f"/commands/{cid}?token={token}")
    _assert_401(resp)
    # in a header instead of the query, it is not a key
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": token}):
        _assert_401(await anonymous.get(f"/commands/{cid}/events", headers=headers))
    # one credential per request: a token and a key together are refused
    _assert_401(await fast.admin.get(f"/commands/{cid}/events?token={token}"))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t[:-10],
        lambda t: "",
        lambda t: t + t,
        lambda t: re.sub(r"\.(\d+)\.", lambda m: f".{int(m[1]) + 3600}.", t),
        lambda t: t.replace("rdev_st.", "rdev_sk_"),
    ],
    ids=["mac", "short", "empty", "doubled", "later-expiry", "prefix"],
)
async def test_a_tampered_token_is_401(fast: Running, mangle: Callable[[str], str]) -> None:
    cid = await _shell(fast, "echo hi")
    token = await _token(fast, fast.admin_key, cid)
    _assert_401(await fast.client().get(f"/commands/{cid}/events?token={mangle(token)}"))


async def test_revoking_or_rotating_the_key_kills_its_tokens(fast: Running) -> None:
    cid = await _shell(fast, "echo hi")
    for action in ("revoke", "rotate"):
        key = await fast.new_key(name=action, **READER)
        key_id = key.split("_")[2]
        token = await _token(fast, key, cid)
        url = f"/commands/{cid}/events?token={token}"
        assert len(await read_sse(fast.client(), url)) >= 2
        if action == "revoke":
            resp = await fast.admin.delete(f"/keys/{key_id}")
        else:
            resp = await fast.admin.post(f"/keys/{key_id}/rotate")
        assert resp.status_code == 200, resp.text
        _assert_401(await fast.client().get(url))


async def test_the_keys_ip_allow_list_applies_to_its_tokens(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(trusted_proxies="127.0.0.1/32")
    make_project(settings.workspace_root, "demo")
    async with serve(settings) as rdev:
        cid = await _shell(rdev, "echo hi")
        key = await rdev.new_key(allowed_ips=["10.1.2.3/32"], **READER)
        token = await _token(rdev, key, cid, **{"X-Forwarded-For": "10.1.2.3"})
        url = f"/commands/{cid}/events?token={token}"
        allowed = await read_sse(rdev.client(), url, headers={"X-Forwarded-For": "10.1.2.3"})
        assert allowed[-1].event == "complete"
        resp = await rdev.client().get(url, headers={"X-Forwarded-For": "10.9.9.9"})
        assert resp.status_code == 403 and resp.json()["error"]["details"]["reason"] == "ip"


class MovableClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


async def test_a_token_expires_after_its_ttl_and_is_not_replayable(
    settings_factory: Callable[..., Settings],
) -> None:
    clock = MovableClock()
    settings = settings_factory(stream_token_ttl_seconds=60)
    make_project(settings.workspace_root, "demo")
    async with serve(settings, clock=clock) as rdev:
        cid = await _shell(rdev, "echo hi")
        resp = await rdev.admin.post(f"/commands/{cid}/stream-token")
        data = resp.json()["data"]
        expires = datetime.fromisoformat(data["expires_at"])
        assert timedelta(seconds=58) <= expires - clock() <= timedelta(seconds=60)
        url = f"/commands/{cid}/events?token={data['token']}"
        assert (await read_sse(rdev.client(), url))[-1].event == "complete"
        clock.offset = timedelta(seconds=61)
        _assert_401(await rdev.client().get(url))
        clock.offset = timedelta(days=1)
        _assert_401(await rdev.client().get(url))


async def test_the_token_is_in_no_response_and_no_audit_entry(fast: Running) -> None:
    cid = await _shell(fast, "echo hi")
    token = await _token(fast, fast.admin_key, cid)
    bodies = [
        (await fast.client().get(f"/commands/{cid}?token={token}")).text,
        (await fast.client().get(f"/commands/{cid}/events?token={token}x")).text,
        (await fast.client().get(f"/projects/demo/events?stream_id={cid}&token={token}")).text,
    ]
    entries = (await fast.admin.get("/audit", params={"limit": 200})).text
    assert all(token not in text for text in [*bodies, entries])
    assert "token_forged" in entries or "token_malformed" in entries


@pytest.mark.parametrize("value", ["0", "9", "3601"])
def test_the_ttl_is_bounded(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rdev.config import ConfigError, load_settings

    monkeypatch.setenv("RDEV_STREAM_TOKEN_TTL_SECONDS", value)
    with pytest.raises(ConfigError, match="RDEV_STREAM_TOKEN_TTL_SECONDS"):
        load_settings()


async def test_the_access_log_never_shows_a_token(tmp_path: Path) -> None:
    """`rdev serve` at debug level logs a line per request, by route template: never the raw
    URL, so a token in its query never reaches the log (nor does uvicorn's access line, which
    is off, and whose logger redacts `token=` should an operator turn it on)."""
    make_project(tmp_path / "ws", "demo")
    env = {
        "RDEV_DATA_DIR": str(tmp_path / "data"), "RDEV_LOCAL_ROOT": str(tmp_path / "ws"),
        "RDEV_LOG_LEVEL": "debug", "RATE_LIMIT_RPS": "1000", "PORT": str(free_port()),
    }  # fmt: skip
    full_env = {**os.environ, **env}
    created = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "keys", "create", "--name", "t", "--scope", "admin",
        env=full_env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    key = (await created.communicate())[0].decode().strip()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rdev", "serve", "--host", "127.0.0.1", env=full_env,
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{env['PORT']}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await eventually(lambda: _healthy(client), timeout=30, interval=0.1)
            auth = {"Authorization": f"Bearer {key}"}
            resp = await client.post(
                "/projects/demo/shell", json={"argv": ["echo", "hi"]}, headers=auth
            )
            cid = resp.json()["data"]["command_id"]
            token = (await client.post(f"/commands/{cid}/stream-token", headers=auth)).json()[
                "data"
            ]["token"]
            assert await read_sse(client, f"/commands/{cid}/events?token={token}")
            await client.get(f"/commands/{cid}?token={token}")
            await client.get(f"/commands/{cid}/events?last_event_id={cid}:1&token={token}")
            await client.get(f"/commands/{cid}/events?token={token}x")
        logged = "/commands/{command_id}/events"
        await eventually(lambda: log_path.read_text().count(logged) >= 3)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    text = log_path.read_text()
    assert text.count('"http.request"') + text.count("http.request ") >= 5  # requests were logged
    assert token not in text
    assert token.rsplit(".", 1)[1] not in text  # not even the MAC


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.postgres
@pytest.mark.parametrize("secret", ["", "shared-by-every-replica"], ids=["no-secret", "secret"])
async def test_a_token_made_on_one_replica_opens_the_stream_on_another(
    pg_url: str, tmp_path: Path, secret: str
) -> None:
    """Replicas verify each other's tokens: there is nothing to share but the database (and
    RDEV_STREAM_TOKEN_SECRET, when set, the same on each)."""
    root = tmp_path / "ws"
    make_project(root, "demo")
    env = {"RDEV_STREAM_TOKEN_SECRET": secret} if secret else {}
    async with two_replicas(pg_url, root, tmp_path, **env) as (one, two):
        resp = await one.post("/projects/demo/shell", json={"argv": ["echo", "across"]})
        cid = resp.json()["data"]["command_id"]
        token = (await one.post(f"/commands/{cid}/stream-token")).json()["data"]["token"]
        async with httpx.AsyncClient(base_url=str(two.base_url), timeout=30) as anonymous:
            events = await read_sse(anonymous, f"/commands/{cid}/events?token={token}")
        assert [e.data["line"] for e in events if e.event == "output"] == ["across"]
