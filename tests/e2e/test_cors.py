"""CORS for the origins of RDEV_CORS_ORIGINS (none by default), on answers and errors alike,
and `/docs` served with no asset from outside rdev."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from rdev.config import ConfigError, load_settings
from tests.e2e.conftest import Launch
from tests.support import Running

PAGE = "https://app.example.com"
OTHER_PAGE = "http://localhost:5173"
EXPOSED = {"x-request-id", "location", "retry-after", "ratelimit", "ratelimit-policy"}
REQUEST_HEADERS = ["authorization", "content-type", "last-event-id", "x-api-key"]


@pytest.fixture
async def rdev(launch: Launch) -> AsyncIterator[Running]:
    async with launch(cors_origins=f"{PAGE}, {OTHER_PAGE}") as running:
        yield running


def _exposed(headers: httpx.Headers) -> set[str]:
    value = headers.get("access-control-expose-headers", "")
    return {h.strip().lower() for h in value.split(",") if h.strip()}


async def _preflight(
    rdev: Running, origin: str, method: str, headers: str, path: str
) -> httpx.Response:
    return await rdev.client().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.mark.parametrize("origin", [PAGE, OTHER_PAGE])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/commands/cmd_x/events"), ("POST", "/projects/demo/shell"), ("DELETE", "/keys/x")],
)
async def test_a_preflight_from_an_allowed_origin_is_answered(
    rdev: Running, origin: str, method: str, path: str
) -> None:
    resp = await _preflight(rdev, origin, method, ", ".join(REQUEST_HEADERS), path)
    assert resp.status_code == 200
    headers = resp.headers
    assert headers["access-control-allow-origin"] == origin
    assert method in headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert set(REQUEST_HEADERS) <= allowed
    assert "access-control-allow-credentials" not in headers
    assert "origin" in headers["vary"].lower()


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.example.com", "GET", "authorization"),
        ("https://app.example.com.evil.com", "GET", "authorization"),
        ("http://app.example.com", "GET", "authorization"),  # another scheme
        ("https://app.example.com:444", "GET", "authorization"),  # another port
        ("null", "GET", "authorization"),
        (PAGE, "TRACE", "authorization"),
        (PAGE, "GET", "x-not-allowed"),
        (PAGE, "GET", "cookie"),
    ],
)
async def test_a_preflight_from_a_refused_origin_or_for_a_refused_request_is_400(
    rdev: Running, origin: str, method: str, headers: str
) -> None:
    resp = await _preflight(rdev, origin, method, headers, "/projects")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "CORS_REFUSED"
    if origin != PAGE:
        assert "access-control-allow-origin" not in resp.headers


async def test_answers_and_errors_carry_cors_headers_for_an_allowed_origin(rdev: Running) -> None:
    page = {"Origin": PAGE}
    resp = await rdev.admin.post(
        "/projects/demo/shell", json={"argv": ["echo", "hi"]}, headers=page
    )
    assert resp.status_code == 201
    cid = resp.json()["data"]["command_id"]
    answers = [
        resp,
        await rdev.admin.get("/projects", headers=page),  # a lean route
        await rdev.client().get("/projects", headers=page),  # 401
        await rdev.client("rdev_sk_aaaaaaaaaaaa_" + "x" * 43).get("/projects", headers=page),
        await rdev.admin.get("/commands/cmd_0190000000000aabbccddeeff", headers=page),  # 404
        await rdev.admin.post("/projects/demo/shell", json={"argv": []}, headers=page),  # 422
        await rdev.admin.get("/commands/x?token=y", headers=page),  # the token guard's 401
        await rdev.admin.get("/projects?%ff=1", headers=page),  # the edge's 422
        await rdev.client().get("/health", headers=page),
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [201, 200, 401, 401, 404, 422, 401, 422, 200]
    for answer in answers:
        assert answer.headers["access-control-allow-origin"] == PAGE, answer.request.url
        assert _exposed(answer.headers) >= EXPOSED
        assert "access-control-allow-credentials" not in answer.headers
    assert answers[0].headers["location"] == f"/commands/{cid}"
    async with rdev.admin.stream("GET", f"/commands/{cid}/events", headers=page) as stream:
        assert stream.headers["access-control-allow-origin"] == PAGE
        assert stream.headers["content-type"].startswith("text/event-stream")


async def test_a_refused_origin_gets_no_allow_origin_but_the_same_answer(rdev: Running) -> None:
    for origin in ("https://evil.example.com", "null", PAGE.upper() + "x"):
        resp = await rdev.admin.get("/projects", headers={"Origin": origin})
        assert resp.status_code == 200
        assert "access-control-allow-origin" not in resp.headers
        resp = await rdev.client().get("/projects", headers={"Origin": origin})
        assert resp.status_code == 401
        assert "access-control-allow-origin" not in resp.headers


async def test_without_the_setting_no_cors_header_is_sent(launch: Launch) -> None:
    async with launch() as rdev:
        resp = await rdev.admin.get("/projects", headers={"Origin": PAGE})
        assert not [h for h in resp.headers if h.startswith("access-control-")]
        resp = await _preflight(rdev, PAGE, "GET", "authorization", "/projects")
        assert resp.status_code == 405
        assert "access-control-allow-origin" not in resp.headers


async def test_a_star_allows_any_origin_literally_never_echoing_it(launch: Launch) -> None:
    async with launch(cors_origins="*") as rdev:
        for origin in ("https://anything.example", "null"):
            headers = {"Origin": origin, "Cookie": "session=1"}
            resp = await rdev.admin.get("/projects", headers=headers)
            assert resp.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in resp.headers
            resp = await _preflight(rdev, origin, "POST", "authorization", "/projects")
            assert resp.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example.com/", "https://app.example.com/path", "app.example.com",
        "https://*.example.com", "*, https://app.example.com", "ftp://app.example.com",
        "https://app.example.com:99999999", "null", "https://app.example.com?x=1",
        "https://user@app.example.com",
    ],
)  # fmt: skip
def test_an_origin_that_is_not_exact_is_refused_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RDEV_CORS_ORIGINS", value)
    with pytest.raises(ConfigError, match="RDEV_CORS_ORIGINS"):
        load_settings()


def test_origins_are_read_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDEV_CORS_ORIGINS", " https://A.example.com ,http://[::1]:8080,")
    assert load_settings().cors_origin_list == ("https://a.example.com", "http://[::1]:8080")


_URL = re.compile(r"""(?:src|href|url)\s*[=:(]\s*["']?([^"')\s>]+)""")


async def test_the_docs_page_loads_nothing_from_outside_rdev(rdev: Running) -> None:
    resp = await rdev.client().get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html, html
    refs = _URL.findall(html) + re.findall(r"""\b(?:url|spec-url)\s*:\s*["']([^"']+)""", html)
    local = [r for r in refs if r.startswith("/")]
    assert "/openapi.json" in html
    assert any(r.endswith(".js") for r in local), refs
    for ref in local:
        asset = await rdev.client().get(ref)
        assert asset.status_code == 200, ref
    assert (await rdev.client().get("/redoc")).status_code == 404  # no page that phones home
