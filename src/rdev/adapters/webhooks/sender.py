"""One delivery attempt: sign the body (Standard Webhooks, `standardwebhooks`) and POST it with
httpx through the pinned transport, no redirects followed, the whole attempt within a
timeout. The outcome is an `Attempt`; nothing here raises for a receiver's failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import httpx
from standardwebhooks import Webhook as Signer

from rdev.domain.errors import WebhookUrlRefused
from rdev.domain.webhooks import Attempt, Claimed

PREFIX_BYTES = 512
USER_AGENT = "rdev-webhooks/1"


def signed_headers(secret: str, msg_id: str, at: datetime, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Signer(secret).sign(msg_id, at, body),
    }


class Sender:
    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        timeout_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._timeout = timeout_seconds
        self._clock = clock
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, timeout=timeout_seconds
        )

    async def send(self, claimed: Claimed) -> tuple[Attempt, bool]:
        """The attempt and whether it succeeded (a 2xx answer)."""
        at = self._clock()
        start = time.monotonic()
        delivery = claimed.delivery
        headers = signed_headers(claimed.secret, delivery.id, at, delivery.payload)
        status: int | None = None
        prefix, error = "", None
        try:
            async with asyncio.timeout(self._timeout):
                status, prefix = await self._post(claimed.url, delivery.payload, headers)
        except WebhookUrlRefused as e:
            error = f"refused: {e.details.get('class') or e.details.get('reason')}"
        except TimeoutError:
            error = "timeout"
        except httpx.HTTPError as e:
            error = type(e).__name__
        if status is not None and not 200 <= status < 300:
            error = "redirect not followed" if 300 <= status < 400 else f"HTTP {status}"
        latency = int((time.monotonic() - start) * 1000)
        attempt = Attempt(at, status, latency, error, prefix)
        return attempt, error is None

    async def _post(self, url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            taken = b""
            async for chunk in response.aiter_raw():
                taken += chunk
                if len(taken) >= PREFIX_BYTES:
                    break
            return response.status_code, taken[:PREFIX_BYTES].decode("utf-8", "replace")

    async def close(self) -> None:
        await self._client.aclose()
