"""One circuit breaker (purgatory) in front of every Kubernetes API request.

When the API server is down, each request would otherwise wait for its own connection error;
after `threshold` consecutive failures the breaker opens and requests fail at once with
BackendUnavailable, then after `reset_seconds` it lets requests through again (half-open) and
closes on the first success, so rdev recovers without a restart. Only BackendUnavailable counts
as a failure: a 404 or a forbidden exec says nothing about the API's health.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from rdev.domain.errors import BackendUnavailable

CIRCUIT = "kubernetes-api"


def _not_an_outage(exc: BaseException) -> bool:
    return not isinstance(exc, BackendUnavailable)


class ApiBreaker:
    def __init__(self, *, threshold: int, reset_seconds: float) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold,
            default_ttl=reset_seconds,
            exclude=[(BaseException, _not_an_outage)],
        )

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run one API request; raise BackendUnavailable at once while the circuit is open."""
        breaker = await self._factory.get_breaker(CIRCUIT)
        try:
            async with breaker:
                yield
        except OpenedState as e:
            raise BackendUnavailable(
                "Kubernetes API circuit breaker is open", details={"reason": "circuit_open"}
            ) from e

    async def is_open(self) -> bool:
        """Open and still within its reset time (after that the next request probes)."""
        context = (await self._factory.get_breaker(CIRCUIT)).context
        opened_at = context.opened_at
        return (
            context.state == "opened"
            and opened_at is not None
            and time.time() < opened_at + self.reset_seconds
        )

    async def state(self) -> str:
        """closed, open (failing fast) or half_open (the next request probes), for metrics."""
        context = (await self._factory.get_breaker(CIRCUIT)).context
        if context.state == "closed":
            return "closed"
        return "open" if await self.is_open() else "half_open"
