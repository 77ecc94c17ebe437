"""Budgets: a request's `max_budget_usd` reaches the CLI as its option (checked, bounded, read
back by the CLI's grammar), a project's `daily_budget_usd` setting is parsed fail-closed, and
the daily budgets of keys and projects refuse new Claude runs until UTC midnight."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rdev.domain import settings
from rdev.domain.argv import ClaudeSpec, claude_argv, claude_prompt_index
from rdev.domain.errors import BudgetExceeded, InvalidInput, InvalidSettings
from rdev.domain.models import ApiKey, ClaudeResult, Command, CommandKind, CommandStatus, Priority
from rdev.domain.usage import ModelUsage, RunUsage, Tokens
from rdev.services.usage import UsageService
from tests.fakes import FakeBackend, MemoryCommandStore, MemoryEventLog, MemoryUsageStore

FIXTURE = Path(__file__).parents[1] / "fixtures" / "claude"
_PARSE: Callable[[list[str]], dict[str, Any]] = runpy.run_path(str(FIXTURE), run_name="x")["parse"]


@pytest.mark.parametrize(("value", "shown"), [(0.5, "0.5"), (1000, "1000.0"), (1e-6, "1e-06")])
def test_a_run_budget_reaches_the_cli_as_its_option(value: float, shown: str) -> None:
    argv = claude_argv("claude", ClaudeSpec(prompt="--max-budget-usd=9", max_budget_usd=value))
    assert f"--max-budget-usd={shown}" in argv
    assert argv.index(f"--max-budget-usd={shown}") < argv.index("--")
    parsed = _PARSE(list(argv[1:]))
    assert float(parsed["max_budget_usd"]) == value
    assert parsed["prompt"] == "--max-budget-usd=9"  # the prompt stays the prompt
    assert argv[claude_prompt_index(argv) or 0] == "--max-budget-usd=9"


def test_no_run_budget_no_option() -> None:
    argv = claude_argv("claude", ClaudeSpec(prompt="hi"))
    assert not any(a.startswith("--max-budget-usd") for a in argv)


@pytest.mark.parametrize(
    "value", [0, -1, -0.0, 1000.01, 1e9, float("nan"), float("inf"), float("-inf"), True, "1"]
)
def test_a_run_budget_out_of_bounds_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        claude_argv("claude", ClaudeSpec(prompt="hi", max_budget_usd=value))
    assert err.value.details["field"] == "max_budget_usd"


@pytest.mark.parametrize("value", [0.01, 5, 2.5, 1_000_000])
def test_a_project_daily_budget_in_range_is_kept(value: float) -> None:
    got = settings.parse_settings({"daily_budget_usd": value}).daily_budget_usd
    assert got == value and isinstance(got, float)


@pytest.mark.parametrize(
    "value", [0, -5, 1_000_001, True, "5", None, [5], float("nan"), float("inf")]
)
def test_a_project_daily_budget_out_of_range_is_an_error(value: object) -> None:
    with pytest.raises(InvalidSettings) as err:
        settings.parse_settings({"daily_budget_usd": value})
    assert err.value.problems[0].startswith("daily_budget_usd must")


NOW = datetime(2031, 5, 6, 18, 0, tzinfo=UTC)
KEY = ApiKey("k1", "k1", "x", frozenset(), NOW)
OTHER = ApiKey("k2", "k2", "x", frozenset(), NOW)


def _world(**budgets: Any) -> tuple[MemoryCommandStore, FakeBackend, UsageService]:
    store = MemoryCommandStore(MemoryEventLog())
    backend = FakeBackend()
    backend.add_project("p")
    backend.add_project("q")
    service = UsageService(
        store=MemoryUsageStore(store), keys=None,  # type: ignore[arg-type]
        backend=backend, clock=lambda: NOW, **budgets,
    )  # fmt: skip
    return store, backend, service


def _spent(store: MemoryCommandStore, cid: str, key: str, project: str, cost: float,
           at: datetime = NOW) -> None:  # fmt: skip
    usage = RunUsage(cost, (ModelUsage("m", cost, Tokens(1)),))
    store.commands[cid] = Command(
        id=cid, project_id=project, kind=CommandKind.CLAUDE, argv=(), key_id=key,
        status=CommandStatus.SUCCEEDED, priority=Priority.NORMAL, created_at=at,
        timeout_seconds=60, finished_at=at, claude=ClaudeResult(total_cost_usd=cost, usage=usage),
    )  # fmt: skip


async def test_a_key_past_its_daily_budget_is_refused_until_utc_midnight() -> None:
    store, _, service = _world(key_daily_usd=1.0)
    _spent(store, "c1", "k1", "p", 0.75)
    _spent(store, "c0", "k1", "p", 5.0, at=NOW - timedelta(days=1))  # yesterday's
    await service.check_budget(KEY, "p")
    _spent(store, "c2", "k1", "q", 0.25)
    with pytest.raises(BudgetExceeded) as err:
        await service.check_budget(KEY, "p")
    assert err.value.code == "BUDGET_EXCEEDED"
    assert err.value.details == {"budget": "key", "key": "k1", "limit_usd": 1.0,
                                 "spent_usd": 1.0, "resets_at": "2031-05-07T00:00:00Z"}  # fmt: skip
    assert err.value.retry_after == 6 * 3600
    await service.check_budget(OTHER, "p")  # another key's budget is its own


async def test_a_project_past_its_daily_budget_is_refused_for_every_key() -> None:
    store, _, service = _world(project_daily_usd=2.0)
    _spent(store, "c1", "k1", "p", 1.5)
    _spent(store, "c2", "k2", "p", 0.5)
    for key in (KEY, OTHER):
        with pytest.raises(BudgetExceeded) as err:
            await service.check_budget(key, "p")
        assert err.value.details["budget"] == "project"
        assert err.value.details["project"] == "p"
    await service.check_budget(KEY, "q")


async def test_a_projects_own_budget_wins_over_the_default() -> None:
    store, backend, service = _world(project_daily_usd=100.0)
    backend.add_project("r", daily_budget_usd=0.5)
    _spent(store, "c1", "k1", "r", 0.5)
    with pytest.raises(BudgetExceeded) as err:
        await service.check_budget(KEY, "r")
    assert err.value.details["limit_usd"] == 0.5


async def test_no_budget_refuses_nothing() -> None:
    store, _, service = _world()
    _spent(store, "c1", "k1", "p", 1e6)
    await service.check_budget(KEY, "p")
