"""The HTTP edge: error envelopes, request ids, body limits, validation messages, health,
readiness while the database comes and goes, and the API docs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest

from rdev.config import Settings
from tests.support import PG_ADMIN_URL, Running, eventually, serve

SettingsFactory = Callable[..., Settings]
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def backend() -> str:
    """Keys, auth and the HTTP edge do not depend on the backend: the local one serves them."""
    return "local"


def envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert "Traceback" not in resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "meta"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert body["meta"]["request_id"] == resp.headers["x-request-id"]
    return body


@pytest.fixture
async def small(settings_factory: SettingsFactory) -> AsyncIterator[Running]:
    async with serve(settings_factory(max_body_bytes=2048)) as running:
        yield running


async def test_unknown_route_is_a_404_envelope(rdev: Running) -> None:
    for client in (rdev.client(), rdev.admin):
        envelope(await client.get("/no/such/route"), 404, "NOT_FOUND")


async def test_wrong_method_is_a_405_envelope(rdev: Running) -> None:
    envelope(await rdev.admin.delete("/health"), 405, "METHOD_NOT_ALLOWED")
    envelope(await rdev.admin.put("/keys"), 405, "METHOD_NOT_ALLOWED")


async def test_project_reads_answer_other_methods_like_every_route(rdev: Running) -> None:
    """GET /projects and /projects/{id} are served by lean routes ahead of the routers; other
    methods, HEAD and a trailing slash still get the router's answers."""
    for path in ("/projects", "/projects/demo"):
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            resp = await rdev.admin.request(method, path)
            assert resp.status_code == 405, (method, path)
            assert resp.headers["allow"] == "GET"
            if method != "HEAD":
                envelope(resp, 405, "METHOD_NOT_ALLOWED")
        slash = await rdev.admin.get(path + "/")
        assert slash.status_code == 307
        assert slash.headers["location"].endswith(path)


async def test_declared_oversized_body_is_refused_before_it_is_read(small: Running) -> None:
    resp = await small.admin.post("/keys", content=b"x" * 4096)
    body = envelope(resp, 413, "PAYLOAD_TOO_LARGE")
    assert body["error"]["details"] == {"limit_bytes": 2048}
    # announce a large body and send none of it: the answer comes without waiting for it
    port = int(small.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + small.admin_key.encode() + b"\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413")
    assert b"x-request-id" in head.lower()
    assert (await small.admin.get("/keys")).status_code == 200


async def test_chunked_oversized_body_is_refused(small: Running) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield b"y" * 512

    resp = await small.admin.post(
        "/keys", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in resp.request.headers
    assert resp.request.headers["transfer-encoding"] == "chunked"
    envelope(resp, 413, "PAYLOAD_TOO_LARGE")

    # a body under the limit, also chunked, goes through
    async def small_body() -> AsyncIterator[bytes]:
        yield b'{"name": "c", '
        yield b'"scopes": ["projects:read"]}'

    ok = await small.admin.post(
        "/keys", content=small_body(), headers={"Content-Type": "application/json"}
    )
    assert ok.status_code == 201, ok.text


async def test_validation_errors_name_the_fields(rdev: Running) -> None:
    resp = await rdev.admin.post("/keys", json={"name": "x", "scopes": 5, "allowed_ips": "nope"})
    body = envelope(resp, 422, "VALIDATION_ERROR")
    fields = {f["field"] for f in body["error"]["details"]["fields"]}
    assert fields == {"scopes", "allowed_ips"}
    assert "scopes" in body["error"]["message"] and "allowed_ips" in body["error"]["message"]
    resp = await rdev.admin.get("/audit", params={"limit": "many"})
    body = envelope(resp, 422, "VALIDATION_ERROR")
    assert {f["field"] for f in body["error"]["details"]["fields"]} == {"limit"}


async def test_malformed_json_is_a_422_envelope(rdev: Running) -> None:
    for content in (b'{"name": "x", "scopes": [', b"\xff\xfe", b"", b"[1, 2]", b"null"):
        resp = await rdev.admin.post(
            "/keys", content=content, headers={"Content-Type": "application/json"}
        )
        envelope(resp, 422, "VALIDATION_ERROR")


async def test_every_response_has_a_request_id(rdev: Running) -> None:
    anon = rdev.client()
    responses = [
        await anon.get("/health"),
        await anon.get("/nope"),
        await anon.get("/projects"),
        await rdev.admin.get("/projects"),
        await rdev.admin.post("/keys", json={}),
        await anon.get("/openapi.json"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(_HEX_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_a_given_request_id_is_echoed(rdev: Running) -> None:
    given = "client-req_1.2:3"
    for resp in (
        await rdev.client().get("/health", headers={"X-Request-ID": given}),
        await rdev.client().get("/projects", headers={"X-Request-ID": given}),
        await rdev.admin.get("/nope", headers={"X-Request-ID": given}),
    ):
        assert resp.headers["x-request-id"] == given
        assert resp.json()["meta"]["request_id"] == given


@pytest.mark.parametrize("bad", ["has space", "a" * 129, "semi;colon", "<script>", "é"])
async def test_an_invalid_request_id_is_replaced(rdev: Running, bad: str) -> None:
    resp = await rdev.client().get("/health", headers={b"X-Request-ID": bad.encode()})
    assert resp.status_code == 200
    assert _HEX_ID.match(resp.headers["x-request-id"])
    assert resp.json()["meta"]["request_id"] == resp.headers["x-request-id"]


async def test_health_needs_no_auth(rdev: Running) -> None:
    resp = await rdev.client().get("/health")
    assert resp.status_code == 200
    assert resp.json()["data"] == {"status": "ok"}


async def test_openapi_and_docs(rdev: Running) -> None:
    spec = await rdev.client().get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/keys", "/keys/{key_id}", "/audit", "/projects", "/health", "/ready"} <= set(paths)
    docs = await rdev.client().get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


async def test_openapi_documents_the_key_and_its_errors(rdev: Running) -> None:
    spec = (await rdev.client().get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert "Authorization: Bearer" in scheme["description"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in ("/health", "/ready"):
                assert "security" not in operation, (method, path)
                continue
            assert operation["security"] == [{"Bearer": []}, {"ApiKey": []}], (method, path)
            for status in ("401", "403", "429", "503"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/json"], (method, path)
                ref = content["application/json"]["schema"]["$ref"]  # Error<status>
                schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
                assert schema["required"] == ["error", "meta"]
            for status in ("429", "503"):
                assert "Retry-After" in operation["responses"][status]["headers"]


async def test_no_error_body_carries_a_traceback(rdev: Running) -> None:
    anon = rdev.client()
    admin = rdev.admin
    responses = [
        await anon.get("/projects", headers={"Authorization": "Bearer rdev_sk_\t\t_x"}),
        await anon.get("/projects", headers={"X-API-Key": "rdev_sk_" + "%" * 5000}),
        await admin.get("/projects/..%2F..%2Fetc"),
        await admin.get("/projects/" + "x" * 5000),
        await admin.post("/projects/demo/shell", json={"command": "ls; id"}),
        await admin.post("/projects/demo/shell", json={"argv": ["a\x00"]}),
        await admin.post("/projects/demo/git", json={"args": ["gc"]}),
        await admin.get("/audit", params={"cursor": "1 OR 1=1"}),
        await admin.get("/audit", params={"since": "\x00"}),
        await admin.post("/keys", json={"name": "\x00", "scopes": ["admin"]}),
        await admin.get("/commands/does-not-exist"),
    ]
    for resp in responses:
        assert 400 <= resp.status_code < 500, (resp.request.url, resp.status_code, resp.text)
        assert "Traceback" not in resp.text
        assert "error" in resp.json()


@pytest.mark.postgres
async def test_ready_follows_the_database(settings_factory: SettingsFactory, pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    async with serve(settings_factory(database_url=pg_url)) as running:
        client = running.client()
        resp = await client.get("/ready")
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["checks"]["database"] == {"ok": True}

        def block(allow: bool) -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allow).lower()}')
                if not allow:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (dbname,),
                    )

        try:
            await asyncio.to_thread(block, False)

            async def not_ready() -> dict[str, Any] | None:
                r = await client.get("/ready")
                return r.json() if r.status_code == 503 else None

            body = await eventually(not_ready, timeout=20, interval=0.1)
            assert body["error"]["code"] == "NOT_READY"
            checks = body["error"]["details"]["checks"]
            assert checks["database"]["ok"] is False
            assert checks["database"]["error"]
            assert checks["backend"] == {"ok": True}
            assert "Traceback" not in str(body)
            assert (await client.get("/health")).status_code == 200
        finally:
            await asyncio.to_thread(block, True)

        async def ready() -> bool:
            return (await client.get("/ready")).status_code == 200

        await eventually(ready, timeout=20, interval=0.1)
        assert (await running.admin.get("/keys")).status_code == 200
