"""GET /metrics through the real server, on both backends: who may scrape it, that each metric
moves when the thing it counts happens, and that clients cannot grow its label sets."""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Launch
from tests.support import Running, eventually, free_port, read_sse, wait_status

TOKEN = "metrics-token-" + "x" * 32


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(rdev: Running) -> str:
    resp = await rdev.client(TOKEN).get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


async def _shell(rdev: Running, argv: list[str]) -> dict[str, Any]:
    resp = await rdev.admin.post("/projects/demo/shell", json={"argv": argv})
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def test_metrics_are_off_without_a_token_or_a_port(rdev: Running) -> None:
    resp = await rdev.admin.get("/metrics")  # even an admin key does not open them
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "NOT_FOUND"


async def test_metrics_token_is_required_and_compared_exactly(launch: Launch) -> None:
    async with launch(metrics_token=TOKEN) as rdev:
        assert (await rdev.client().get("/metrics")).status_code == 401
        for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "", rdev.admin_key):
            resp = await rdev.client(wrong).get("/metrics")
            assert resp.status_code == 401, wrong
            assert resp.json()["error"]["code"] == "UNAUTHORIZED"
            assert "rdev_" not in resp.text
        basic = await rdev.client().get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        text = await scrape(rdev)
        assert value(text, "rdev_build_info", version="0.1.0", python=_py(text),
                     backend=rdev.app.backend.name) == 1  # fmt: skip


def _py(text: str) -> str:
    for (name, labels), _ in samples(text).items():
        if name == "rdev_build_info":
            return dict(labels)["python"]
    raise AssertionError("no rdev_build_info")


async def test_metrics_port_serves_them_alone_and_the_main_port_does_not(
    launch: Launch,
) -> None:
    port = free_port()
    async with launch(metrics_port=port) as rdev:
        assert (await rdev.admin.get("/metrics")).status_code == 404
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert resp.status_code == 200
            assert "rdev_commands_total" in resp.text or "rdev_build_info" in resp.text
            assert (await client.get(f"http://127.0.0.1:{port}/projects")).status_code == 404
    with pytest.raises(httpx.ConnectError):  # the listener closes with the app
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"http://127.0.0.1:{port}/metrics")


async def test_metrics_port_with_a_token_wants_the_token_there(launch: Launch) -> None:
    port = free_port()
    async with (
        launch(metrics_port=port, metrics_token=TOKEN) as rdev,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        assert (await rdev.client(TOKEN).get("/metrics")).status_code == 404
        assert (await client.get("/metrics")).status_code == 401
        assert (
            await client.get("/metrics", headers={"Authorization": "Bearer no"})
        ).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "rdev_build_info" in ok.text


async def test_a_finished_command_moves_counters_histograms_and_stream_metrics(
    launch: Launch,
) -> None:
    async with launch(metrics_token=TOKEN) as rdev:
        cmd = await _shell(rdev, ["sh", "-c", "echo one; echo two"])
        events = await read_sse(rdev.admin, cmd["events_url"])
        assert events[-1].event == "complete"
        await wait_status(rdev.admin, cmd["command_id"], "succeeded")
        text = await eventually(lambda: _when(scrape(rdev), "rdev_commands_total"))
        assert value(text, "rdev_commands_total", project="demo", type="shell",
                     status="succeeded") == 1  # fmt: skip
        assert value(text, "rdev_command_duration_seconds_count", project="demo", type="shell") == 1
        assert value(text, "rdev_sse_events_sent_total") >= len(events) - 1  # less `connected`
        assert value(text, "rdev_event_log_write_seconds_count") >= 1
        assert value(text, "rdev_active_streams", project="demo") == 0
        submitted = value(text, "rdev_api_request_duration_seconds_count",
                          endpoint="/projects/{project_id}/shell", method="POST", status="201")  # fmt: skip
        assert submitted == 1
        streamed = value(text, "rdev_api_request_duration_seconds_count",
                         endpoint="/commands/{command_id}/events", method="GET", status="200")  # fmt: skip
        assert streamed == 1
        assert not any("/commands/" + cmd["command_id"] in str(k) for k in samples(text))


async def _when(text_coro: Any, name: str) -> str | None:
    text: str = await text_coro
    return text if name in text else None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of this test's alone: the queue depth counts every queued command in it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metrics.db'}"
    url: str = request.getfixturevalue("own_pg_url")
    return url


async def test_running_queued_and_streaming_gauges_follow_the_commands(
    launch: Launch, own_db: str
) -> None:
    """On both databases: the queue depth is read from the database at scrape time."""
    async with launch(metrics_token=TOKEN, concurrent_commands=1, database_url=own_db) as rdev:
        first = await _shell(rdev, ["sleep", "600"])
        await wait_status(rdev.admin, first["command_id"], "running")
        second = await _shell(rdev, ["sleep", "600"])
        stream = rdev.client(rdev.admin_key)
        opened = asyncio.Event()
        reader = asyncio.create_task(
            read_sse(stream, first["events_url"], opened=opened, until="complete")
        )
        await asyncio.wait_for(opened.wait(), 10)
        text = await scrape(rdev)
        assert value(text, "rdev_running_commands", project="demo") == 1
        assert value(text, "rdev_queue_depth", project="demo") == 1
        assert value(text, "rdev_active_streams", project="demo") == 1
        for cmd in (second, first):
            resp = await rdev.admin.post(f"/commands/{cmd['command_id']}/cancel")
            assert resp.status_code == 200, resp.text
        await reader

        async def settled() -> str | None:
            text = await scrape(rdev)
            idle = (
                value(text, "rdev_running_commands", project="demo") == 0
                and value(text, "rdev_active_streams", project="demo") == 0
            )
            return text if idle else None

        text = await eventually(settled)
        assert value(text, "rdev_queue_depth", project="demo") == 0
        assert value(text, "rdev_commands_total", project="demo", type="shell",
                     status="cancelled") >= 1  # fmt: skip


async def test_auth_failures_are_counted_by_reason(launch: Launch) -> None:
    async with launch(metrics_token=TOKEN) as rdev:
        key = await rdev.new_key(scopes=["projects:read"])
        wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        assert (await rdev.client().get("/projects")).status_code == 401
        assert (await rdev.client("not-a-key").get("/projects")).status_code == 401
        assert (await rdev.client(wrong).get("/projects")).status_code == 401
        text = await scrape(rdev)
        assert value(text, "rdev_auth_failures_total", reason="missing") == 1
        assert value(text, "rdev_auth_failures_total", reason="malformed") == 1
        assert value(text, "rdev_auth_failures_total", reason="wrong_secret") == 1


async def test_kubernetes_breaker_state_is_exported(launch: Launch, backend: str) -> None:
    async with launch(metrics_token=TOKEN) as rdev:
        text = await scrape(rdev)
        states = {
            dict(labels)["state"]: v
            for (name, labels), v in samples(text).items()
            if name == "rdev_kubernetes_circuit_state"
        }
        if backend == "kubernetes":
            assert states == {"closed": 1, "open": 0, "half_open": 0}
        else:
            assert states == {}  # the local backend has no breaker


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "BREW",
            "X" * 20, "get", "M-SEARCH", "TRACE"]  # fmt: skip


def _random_path(rng: random.Random) -> str:
    word = "".join(rng.choices(string.ascii_letters + string.digits + "-_.~", k=rng.randint(1, 30)))
    return rng.choice([
        f"/{word}", f"/projects/{word}", f"/projects/{word}/shell", f"/commands/{word}",
        f"/commands/{word}/events", f"/projects/demo/{word}", f"/{word}/{word}/{word}",
        f"/keys/{word}", f"/projects/{word}/events?stream_id={word}",
    ])  # fmt: skip


async def test_a_thousand_random_requests_leave_the_label_sets_bounded(launch: Launch) -> None:
    async with launch(metrics_token=TOKEN, rate_limit_rps=100_000.0) as rdev:
        rng = random.Random(11)
        client = rdev.admin
        for _ in range(1000):
            method = rng.choice(_METHODS)
            resp = await client.request(method, _random_path(rng))
            assert resp.status_code < 500, (method, resp.status_code)
        text = await scrape(rdev)
        found = samples(text)
        requests = {
            labels for (name, labels) in found if name == "rdev_api_request_duration_seconds_count"
        }
        methods = {dict(labels)["method"] for labels in requests}
        endpoints = {dict(labels)["endpoint"] for labels in requests}
        assert methods <= {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "other"}
        assert "other" in methods
        assert "unmatched" in endpoints
        templates = {r.path for r in rdev.app.http.routes if hasattr(r, "path")}
        templates |= set(rdev.app.http.openapi()["paths"])
        assert endpoints <= templates | {"unmatched"}
        assert len(requests) < 100, len(requests)
        projects = {
            dict(labels).get("project") for (_name, labels) in found if "project" in dict(labels)
        }
        assert projects <= {"demo"}
