"""No tracing: the `Tracer` the core uses when OpenTelemetry is off or not installed. Each call
is a few attribute look-ups, so the core can trace unconditionally."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime


class _NoSpan:
    def set(self, key: str, value: str | int | bool) -> None:
        pass

    def event(self, name: str) -> None:
        pass


_NO_SPAN = _NoSpan()


class NoTracer:
    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        parent: str | None = None,
        start: datetime | None = None,
        attributes: Mapping[str, str | int | bool] | None = None,
    ) -> Iterator[_NoSpan]:
        yield _NO_SPAN

    def traceparent(self) -> str | None:
        return None

    def carry(self, command_id: str) -> None:
        pass

    def carried(self, command_id: str) -> str | None:
        return None


NO_TRACER = NoTracer()
