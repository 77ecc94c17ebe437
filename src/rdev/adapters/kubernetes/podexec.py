"""Opening exec websockets into a discovered pod, behind the circuit breaker.

HTTP answers before the upgrade become domain errors here (404 pod gone, 403 forbidden → the
command could not start; 5xx, 401, refused connections → the backend is unavailable and the
breaker counts it). Nothing from aiohttp leaves this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from rdev.adapters.kubernetes.breaker import ApiBreaker
from rdev.adapters.kubernetes.channel import Completed, ExecChannel
from rdev.adapters.kubernetes.client import KubeClient
from rdev.adapters.kubernetes.discovery import Target
from rdev.adapters.kubernetes.protocol import exec_path, exec_query, handshake_error
from rdev.domain.errors import BackendUnavailable, ExecFailed


class PodExec:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        breaker: ApiBreaker,
        *,
        connect_timeout: float,
        io_timeout: float,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._breaker = breaker
        self._connect_timeout = connect_timeout
        self.io_timeout = io_timeout

    async def open(self, target: Target, argv: Sequence[str], *, stdin: bool) -> ExecChannel:
        path = exec_path(self._namespace, target.pod)
        query = exec_query(argv, container=target.container, stdin=stdin)
        async with self._breaker.guard():
            try:
                async with asyncio.timeout(self._connect_timeout):
                    ws = await self._client.ws_connect(path, query)
            except aiohttp.WSServerHandshakeError as e:
                raise handshake_error(e.status, target.pod) from e
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise BackendUnavailable(
                    f"cannot reach the Kubernetes API for exec: {type(e).__name__}",
                    details={"reason": "unreachable"},
                ) from e
        return ExecChannel(ws)

    async def run(
        self,
        target: Target,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        seconds: float | None = None,
    ) -> Completed:
        """Run a short helper command to its end and collect its output."""
        channel = await self.open(target, argv, stdin=stdin is not None)
        try:
            async with asyncio.timeout(seconds or self.io_timeout):
                if stdin is not None:
                    await channel.send_stdin(stdin)
                return await channel.collect()
        except TimeoutError as e:
            await channel.abort()
            raise ExecFailed(
                f"helper command in pod {target.pod} timed out", details={"reason": "timeout"}
            ) from e
