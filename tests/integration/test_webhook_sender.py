"""One delivery attempt against a real receiver on loopback, through the pinned transport: the
receiver verifies the signature; a redirect is not followed; the timeout ends a slow attempt;
and a name that resolves to an allowed address once and to a private one the next time is
refused at delivery, before anything is sent."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rdev.adapters.webhooks.sender import Sender
from rdev.adapters.webhooks.transport import PinnedTransport
from rdev.domain.ssrf import parse_cidrs
from rdev.domain.webhooks import Claimed, Delivery, DeliveryStatus, WebhookEvent
from tests.webhook_receiver import receiver, redirector

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def claimed(url: str, payload: str = '{"type":"webhook.ping","data":{}}') -> Claimed:
    delivery = Delivery(
        id="msg_1", webhook_id="wh_1", event=WebhookEvent.PING, payload=payload,
        status=DeliveryStatus.PENDING, created_at=datetime.now(UTC), next_attempt_at=None,
    )  # fmt: skip
    return Claimed(delivery, url, SECRET, 1)


def sender(resolver=None, timeout: float = 5.0) -> Sender:  # type: ignore[no-untyped-def]
    kwargs = {"resolver": resolver} if resolver else {}
    transport = PinnedTransport(allowed=parse_cidrs("127.0.0.1/32"), **kwargs)
    return Sender(transport, timeout_seconds=timeout, clock=lambda: datetime.now(UTC))


async def test_an_attempt_is_signed_and_verifies_at_the_receiver() -> None:
    async with receiver(secret=SECRET) as rec:
        s = sender()
        try:
            attempt, ok = await s.send(claimed(rec.url))
        finally:
            await s.close()
    assert ok and attempt.status_code == 200 and attempt.response_prefix == "ok"
    (got,) = rec.received
    assert got.verified and got.msg_id == "msg_1" and got.body["type"] == "webhook.ping"


async def test_a_name_rebound_to_a_private_address_is_refused_at_delivery() -> None:
    answers = [["127.0.0.1"], ["10.0.0.7"]]

    async def lying(host: str, port: int) -> list[str]:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    async with receiver(secret=SECRET) as rec:
        url = rec.url.replace("127.0.0.1", "hooks.test")
        s = sender(lying)
        try:
            first, ok1 = await s.send(claimed(url))
            second, ok2 = await s.send(claimed(url))
        finally:
            await s.close()
    assert ok1 and first.status_code == 200
    assert not ok2 and second.status_code is None and second.error == "refused: private"
    assert len(rec.received) == 1  # nothing reached the receiver the second time


async def test_a_slow_receiver_is_cut_at_the_timeout() -> None:
    async with receiver(secret=SECRET, delay=30) as rec:
        s = sender(timeout=0.5)
        start = time.monotonic()
        try:
            attempt, ok = await s.send(claimed(rec.url))
        finally:
            await s.close()
    assert not ok and attempt.error == "timeout" and time.monotonic() - start < 3


async def test_a_redirect_is_not_followed() -> None:
    async with receiver(secret=SECRET) as rec, redirector(rec.url) as url:
        s = sender()
        try:
            attempt, ok = await s.send(claimed(url))
        finally:
            await s.close()
    assert not ok and attempt.status_code == 307 and attempt.error == "redirect not followed"
    assert rec.received == []
