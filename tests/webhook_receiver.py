"""A real webhook receiver for tests: an aiohttp server on loopback that verifies every
delivery with `standardwebhooks.Webhook(secret).verify(...)`, as a receiver would, and records
what it got and when. It can fail its first N deliveries (`fail_first`) or take its time
(`delay`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    msg_id: str
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived
    verified: bool
    answered: int


@dataclass
class Receiver:
    url: str
    secret: str = ""
    fail_first: int = 0
    status_on_failure: int = 500
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0

    def of_type(self, event: str) -> list[Received]:
        return [r for r in self.received if r.body.get("type") == event]

    def succeeded(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        verified = False
        body: dict[str, Any] = {}
        try:
            body = Verifier(self.secret).verify(raw, headers) if self.secret else {}
            verified = True
        except WebhookVerificationError:
            pass
        status = 200
        if len(self.received) < self.fail_first:
            status = self.status_on_failure
        item = Received(headers.get("webhook-id", ""), body, time.monotonic(), verified, status)
        self.received.append(item)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # the slow receiver under test, not a wait
        finally:
            self.inflight -= 1
        return web.Response(status=status, text="ok" if status == 200 else "try again")


@asynccontextmanager
async def receiver(**options: Any) -> AsyncIterator[Receiver]:
    rec = Receiver(url="", **options)
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@asynccontextmanager
async def redirector(location: str) -> AsyncIterator[str]:
    """A server answering every POST with 307 to `location`."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": location})

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()
