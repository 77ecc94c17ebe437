"""The shutdown budget's arithmetic, and the settings that refuse a budget rdev cannot keep."""

from __future__ import annotations

import pytest

from rdev.config import ConfigError, load_settings
from rdev.runtime.shutdown import CLOSE_RESERVE, KILL_SLACK, ShutdownPlan

SETTINGS = ("RDEV_SHUTDOWN_BUDGET_SECONDS", "RDEV_SHUTDOWN_GRACE_SECONDS",
            "RDEV_SHUTDOWN_DRAIN_SECONDS", "RDEV_KILL_GRACE_SECONDS")  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("budget", "drain", "kill_grace"),
    [
        (20, 5, 5),  # the defaults
        (20, 0, 5),
        (20, 18, 5),
        (4, 0, 1),
        (7.5, 2, 0),
        (60, 10, 30),
        (3, 1, 0),
        (100, 98, 97),
    ],
)
def test_every_phase_ends_within_the_budget(budget: float, drain: float, kill_grace: float) -> None:
    plan = ShutdownPlan(budget=budget, drain=drain, kill_grace=kill_grace)
    assert plan.budget >= plan.minimum_budget
    # the listener closes, commands are stopped and requests are cut, all before the close
    assert 0 <= plan.listen_until <= plan.requests_until
    assert plan.command_grace + plan.kill_wait <= plan.requests_until
    assert plan.requests_until + CLOSE_RESERVE == plan.budget
    # the phases overlap: the drain does not delay the commands' deadline, nor they the drain
    assert plan.command_grace == plan.budget - CLOSE_RESERVE - kill_grace - KILL_SLACK
    assert plan.listen_until == drain


def test_defaults_fit_a_30_second_pod_with_a_5_second_pre_stop() -> None:
    settings = load_settings()
    plan = settings.shutdown_plan
    assert (plan.budget, plan.drain, plan.kill_grace) == (20, 5, 5)
    assert 5 + plan.budget < 30
    assert plan.command_grace == 12


def test_the_old_grace_setting_is_read_as_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDEV_SHUTDOWN_GRACE_SECONDS", "25")
    assert load_settings().shutdown_budget_seconds == 25
    monkeypatch.setenv("RDEV_SHUTDOWN_BUDGET_SECONDS", "12")
    assert load_settings().shutdown_budget_seconds == 12  # the new name wins


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "7.9"}, "RDEV_SHUTDOWN_BUDGET_SECONDS (7.9)"),
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "10", "RDEV_KILL_GRACE_SECONDS": "8"},
         "RDEV_SHUTDOWN_BUDGET_SECONDS (10)"),
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "4", "RDEV_SHUTDOWN_DRAIN_SECONDS": "0",
          "RDEV_KILL_GRACE_SECONDS": "1.5"}, "RDEV_SHUTDOWN_BUDGET_SECONDS (4)"),
        ({"RDEV_SHUTDOWN_DRAIN_SECONDS": "18.5"}, "RDEV_SHUTDOWN_DRAIN_SECONDS (18.5)"),
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "8", "RDEV_SHUTDOWN_DRAIN_SECONDS": "6.1"},
         "RDEV_SHUTDOWN_DRAIN_SECONDS (6.1)"),
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "0"}, "RDEV_SHUTDOWN_BUDGET_SECONDS"),
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "-5"}, "RDEV_SHUTDOWN_BUDGET_SECONDS"),
        ({"RDEV_SHUTDOWN_DRAIN_SECONDS": "-1"}, "RDEV_SHUTDOWN_DRAIN_SECONDS"),
        ({"RDEV_SHUTDOWN_BUDGET_SECONDS": "soon"}, "RDEV_SHUTDOWN_BUDGET_SECONDS"),
    ],
)  # fmt: skip
def test_a_budget_rdev_cannot_keep_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r"^invalid setting") as caught:
        load_settings()
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "env",
    [
        {"RDEV_SHUTDOWN_BUDGET_SECONDS": "8"},  # 5 + 1 + 2: just enough
        {"RDEV_SHUTDOWN_BUDGET_SECONDS": "8", "RDEV_SHUTDOWN_DRAIN_SECONDS": "6"},
        {"RDEV_SHUTDOWN_BUDGET_SECONDS": "3", "RDEV_SHUTDOWN_DRAIN_SECONDS": "0",
         "RDEV_KILL_GRACE_SECONDS": "0"},
        {"RDEV_SHUTDOWN_BUDGET_SECONDS": "3600", "RDEV_SHUTDOWN_DRAIN_SECONDS": "60"},
    ],
)  # fmt: skip
def test_a_budget_that_fits_is_accepted(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().shutdown_budget_seconds == float(env["RDEV_SHUTDOWN_BUDGET_SECONDS"])
