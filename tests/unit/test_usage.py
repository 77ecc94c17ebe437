"""A Claude run's own cost from the CLI's figures (domain/usage.py): no double counting over a
resumed chain, whether the CLI reports cumulative or per-run figures."""

from __future__ import annotations

from typing import Any

import pytest

from rdev.domain.usage import (
    ModelUsage,
    Reported,
    Tokens,
    parse_reported,
    resumed_session,
    run_usage,
)

OPUS = "claude-opus-4-8"


def result(
    cost: float | None, models: dict[str, tuple[float, int, int, int, int]], run: tuple[int, ...]
) -> dict[str, Any]:
    """A stream-json result message as the CLI writes it."""
    usage = dict(zip(("input_tokens", "output_tokens", "cache_read_input_tokens",
                      "cache_creation_input_tokens"), run, strict=True))  # fmt: skip
    return {
        "type": "result",
        "total_cost_usd": cost,
        "usage": usage | {"server_tool_use": {"web_search_requests": 0}},
        "modelUsage": {
            name: {
                "inputTokens": i,
                "outputTokens": o,
                "cacheReadInputTokens": r,
                "cacheCreationInputTokens": c,
                "costUSD": usd,
                "contextWindow": 200000,
            }
            for name, (usd, i, o, r, c) in models.items()
        },
    }


def cumulative_chain(turns: list[tuple[float, int, int, int, int]]) -> list[Reported]:
    """What a CLI that restores the session's cost state reports after each turn."""
    out, cost, tok = [], 0.0, [0, 0, 0, 0]
    for usd, *t in turns:
        cost += usd
        tok = [a + b for a, b in zip(tok, t, strict=True)]
        out.append(parse_reported(result(cost, {OPUS: (cost, *tok)}, tuple(t))))  # type: ignore[arg-type]
    return out


def per_run_chain(turns: list[tuple[float, int, int, int, int]]) -> list[Reported]:
    """What the pinned CLI reports in `--print` mode: each run's own figures."""
    return [parse_reported(result(usd, {OPUS: (usd, *t)}, tuple(t))) for usd, *t in turns]  # type: ignore[arg-type]


TURNS = [(0.25, 100, 10, 0, 50), (0.5, 200, 20, 40, 0), (0.125, 30, 5, 60, 0)]


@pytest.mark.parametrize("chain", [cumulative_chain, per_run_chain])
def test_the_run_costs_of_a_resumed_chain_add_up_to_what_was_spent(chain: Any) -> None:
    reported = chain(TURNS)
    runs = [
        run_usage(r, reported[i - 1] if i else None, model=None) for i, r in enumerate(reported)
    ]
    assert [r.cost_usd for r in runs] == [0.25, 0.5, 0.125]
    assert [r.models[0].tokens for r in runs] == [Tokens(*t) for _, *t in TURNS]
    assert sum(r.cost_usd for r in runs) == sum(t[0] for t in TURNS)


def test_a_first_run_costs_its_whole_figure() -> None:
    first = cumulative_chain(TURNS)[2]  # even a large figure: nothing came before in rdev
    assert run_usage(first, None, model=None).cost_usd == 0.875


def test_concurrent_resumes_of_one_point_each_subtract_the_same_baseline() -> None:
    base = cumulative_chain(TURNS[:1])[0]
    # two runs resumed from the same point: each reports the base plus its own turn
    a = parse_reported(result(0.75, {OPUS: (0.75, 300, 30, 40, 50)}, (200, 20, 40, 0)))
    b = parse_reported(result(0.375, {OPUS: (0.375, 130, 15, 60, 50)}, (30, 5, 60, 0)))
    assert run_usage(a, base, model=None).cost_usd == 0.5
    assert run_usage(b, base, model=None).cost_usd == 0.125


def test_a_resume_of_an_older_point_subtracts_that_points_figure() -> None:
    chain = cumulative_chain(TURNS)
    # resumed from the first turn again (the store gives the first run as baseline)
    again = parse_reported(result(0.375, {OPUS: (0.375, 130, 15, 60, 50)}, (30, 5, 60, 0)))
    assert run_usage(again, chain[0], model=None).cost_usd == 0.125


def test_spend_of_a_run_without_figures_falls_to_the_next_run_that_reports_it() -> None:
    chain = cumulative_chain(TURNS)
    # the second run was cancelled before its result: the third's baseline is the first run
    third = run_usage(chain[2], chain[0], model=None)
    assert third.cost_usd == 0.625
    assert third.models[0].tokens == Tokens(230, 25, 100, 0)


def test_a_cli_that_restarted_its_counter_is_not_subtracted() -> None:
    base = cumulative_chain(TURNS)[2]  # 0.875
    fresh = parse_reported(result(0.25, {OPUS: (0.25, 100, 10, 0, 50)}, (100, 10, 0, 50)))
    assert run_usage(fresh, base, model=None).cost_usd == 0.25


def test_a_new_model_in_a_continued_session_counts_whole() -> None:
    base = cumulative_chain(TURNS[:1])[0]
    later = parse_reported(
        result(0.5, {OPUS: (0.25, 100, 10, 0, 50), "claude-haiku-4-5": (0.25, 9, 9, 0, 0)},
               (9, 9, 0, 0))
    )  # fmt: skip
    usage = run_usage(later, base, model=None)
    assert usage.cost_usd == 0.25
    assert usage.models == (ModelUsage("claude-haiku-4-5", 0.25, Tokens(9, 9, 0, 0)),)


def test_a_result_without_model_usage_falls_back_to_usage_under_the_init_model() -> None:
    obj = {"type": "result", "total_cost_usd": 0.01,
           "usage": {"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 7}}  # fmt: skip
    usage = run_usage(parse_reported(obj), None, model="claude-sonnet-4-5")
    assert usage.models == (ModelUsage("claude-sonnet-4-5", 0.01, Tokens(5, 6, 7, 0)),)
    assert run_usage(parse_reported(obj), None, model=None).models[0].model == "unknown"


@pytest.mark.parametrize(
    "raw",
    [
        {"total_cost_usd": "0.5"},
        {"total_cost_usd": True},
        {"total_cost_usd": -1},
        {"total_cost_usd": float("nan")},
        {"total_cost_usd": 1e12},
        {"modelUsage": []},
        {"modelUsage": {"m": "x"}},
        {"modelUsage": {"": {"costUSD": 1}}},
        {"usage": "lots"},
    ],
)
def test_malformed_figures_count_as_absent(raw: dict[str, Any]) -> None:
    reported = parse_reported({"type": "result"} | raw)
    assert reported.cost_usd is None
    assert reported.models == ()
    assert reported.run_tokens is None


def test_token_counts_that_are_not_counts_are_zero() -> None:
    obj = {"modelUsage": {OPUS: {"inputTokens": -3, "outputTokens": "7", "costUSD": 0.1,
                                 "cacheReadInputTokens": True, "cacheCreationInputTokens": 4}}}  # fmt: skip
    assert parse_reported(obj).models == (ModelUsage(OPUS, 0.1, Tokens(0, 0, 0, 4)),)


def test_many_models_are_bounded() -> None:
    obj = {"modelUsage": {f"m{i}": {"costUSD": 0.0} for i in range(100)}}
    assert len(parse_reported(obj).models) == 20


@pytest.mark.parametrize(
    ("argv", "session"),
    [
        (("claude", "--print", "--resume=abc", "--", "hi"), "abc"),
        (("claude", "--print", "--", "--resume=abc"), None),  # the prompt, not an option
        (("claude", "--print", "--", "hi"), None),
    ],
)
def test_the_resumed_session_is_read_from_the_options_only(
    argv: tuple[str, ...], session: str | None
) -> None:
    assert resumed_session(argv) == session
