"""The server's logs: with RDEV_LOG_FORMAT=json every line is one JSON object carrying the
request id (and the key id once known), and no key secret ever reaches them, however a client
presents one: header, X-API-Key, query string, path, a wrong secret, a revoked or rotated key."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

from tests.support import make_project, start_replica, wait_status


async def _cli_key(env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rdev", "keys", "create", "--name", "t", "--scope", "admin",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip()


def _wrong(key: str) -> str:
    return key[:-6] + ("AAAAAA" if not key.endswith("AAAAAA") else "BBBBBB")


async def _use_keys(client: httpx.AsyncClient, admin: str) -> list[str]:
    """Issue keys and present them every way a client might; return every secret seen."""
    secrets = [admin]
    for i in range(4):
        body = {"name": f"k{i}", "scopes": ["projects:read", "commands:shell", "commands:read"]}
        resp = await client.post("/keys", json=body)
        assert resp.status_code == 201, resp.text
        secrets.append(resp.json()["data"]["key"])
    issued = secrets[1:]
    plain = httpx.AsyncClient(base_url=client.base_url, timeout=30)
    async with plain:
        for key in issued:
            ok = await plain.get("/projects", headers={"X-API-Key": key})
            assert ok.status_code == 200
            bearer = {"Authorization": f"Bearer {key}"}
            run = await plain.post("/projects/demo/shell", headers=bearer,
                                   json={"argv": ["echo", "hello"]})  # fmt: skip
            assert run.status_code == 201, run.text
            await wait_status(client, run.json()["data"]["command_id"], "succeeded")
            wrong = _wrong(key)
            secrets.append(wrong)
            for presented in (
                {"headers": {"Authorization": f"Bearer {wrong}"}},
                {"headers": {"X-API-Key": wrong}},
                {"headers": {"Authorization": f"Basic {key}"}},
                {"params": {"api_key": key, "key": wrong}},
            ):
                assert (await plain.get("/projects", **presented)).status_code == 401  # type: ignore[arg-type]
            assert (await plain.get(f"/projects/{key}", headers=bearer)).status_code == 404
            assert (await plain.get(f"/nowhere/{key}?token={key}")).status_code in (401, 404)
            assert (await plain.get(f"/projects?x={key}%00")).status_code == 422
        listed = (await client.get("/keys")).json()["data"]
        first_id = next(k["id"] for k in listed if k["name"] == "k0")
        rotated = await client.post(f"/keys/{first_id}/rotate")
        assert rotated.status_code == 200, rotated.text
        secrets.append(rotated.json()["data"]["key"])
        revoked = await client.delete(f"/keys/{first_id}")
        assert revoked.status_code == 200, revoked.text
        for key in secrets[-1:]:
            assert (await plain.get("/projects", headers={"X-API-Key": key})).status_code == 401
    return secrets


async def test_json_logs_carry_request_and_key_ids_and_never_a_secret(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    make_project(root, "demo")
    env = {"RDEV_DATA_DIR": str(tmp_path / "data"), "RDEV_LOCAL_ROOT": str(root),
           "RDEV_LOG_FORMAT": "json", "RDEV_LOG_LEVEL": "debug",
           "RDEV_METRICS_TOKEN": "m" * 40, "RATE_LIMIT_RPS": "1000"}  # fmt: skip
    admin = await _cli_key(env)
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as stderr:
        replica = await start_replica(env, cwd=tmp_path, stderr=stderr)
        try:
            headers = {"Authorization": f"Bearer {admin}"}
            async with httpx.AsyncClient(base_url=replica.url, headers=headers, timeout=30) as c:
                secrets = await _use_keys(c, admin)
        finally:
            assert await replica.stop() in (0, -15)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    for secret in secrets:
        assert secret not in text
        # the secret part alone: `rdev_sk_<id>_<secret>`, whose secret may hold `_` itself
        assert secret.split("_", 3)[3] not in text
    requests = [e for e in lines if e.get("event") == "http.request"]
    assert len(requests) > 20
    assert all(len(e["request_id"]) >= 16 for e in requests)
    assert {e["endpoint"] for e in requests} >= {"/projects", "/keys", "unmatched"}
    authed = [e for e in requests if e["endpoint"] == "/projects/{project_id}/shell"]
    assert authed and all(e["key_id"] and e["project"] == "demo" for e in authed)
    finished = [e for e in lines if e.get("event") == "command.finished"]
    assert finished and all(e["command_id"] and e["project"] == "demo" for e in finished)
    assert any(e.get("logger", "").startswith("uvicorn") for e in lines)  # stdlib logs too
