"""Prometheus metrics: every series rdev exports, defined in one place, on a registry of its
own per App (tests build many apps in one process; the default global registry would clash).

The core never imports prometheus_client: the dispatcher reports a command's end through its
`on_end` hook (`command_ended` here), the event log is timed by a wrapper (`TimedEventLog`),
and the gauges that describe state (queue depth, running commands, the Kubernetes breaker) are
read when Prometheus scrapes (`adapters/http/metrics.py`). The HTTP edge and the stream route
call the small methods below directly.

Label values are bounded whatever clients send: `project` only ever comes from a command (whose
project existed when it was submitted) or from the backend's project list; free-form values
from outside (webhook outcomes, Claude models, token kinds, auth-failure reasons) pass through
an allow-list or a capped set (`Bounded`) and otherwise become "other".

Hot paths stay cheap: request durations, event-log writes and SSE events go into `LoopHistogram`
and `LoopCounter` (plain lists and ints, no lock: they are only touched from the event loop,
which also renders the scrape; prometheus_client's Histogram takes a lock per bucket and per
sum, about 1 us an observation), the streams gauge keeps a child per project in a dict, and
streams count events per batch, not per event."""

from __future__ import annotations

import platform
import re
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from rdev.domain.models import Command, Event
from rdev.ports import EventLog, Finish

OTHER = "other"
COMMAND_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
AUTH_REASONS = frozenset(
    {"missing", "malformed", "unknown", "wrong_secret", "revoked", "expired", "rate_limited"}
)
WEBHOOK_OUTCOMES = frozenset({"delivered", "retried", "failed", "dropped"})
TOKEN_KINDS = frozenset({"input", "output", "cache_read", "cache_creation"})
BREAKER_STATES = ("closed", "open", "half_open")
_MODEL = re.compile(r"[a-z0-9][a-z0-9.\-]{0,79}")


class Bounded:
    """At most `cap` distinct values pass (matching `pattern`); the rest are "other"."""

    def __init__(self, cap: int, pattern: re.Pattern[str]) -> None:
        self._cap = cap
        self._pattern = pattern
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap or not self._pattern.fullmatch(value):
            return OTHER
        self._seen.add(value)
        return value


class LoopHistogram(Collector):
    """A labelled histogram for the event loop's thread only: observe is a bisect and two
    additions, and the scrape (on the same loop) renders the cumulative buckets."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]):
        self._name, self._doc, self._labels = name, doc, list(labels)
        self._bounds = list(buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}  # counts per bucket, +Inf, sum

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self._bounds) + 2)
        series[bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, series in list(self._series.items()):
            running, buckets = 0.0, []
            for bound, count in zip([*map(str, self._bounds), "+Inf"], series, strict=False):
                running += count
                buckets.append((bound, running))
            family.add_metric(list(labels), buckets, series[-1])
        yield family


class LoopCounter(Collector):
    """A counter without labels for the event loop's thread only: a plain integer."""

    def __init__(self, name: str, doc: str) -> None:
        self._name, self._doc = name, doc
        self.value = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._doc, value=self.value)


class Metrics:
    def __init__(self, *, version: str = "0.1.0", backend: str = "local") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        ProcessCollector(registry=r)  # process_*: memory, CPU, open descriptors (read at scrape)
        self.commands = Counter(
            "rdev_commands", "Commands ended by this replica.",
            ["project", "type", "status"], registry=r,
        )  # fmt: skip
        self.command_duration = Histogram(
            "rdev_command_duration_seconds", "Run time of commands ended by this replica.",
            ["project", "type"], buckets=COMMAND_BUCKETS, registry=r,
        )  # fmt: skip
        self.active_streams = Gauge(
            "rdev_active_streams", "SSE streams open on this replica.", ["project"], registry=r
        )
        self.auth_failures = Counter(
            "rdev_auth_failures", "Failed authentications, by reason.", ["reason"], registry=r
        )
        self.request_duration = LoopHistogram(
            "rdev_api_request_duration_seconds",
            "Time to the response's start, by route template, method and status.",
            ["endpoint", "method", "status"], REQUEST_BUCKETS,
        )  # fmt: skip
        r.register(self.request_duration)
        self.queue_depth = Gauge(
            "rdev_queue_depth", "Queued commands per project (database-wide).",
            ["project"], registry=r,
        )  # fmt: skip
        self.running = Gauge(
            "rdev_running_commands", "Commands running on this replica, per project.",
            ["project"], registry=r,
        )  # fmt: skip
        self.event_write = LoopHistogram(
            "rdev_event_log_write_seconds", "Time to write one batch of events to the log.",
            (), WRITE_BUCKETS,
        )  # fmt: skip
        r.register(self.event_write)
        self.sse_events = LoopCounter(
            "rdev_sse_events_sent", "Events sent to SSE clients by this replica."
        )
        r.register(self.sse_events)
        self.webhook_deliveries = Counter(
            "rdev_webhook_deliveries", "Webhook delivery attempts, by outcome.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.breaker = Gauge(
            "rdev_kubernetes_circuit_state",
            "The Kubernetes API circuit breaker: 1 for its current state.",
            ["state"], registry=r,
        )  # fmt: skip
        self.claude_cost = Counter(
            "rdev_claude_cost_usd", "Claude cost reported by finished runs, in USD.",
            ["project", "model"], registry=r,
        )  # fmt: skip
        self.claude_tokens = Counter(
            "rdev_claude_tokens", "Claude tokens reported by finished runs.",
            ["project", "model", "kind"], registry=r,
        )  # fmt: skip
        build = Gauge(
            "rdev_build_info", "Always 1; the labels say what runs.",
            ["version", "python", "backend"], registry=r,
        )  # fmt: skip
        build.labels(version, platform.python_version(), backend).set(1)
        self._model = Bounded(50, _MODEL)
        self._requests: dict[tuple[str, str, int], tuple[str, str, str]] = {}
        self._streams: dict[str, Any] = {}

    # -- the edge and the streams (hot: cached children, no labels() per call) --

    def request_done(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        labels = self._requests.get(key)
        if labels is None:
            labels = self._requests[key] = (endpoint, method, str(status))
        self.request_duration.observe(labels, seconds)

    def stream_opened(self, project: str) -> None:
        child = self._streams.get(project)
        if child is None:
            child = self._streams[project] = self.active_streams.labels(project)
        child.inc()

    def stream_closed(self, project: str) -> None:
        self._streams[project].dec()

    def events_sent(self, count: int) -> None:
        self.sse_events.value += count

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason if reason in AUTH_REASONS else OTHER).inc()

    # -- the core's hooks --

    async def command_ended(self, command: Command, finish: Finish) -> None:
        """The dispatcher's `on_end` (with the audit's): one count and one duration."""
        kind = command.kind.value
        self.commands.labels(command.project_id, kind, finish.status.value).inc()
        if command.started_at is not None:
            seconds = (finish.finished_at - command.started_at).total_seconds()
            self.command_duration.labels(command.project_id, kind).observe(max(0.0, seconds))
        usage = finish.claude.usage if finish.claude is not None else None
        for m in usage.models if usage is not None else ():  # the run's own, not cumulative
            self.claude_usage(
                project=command.project_id, model=m.model, cost_usd=m.cost_usd,
                tokens={"input": m.tokens.input, "output": m.tokens.output,
                        "cache_read": m.tokens.cache_read,
                        "cache_creation": m.tokens.cache_creation},
            )  # fmt: skip

    def set_running(self, by_project: Mapping[str, int]) -> None:
        self.running.clear()
        for project, count in by_project.items():
            self.running.labels(project).set(count)

    def set_queue_depth(self, by_project: Mapping[str, int]) -> None:
        self.queue_depth.clear()
        for project, count in by_project.items():
            self.queue_depth.labels(project).set(count)

    def set_breaker(self, state: str) -> None:
        for name in BREAKER_STATES:
            self.breaker.labels(name).set(1 if name == state else 0)

    def webhook_delivery(self, outcome: str) -> None:
        """One delivery attempt: delivered, retried, failed (gave up) or dropped."""
        self.webhook_deliveries.labels(outcome if outcome in WEBHOOK_OUTCOMES else OTHER).inc()

    def claude_usage(
        self, *, project: str, model: str, cost_usd: float | None, tokens: Mapping[str, int]
    ) -> None:
        """A finished Claude run's cost and tokens (`tokens`: kind → count)."""
        label = self._model(model)
        if cost_usd is not None and cost_usd > 0:
            self.claude_cost.labels(project, label).inc(cost_usd)
        for kind, count in tokens.items():
            if count > 0:
                name = kind if kind in TOKEN_KINDS else OTHER
                self.claude_tokens.labels(project, label, name).inc(count)


class TimedEventLog:
    """An EventLog whose appends are timed into `rdev_event_log_write_seconds` (one observation
    per batch); everything else is passed through."""

    def __init__(self, inner: EventLog, metrics: Metrics) -> None:
        self._inner = inner
        self._observe = metrics.event_write.observe

    async def append(self, events: Sequence[Event]) -> None:
        started = time.perf_counter()
        try:
            await self._inner.append(events)
        finally:
            self._observe((), time.perf_counter() - started)

    async def read(
        self, command_id: str, *, after: int, limit: int, decode: bool = True
    ) -> list[Event]:
        return await self._inner.read(command_id, after=after, limit=limit, decode=decode)

    async def last_seq(self, command_id: str) -> int:
        return await self._inner.last_seq(command_id)

    async def last_event(self, command_id: str) -> Event | None:
        return await self._inner.last_event(command_id)

    def read_output(self, command_id: str) -> AsyncIterator[str]:
        return self._inner.read_output(command_id)

    async def prune(self, before: datetime) -> int:
        return await self._inner.prune(before)
