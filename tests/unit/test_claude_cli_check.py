"""services/claude_cli.py: the CLI is probed where commands run, once per key (the server, or a
project on Kubernetes), concurrent callers share one probe, and answers are cached (a missing
CLI briefly, so installing it takes effect soon)."""

from __future__ import annotations

import asyncio

import pytest

from rdev.domain.errors import ClaudeUnavailable, ExecFailed
from rdev.services.claude_cli import NEGATIVE_TTL, ClaudeCli
from tests.fakes import FakeBackend, FakeExecution


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answering(backend: FakeBackend, version: bytes = b"2.1.197 (Claude Code)\n") -> None:
    def script(ex: FakeExecution) -> None:
        ex.emit(version)
        ex.exit(0)

    backend.exec_error = None
    backend.on_exec = script


async def test_per_project_probes_are_cached_for_the_ttl() -> None:
    backend, clock = FakeBackend(), Clock()
    p, q = backend.add_project("p"), backend.add_project("q")
    answering(backend)
    cli = ClaudeCli(backend, "claude", ttl=60.0, clock=clock)
    assert await cli.check(p) == "2.1.197 (Claude Code)"
    assert await cli.check(p) == "2.1.197 (Claude Code)"
    assert len(backend.started) == 1
    assert backend.argv["exec0"] == ("claude", "--version")
    await cli.check(q)  # another project, another pod: probed on its own
    assert len(backend.started) == 2
    clock.now = 61.0
    await cli.check(p)
    assert len(backend.started) == 3
    report = await cli.report()
    assert report["per_project"] is True
    assert report["projects"]["p"] == {"found": True, "version": "2.1.197 (Claude Code)",
                                       "error": None}  # fmt: skip


async def test_a_missing_cli_is_refused_and_rechecked_soon() -> None:
    backend, clock = FakeBackend(), Clock()
    p = backend.add_project("p")
    backend.exec_error = ExecFailed("executable not found: claude (ENOENT)")
    cli = ClaudeCli(backend, "claude", ttl=300.0, clock=clock)
    with pytest.raises(ClaudeUnavailable) as caught:
        await cli.check(p)
    assert "executable not found" in caught.value.message
    assert "install" in caught.value.message and "in project p" in caught.value.message
    answering(backend)
    clock.now = NEGATIVE_TTL / 2
    with pytest.raises(ClaudeUnavailable):
        await cli.check(p)  # still cached
    clock.now = NEGATIVE_TTL + 0.1
    assert await cli.check(p)


async def test_a_cli_that_exits_non_zero_is_unavailable() -> None:
    backend = FakeBackend()
    p = backend.add_project("p")

    def broken(ex: FakeExecution) -> None:
        ex.emit(b"error: no\n")
        ex.exit(1)

    backend.on_exec = broken
    with pytest.raises(ClaudeUnavailable, match="exited with 1"):
        await ClaudeCli(backend, "claude").check(p)


async def test_concurrent_checks_share_one_probe() -> None:
    backend = FakeBackend()
    p = backend.add_project("p")
    gate = asyncio.Event()

    async def slow(ex: FakeExecution) -> None:
        async def later() -> None:
            await gate.wait()
            ex.emit(b"v1\n")
            ex.exit(0)

        asyncio.get_running_loop().create_task(later())

    backend.on_exec = slow
    cli = ClaudeCli(backend, "claude")
    checks = [asyncio.ensure_future(cli.check(p)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*checks) == ["v1"] * 5
    assert len(backend.started) == 1


async def test_a_server_wide_probe_serves_every_project() -> None:
    backend = FakeBackend()
    p, q = backend.add_project("p"), backend.add_project("q")
    calls: list[int] = []

    async def probe() -> tuple[str | None, str | None]:
        calls.append(1)
        return "2.1.197 (Claude Code)", None

    cli = ClaudeCli(backend, "claude", server_probe=probe)
    await cli.check(p)
    await cli.check(q)
    report = await cli.report()
    assert calls == [1] and backend.started == {}
    assert report == {"binary": "claude", "per_project": False, "found": True,
                      "version": "2.1.197 (Claude Code)", "error": None}  # fmt: skip
