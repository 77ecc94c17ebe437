"""The core's `Tracer` (ports.py) on the OpenTelemetry API.

A command's trace is carried in memory: `carry` at submit keeps the request's traceparent,
`carried` hands it to the runner when the command is claimed on the same replica. A command
claimed by another replica starts a trace of its own (its span has the command id, so the two
are found together); storing the traceparent with the command would need a column, and the
same-replica case is the common one (the submitting replica is woken first)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_CARRIED_MAX = 10_000  # commands claimed elsewhere are never asked for: keep the newest


class _Span:
    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set(self, key: str, value: str | int | bool) -> None:
        self._span.set_attribute(key, value)

    def event(self, name: str) -> None:
        self._span.add_event(name)


class OtelTracer:
    def __init__(self, provider: Any) -> None:
        self._tracer = provider.get_tracer("rdev")
        self._carried: OrderedDict[str, str] = OrderedDict()

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        parent: str | None = None,
        start: datetime | None = None,
        attributes: Mapping[str, str | int | bool] | None = None,
    ) -> Iterator[_Span]:
        ctx = from_traceparent(parent) if parent else None
        start_ns = int(start.timestamp() * 1e9) if start is not None else None
        with self._tracer.start_as_current_span(
            name, context=ctx, start_time=start_ns, attributes=attributes
        ) as span:
            yield _Span(span)

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    def carry(self, command_id: str) -> None:
        parent = self.traceparent()
        if parent is None:
            return
        self._carried[command_id] = parent
        while len(self._carried) > _CARRIED_MAX:
            self._carried.popitem(last=False)

    def carried(self, command_id: str) -> str | None:
        return self._carried.pop(command_id, None)


def from_traceparent(value: str) -> context.Context:
    return _PROPAGATOR.extract({"traceparent": value})
