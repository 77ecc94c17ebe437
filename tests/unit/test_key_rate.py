"""The per-key limit's window arithmetic and the bounds on a key's own rate."""

from __future__ import annotations

import math

import pytest

from rdev.adapters.http.movingwindow import MovingWindows
from rdev.adapters.http.ratelimit import Limits, default_window, key_item
from rdev.domain import policy
from rdev.domain.errors import InvalidInput, RateLimited


@pytest.mark.parametrize(
    ("rps", "burst", "window"),
    [(10, 20, 2), (1, 5, 5), (1000, 20, 1), (1000, 10_000, 10), (3, 10, 3), (0.5, 1, 2)],
)
def test_the_default_window_is_whole_seconds_of_the_rate(
    rps: float, burst: int, window: int
) -> None:
    assert default_window(rps, burst) == window


@pytest.mark.parametrize(
    ("rps", "window", "quota", "seconds"),
    [
        (10, 2, 20, 2),
        (0.5, 10, 5, 10),
        (0.5, 1, 1, 2),  # too slow for one request a second: the window grows
        (0.01, 2, 1, 100),
        (10_000, 1, 10_000, 1),
        (3, 3, 9, 3),
    ],
)
def test_a_keys_window_holds_its_rate(rps: float, window: int, quota: int, seconds: int) -> None:
    item = key_item(rps, window)
    assert (item.amount, item.multiples) == (quota, seconds)
    assert item.amount / item.multiples == pytest.approx(rps, rel=0.5)


@pytest.mark.parametrize(
    "value", [0, -1, -0.0, 10_000.01, math.inf, -math.inf, math.nan, True, "1", 1e308]
)
def test_a_keys_rate_out_of_bounds_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        policy.check_key_rate(value)  # type: ignore[arg-type]
    assert err.value.details == {"field": "rate_limit_rps"}


@pytest.mark.parametrize("value", [None, 0.001, 1, 2.5, 10_000])
def test_a_keys_rate_within_bounds_is_kept(value: float | None) -> None:
    got = policy.check_key_rate(value)
    assert got == value and (got is None or isinstance(got, float))


async def test_in_memory_the_budget_is_exact_and_the_quota_counts_down() -> None:
    limits = Limits(rps=1, burst=3, auth_failures_per_minute=5)
    try:
        left = [(await limits.check_key("k1")).remaining for _ in range(3)]
        assert left == [2, 1, 0]
        with pytest.raises(RateLimited) as over:
            await limits.check_key("k1")
        assert over.value.retry_after >= 1
        own = await limits.check_key("k2", 0.1)  # 1 per 10 s
        assert (own.quota, own.window, own.remaining) == (1, 10, 0)
    finally:
        await limits.close()


def test_the_memory_window_allows_the_quota_in_any_window_and_frees_as_it_moves() -> None:
    now = [100.0]
    windows = MovingWindows(lambda: now[0])
    got = []
    for t in (0.0, 0.5, 1.0):
        now[0] = 100.0 + t
        got.append(windows.take("k", 3, 2.0))
    assert [(a, left) for a, _, left in got] == [(True, 2), (True, 1), (True, 0)]
    now[0] = 101.9
    allowed, reset, left = windows.take("k", 3, 2.0)
    assert (allowed, left) == (False, 0) and reset == pytest.approx(0.1)  # the 100.0 one
    now[0] = 102.0  # the first request leaves the window: exactly one more fits
    assert windows.take("k", 3, 2.0)[0] is True
    assert windows.take("k", 3, 2.0)[0] is False
    assert windows.take("other", 3, 2.0) == (True, 2.0, 2)  # keys are apart
    now[0] = 200.0
    assert windows.take("k", 1, 2.0) == (True, 2.0, 0)  # a lower quota later holds too
