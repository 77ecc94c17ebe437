"""Claude cost over HTTP with the stand-in CLI (tests/fixtures/claude, $0.0123 a run): a run's
cost in `GET /commands/{id}` and its `complete` event, the usage reports and who may read
them, the daily budgets' 429, and `max_budget_usd` reaching the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rdev.domain.keys import parse_key
from tests.e2e.conftest import Launch
from tests.support import Running, read_sse, wait_status

RUN_COST = 0.0123
MODEL = "claude-sonnet-4-5"  # the stand-in's model when none is asked for


async def _claude(client: httpx.AsyncClient, project: str, **body: Any) -> dict[str, Any]:
    resp = await client.post(f"/projects/{project}/claude", json={"prompt": "hi"} | body)
    assert resp.status_code == 201, resp.text
    cid = resp.json()["data"]["command_id"]
    return await wait_status(client, cid, "succeeded", "failed")


def _key_id(secret: str) -> str:
    parsed = parse_key(secret)
    assert parsed is not None
    return parsed[0]


async def test_a_runs_cost_is_in_the_command_and_its_complete_event(rdev: Running) -> None:
    done = await _claude(rdev.admin, "demo")
    assert done["status"] == "succeeded"
    assert (done["cost_usd"], done["cumulative_cost_usd"]) == (RUN_COST, RUN_COST)
    assert done["usage"] == [
        {"model": MODEL, "cost_usd": RUN_COST, "input_tokens": 0, "output_tokens": 0,
         "cache_read_tokens": 0, "cache_creation_tokens": 0}
    ]  # fmt: skip
    events = await read_sse(rdev.admin, done["events_url"])
    complete = next(e.data for e in events if e.event == "complete")
    assert complete["cost_usd"] == RUN_COST
    assert complete["usage"] == done["usage"]


async def test_usage_reports_sum_by_day_and_model_within_the_readers_grants(
    launch: Launch,
) -> None:
    async with launch({"p": {}, "q": {}}) as rdev:
        scopes = ["commands:claude", "commands:read"]
        a = await rdev.new_key(scopes=scopes, projects=["p"])
        b = await rdev.new_key(scopes=scopes, projects=["q"])
        manager = await rdev.new_key(scopes=[*scopes, "keys:admin"], projects=["p"])
        ca, cb, cm = rdev.client(a), rdev.client(b), rdev.client(manager)
        await _claude(ca, "p")
        await _claude(ca, "p")
        await _claude(cb, "q")
        today = datetime.now(UTC).date().isoformat()

        resp = await ca.get("/projects/p/usage")
        assert resp.status_code == 200, resp.text
        report = resp.json()["data"]
        assert report["to"] == today
        assert [(d["day"], d["model"], d["commands"]) for d in report["days"]] == [
            (today, MODEL, 2)
        ]
        assert report["total"]["cost_usd"] == pytest.approx(2 * RUN_COST)
        # a key granted p cannot see q's usage, nor another key's
        assert (await ca.get("/projects/q/usage")).status_code == 404
        assert (await ca.get(f"/keys/{_key_id(b)}/usage")).status_code == 404
        # its own usage, yes; a key it may manage, yes; one beyond its authority, no
        own = (await ca.get(f"/keys/{_key_id(a)}/usage")).json()["data"]
        assert own["total"]["cost_usd"] == pytest.approx(2 * RUN_COST)
        managed = await cm.get(f"/keys/{_key_id(a)}/usage")
        assert managed.status_code == 200, managed.text
        assert managed.json()["data"]["total"]["cost_usd"] == pytest.approx(2 * RUN_COST)
        assert (await cm.get(f"/keys/{_key_id(b)}/usage")).status_code == 404
        assert (await cm.get("/keys/nope/usage")).status_code == 404
        # an unrestricted admin sees every project
        everything = (await rdev.admin.get("/projects/q/usage")).json()["data"]
        assert everything["total"]["cost_usd"] == pytest.approx(RUN_COST)


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2031-05-07", "to": "2031-05-06"},
        {"from": "2030-01-01", "to": "2031-05-06"},
        {"from": "yesterday"},
        {"to": "2031-02-30"},
        {"from": "2031-05-06T00:00:00"},
        {"to": "-4.4e-246"},  # pydantic alone takes a number as a Unix time
        {"from": "1700000000"},
    ],
)
async def test_a_bad_usage_range_is_a_422(rdev: Running, query: dict[str, str]) -> None:
    resp = await rdev.admin.get("/projects/demo/usage", params=query)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] in {"INVALID_INPUT", "VALIDATION_ERROR"}


async def test_a_usage_range_outside_any_run_is_empty(rdev: Running) -> None:
    await _claude(rdev.admin, "demo")
    resp = await rdev.admin.get("/projects/demo/usage", params={"from": "2030-01-01",
                                                                "to": "2030-12-31"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["days"] == []
    assert resp.json()["data"]["total"]["cost_usd"] == 0


async def test_claude_runs_past_a_daily_budget_are_refused_until_utc_midnight(
    launch: Launch,
) -> None:
    async with launch({"p": {}, "q": {}}, key_daily_budget_usd=0.02) as rdev:
        key = await rdev.new_key(scopes=["commands:claude", "commands:shell", "commands:read"])
        client = rdev.client(key)
        await _claude(client, "p")
        await _claude(client, "q")  # 0.0246 spent today: past 0.02
        refused = await client.post("/projects/p/claude", json={"prompt": "more"})
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "BUDGET_EXCEEDED"
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        assert error["details"]["budget"] == "key"
        assert error["details"]["resets_at"] == f"{tomorrow.isoformat()}T00:00:00Z"
        midnight = datetime.combine(tomorrow, datetime.min.time(), tzinfo=UTC)
        wait = (midnight - datetime.now(UTC)).total_seconds()
        assert abs(int(refused.headers["Retry-After"]) - wait) < 60
        # shell commands have no cost; another key has its own budget
        shell = await client.post("/projects/p/shell", json={"argv": ["true"]})
        assert shell.status_code == 201, shell.text
        other = await rdev.new_key(scopes=["commands:claude", "commands:read"])
        await _claude(rdev.client(other), "p")


async def test_a_projects_daily_budget_refuses_every_key(launch: Launch) -> None:
    async with launch({"p": {"daily_budget_usd": 0.01}, "q": {}}) as rdev:
        await _claude(rdev.admin, "p")
        key = await rdev.new_key(scopes=["commands:claude"])
        refused = await rdev.client(key).post("/projects/p/claude", json={"prompt": "more"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["details"]["budget"] == "project"
        assert refused.json()["error"]["details"]["project"] == "p"
        assert (await rdev.client(key).post("/projects/q/claude", json={"prompt": "x"})).is_success


async def test_max_budget_usd_reaches_the_cli(rdev: Running) -> None:
    done = await _claude(rdev.admin, "demo", max_budget_usd=0.5)
    events = await read_sse(rdev.admin, done["events_url"])
    init = next(e.data for e in events if e.event == "message")
    assert init["parsed"]["max_budget_usd"] == "0.5"
    assert "--max-budget-usd=0.5" in done["argv"]


@pytest.mark.parametrize("value", [0, -1, 1000.5, "lots", "5", True, [1], {}, None])
async def test_a_bad_max_budget_usd_is_a_422(rdev: Running, value: object) -> None:
    body = {"prompt": "hi", "max_budget_usd": value}
    resp = await rdev.admin.post("/projects/demo/claude", json=body)
    if value is None:
        assert resp.status_code == 201, resp.text  # null: no budget
        return
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "max_budget_usd"


async def test_a_keys_own_daily_budget_wins_over_the_default(launch: Launch) -> None:
    async with launch({"p": {}}, key_daily_budget_usd=100.0) as rdev:
        resp = await rdev.admin.post(
            "/keys",
            json={"name": "tight", "scopes": ["commands:claude", "commands:read"],
                  "daily_budget_usd": 0.01},
        )  # fmt: skip
        assert resp.status_code == 201, resp.text
        issued = resp.json()["data"]
        assert issued["daily_budget_usd"] == 0.01
        listed = (await rdev.admin.get(f"/keys/{issued['id']}")).json()["data"]
        assert listed["daily_budget_usd"] == 0.01
        client = rdev.client(issued["key"])
        await _claude(client, "p")
        refused = await client.post("/projects/p/claude", json={"prompt": "more"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["details"]["limit_usd"] == 0.01
        await _claude(rdev.admin, "p")  # the default budget of other keys is far off


@pytest.mark.parametrize("value", ["0", "-1", "1000001", '"5"', "true", "1e400", "NaN"])
async def test_a_bad_key_daily_budget_is_a_422(rdev: Running, value: str) -> None:
    body = '{"name": "k", "scopes": ["commands:read"], "daily_budget_usd": ' + value + "}"
    resp = await rdev.admin.post(
        "/keys", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"]["field"] == "daily_budget_usd"
