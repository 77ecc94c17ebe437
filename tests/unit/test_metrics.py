"""The metric definitions (adapters/metrics.py): what each recording function adds, and that
label values from outside stay within their allow-lists or caps."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rdev.adapters.metrics import Metrics, TimedEventLog
from rdev.domain.models import (
    ClaudeResult,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    Priority,
)
from rdev.domain.usage import ModelUsage, RunUsage, Tokens
from rdev.ports import Finish
from tests.fakes import T0, MemoryEventLog


def _series(metrics: Metrics, name: str) -> dict[frozenset[tuple[str, str]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        frozenset(s.labels.items()): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


def test_webhook_outcomes_outside_the_list_are_other() -> None:
    m = Metrics()
    for outcome in ("delivered", "delivered", "retried", "failed", "dropped", "x" * 500, "ok"):
        m.webhook_delivery(outcome)
    assert _series(m, "rdev_webhook_deliveries_total") == {
        frozenset({("outcome", "delivered")}): 2,
        frozenset({("outcome", "retried")}): 1,
        frozenset({("outcome", "failed")}): 1,
        frozenset({("outcome", "dropped")}): 1,
        frozenset({("outcome", "other")}): 2,
    }


def test_claude_usage_counts_cost_and_tokens_with_bounded_models_and_kinds() -> None:
    m = Metrics()
    m.claude_usage(project="demo", model="claude-sonnet-4", cost_usd=0.25,
                   tokens={"input": 100, "output": 20, "cache_read": 0, "weird": 5})  # fmt: skip
    m.claude_usage(project="demo", model="claude-sonnet-4", cost_usd=0.5, tokens={"input": 1})
    assert _series(m, "rdev_claude_cost_usd_total") == {
        frozenset({("project", "demo"), ("model", "claude-sonnet-4")}): 0.75
    }
    tokens = _series(m, "rdev_claude_tokens_total")
    key = {("project", "demo"), ("model", "claude-sonnet-4")}
    assert tokens == {
        frozenset(key | {("kind", "input")}): 101,
        frozenset(key | {("kind", "output")}): 20,
        frozenset(key | {("kind", "other")}): 5,
    }
    for i in range(200):  # a client choosing model names cannot grow the series past the cap
        m.claude_usage(project="demo", model=f"model-{i}", cost_usd=0.01, tokens={})
    m.claude_usage(project="demo", model="Not A Model!", cost_usd=0.01, tokens={})
    models = {dict(k)["model"] for k in _series(m, "rdev_claude_cost_usd_total")}
    assert len(models) == 51 and "other" in models and "Not A Model!" not in models


def test_auth_failure_reasons_outside_the_list_are_other() -> None:
    m = Metrics()
    for reason in ("missing", "wrong_secret", "rate_limited", "something-new"):
        m.auth_failed(reason)
    reasons = {dict(k)["reason"]: v for k, v in _series(m, "rdev_auth_failures_total").items()}
    assert reasons == {"missing": 1, "wrong_secret": 1, "rate_limited": 1, "other": 1}


def _command(started: bool = True) -> Command:
    return Command(
        id="c1", project_id="demo", kind=CommandKind.GIT, argv=("git", "status"),
        status=CommandStatus.RUNNING, priority=Priority.NORMAL, created_at=T0,
        timeout_seconds=60, started_at=T0 if started else None,
    )  # fmt: skip


async def test_a_command_end_counts_once_and_observes_its_run_time() -> None:
    m = Metrics()
    finish = Finish(status=CommandStatus.FAILED, finished_at=T0 + timedelta(seconds=7), exit_code=1)
    await m.command_ended(_command(), finish)
    await m.command_ended(_command(started=False), finish)  # never started: counted, not timed
    labels = frozenset({("project", "demo"), ("type", "git"), ("status", "failed")})
    assert _series(m, "rdev_commands_total") == {labels: 2}
    timed = frozenset({("project", "demo"), ("type", "git")})
    assert _series(m, "rdev_command_duration_seconds_count") == {timed: 1}
    assert _series(m, "rdev_command_duration_seconds_sum") == {timed: 7}


async def test_a_claude_commands_end_counts_its_own_cost_and_tokens_per_model() -> None:
    m = Metrics()
    own = RunUsage(
        cost_usd=0.3,
        models=(
            ModelUsage("claude-sonnet-4", 0.25, Tokens(input=100, output=20, cache_read=7)),
            ModelUsage("claude-haiku-4", 0.05, Tokens(input=10, output=2)),
        ),
    )
    # the CLI's figure (total_cost_usd) is cumulative over a resumed session: never counted
    claude = ClaudeResult(session_id="s", total_cost_usd=9.99, usage=own)
    finish = Finish(status=CommandStatus.SUCCEEDED, finished_at=T0, exit_code=0, claude=claude)
    await m.command_ended(replace(_command(), kind=CommandKind.CLAUDE), finish)
    await m.command_ended(_command(), Finish(status=CommandStatus.SUCCEEDED, finished_at=T0))
    assert _series(m, "rdev_claude_cost_usd_total") == {
        frozenset({("project", "demo"), ("model", "claude-sonnet-4")}): 0.25,
        frozenset({("project", "demo"), ("model", "claude-haiku-4")}): 0.05,
    }
    tokens = {
        (dict(k)["model"], dict(k)["kind"]): v
        for k, v in _series(m, "rdev_claude_tokens_total").items()
    }
    assert tokens == {
        ("claude-sonnet-4", "input"): 100, ("claude-sonnet-4", "output"): 20,
        ("claude-sonnet-4", "cache_read"): 7,
        ("claude-haiku-4", "input"): 10, ("claude-haiku-4", "output"): 2,
    }  # fmt: skip


async def test_timed_event_log_observes_each_batch_and_passes_everything_through() -> None:
    m = Metrics()
    inner = MemoryEventLog()
    log = TimedEventLog(inner, m)
    batch = [Event("c1", seq, EventType.OUTPUT, {"line": str(seq)}) for seq in (1, 2, 3)]
    await log.append(batch[:2])
    await log.append(batch[2:])
    assert _series(m, "rdev_event_log_write_seconds_count") == {frozenset(): 2}
    assert inner.appends == 2
    assert [e.seq for e in await log.read("c1", after=1, limit=10)] == [2, 3]
    assert await log.last_seq("c1") == 3


def test_gauges_read_at_scrape_time_drop_projects_that_are_gone() -> None:
    m = Metrics()
    m.set_running({"a": 2, "b": 1})
    m.set_running({"b": 1})
    assert _series(m, "rdev_running_commands") == {frozenset({("project", "b")}): 1}
    m.set_queue_depth({"a": 3})
    m.set_queue_depth({})
    assert _series(m, "rdev_queue_depth") == {}
    m.set_breaker("half_open")
    states = {dict(k)["state"]: v for k, v in _series(m, "rdev_kubernetes_circuit_state").items()}
    assert states == {"closed": 0, "open": 0, "half_open": 1}


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.events_sent(5)
    assert _series(a, "rdev_sse_events_sent_total") == {frozenset(): 5}
    assert _series(b, "rdev_sse_events_sent_total") == {frozenset(): 0}


def test_request_durations_are_cumulative_buckets_with_count_and_sum() -> None:
    m = Metrics()
    for seconds in (0.001, 0.0005, 0.003, 20.0):  # 0.001 sits on a bound: le is inclusive
        m.request_done("/health", "GET", 200, seconds)
    m.request_done("unmatched", "other", 404, 0.2)
    labels = {("endpoint", "/health"), ("method", "GET"), ("status", "200")}
    buckets = {
        dict(k)["le"]: v
        for k, v in _series(m, "rdev_api_request_duration_seconds_bucket").items()
        if labels <= k
    }
    assert buckets["0.001"] == 2 and buckets["0.0025"] == 2 and buckets["0.005"] == 3
    assert buckets["10.0"] == 3 and buckets["+Inf"] == 4
    assert _series(m, "rdev_api_request_duration_seconds_count")[frozenset(labels)] == 4
    assert _series(m, "rdev_api_request_duration_seconds_sum")[frozenset(labels)] == 20.0045
    other = {("endpoint", "unmatched"), ("method", "other"), ("status", "404")}
    assert _series(m, "rdev_api_request_duration_seconds_count")[frozenset(other)] == 1
