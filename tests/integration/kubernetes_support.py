"""Shared fixtures and helpers for the Kubernetes backend tests, which run the real backend (and
the real kubernetes_asyncio client) against the fake API server in tests/kube."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rdev.adapters.kubernetes import KubernetesBackend
from rdev.ports import Execution, ExitStatus
from tests.kube.server import FakeKubeApi

PROJECT = {"rdev.orchard9.ai/project": "true"}
FAST = {
    "backoff_base": 0.05,
    "backoff_cap": 0.5,
    "breaker_threshold": 3,
    "breaker_reset_seconds": 1.0,
    "sync_timeout": 5.0,
    "control_timeout": 5.0,
}

MakeBackend = Callable[..., Awaitable[KubernetesBackend]]


def labels(name: str | None = None, **extra: str) -> dict[str, str]:
    out = dict(PROJECT)
    if name is not None:
        out["rdev.orchard9.ai/name"] = name
    out.update({k.replace("__", "/"): v for k, v in extra.items()})
    return out


@pytest.fixture
async def make_backend(kubeconfig: Path) -> AsyncIterator[MakeBackend]:
    made: list[KubernetesBackend] = []

    async def make(**tuning: Any) -> KubernetesBackend:
        backend = KubernetesBackend(
            namespace="default", kubeconfig=str(kubeconfig), **(FAST | tuning)
        )
        made.append(backend)
        await backend.start()
        return backend

    yield make
    for backend in made:
        await backend.close()


async def eventually(check: Callable[[], Awaitable[Any] | Any], within: float = 1.0) -> Any:
    """Poll until `check` neither raises nor returns a falsy value other than None (so a
    `check()` that returns None counts once it stops raising); fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result or result is None:
                return result
            problem: object = result
        except Exception as e:
            problem = e
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within} s: {problem!r}")
        await asyncio.sleep(0.02)


async def drain(
    execution: Execution, chunks: list[tuple[str, bytes]] | None = None
) -> tuple[list[tuple[str, bytes]], ExitStatus]:
    """Consume output and wait, as the runner does: chunks in order (appended to `chunks` as
    they arrive, so a test can watch them), then the exit status."""
    chunks = [] if chunks is None else chunks

    async def pump() -> None:
        async for chunk in execution.output():
            chunks.append((chunk.stream, chunk.data))

    pumping = asyncio.create_task(pump())
    status = await execution.wait()
    await pumping
    return chunks, status


def joined(chunks: list[tuple[str, bytes]], stream: str) -> bytes:
    return b"".join(data for name, data in chunks if name == stream)


def exec_requests(kube_api: FakeKubeApi, pod: str = "p") -> list[Any]:
    return [r for r in kube_api.requests if r.path.endswith(f"/pods/{pod}/exec")]


def wrapper_token(record: Any) -> str:
    """The token of a wrapped command: `sh -c RUN rdev TOKEN …`."""
    commands = [v for k, v in record.query if k == "command"]
    assert commands[:2] == ["sh", "-c"] and commands[3] == "rdev"
    return str(commands[4])
