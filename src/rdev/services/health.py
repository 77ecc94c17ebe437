"""Readiness: named checks run concurrently, each with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from rdev.domain.errors import RdevError

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    error: str | None = None


class Readiness:
    def __init__(self, checks: Mapping[str, Check], *, timeout: float = 2.0) -> None:
        self._checks = dict(checks)
        self._timeout = timeout
        self.draining = False

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> list[CheckResult]:
        results = await asyncio.gather(*(self._one(n, c) for n, c in self._checks.items()))
        if self.draining:
            results.append(CheckResult("shutdown", False, "shutting down"))
        return results

    async def _one(self, name: str, check: Check) -> CheckResult:
        try:
            await asyncio.wait_for(check(), timeout=self._timeout)
        except TimeoutError:
            return CheckResult(name, False, "timed out")
        except RdevError as e:
            return CheckResult(name, False, e.message)
        except Exception as e:
            return CheckResult(name, False, type(e).__name__)
        return CheckResult(name, True)
