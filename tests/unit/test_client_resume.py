"""The SDK's stream resume against scripted answers (httpx.MockTransport, httpx's own twin of
a server): what makes it reconnect, what it sends as Last-Event-ID, what it yields (each event
once, in order), and when it gives up."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from rdev.client import AsyncClient, Client, ConnectionFailed, NotFound, RdevError, Unavailable

CID = "cmd_1"
SSE = {"content-type": "text/event-stream"}


def frame(event: str, data: dict[str, object], seq: int | str | None = None) -> str:
    head = f"id: {CID}:{seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


CONNECTED = frame("connected", {"project": "p", "stream_id": CID, "status": "running"})


def out(seq: int) -> str:
    return frame("output", {"line": f"l{seq}", "stream": "stdout"}, seq)


COMPLETE = frame("complete", {"status": "succeeded", "exit_code": 0}, "final")


def transient(code: str) -> str:
    return frame("error", {"code": code, "message": "reconnect"})


Answer = httpx.Response | Exception


class Script:
    """Answers each stream request with the next scripted answer; records Last-Event-ID."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.resumed_from: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.resumed_from.append(request.headers.get("last-event-id"))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def sse(*frames: str) -> httpx.Response:
    return httpx.Response(200, headers=SSE, content="".join(frames).encode())


def error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    body = {
        "error": {"code": code, "message": code.lower(), "details": {}},
        "meta": {"request_id": "r1"},
    }
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, json=body, headers=headers)


def read(script: Script | Callable[[httpx.Request], httpx.Response], **options: float) -> list[str]:
    with Client("http://rdev.test", "k", transport=httpx.MockTransport(script), **options) as c:
        return [f"{e.event}:{e.line or e.data.get('status', '')}" for e in c.events(CID)]


LINES = ["connected:running", "output:l1", "output:l2", "output:l3", "complete:succeeded"]


@pytest.mark.parametrize("code", ["SLOW_CONSUMER", "SHUTTING_DOWN"])
def test_a_transient_error_event_resumes_from_the_last_id_without_duplicates(code: str) -> None:
    script = Script(
        sse(CONNECTED, out(1), out(2), transient(code)),
        sse(CONNECTED, out(2), out(3), COMPLETE),  # a replica that replays one too many
    )
    assert read(script) == LINES
    assert script.resumed_from == [None, f"{CID}:2"]


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadError("reset"), httpx.RemoteProtocolError("incomplete chunked read"),
     httpx.ConnectError("refused"), httpx.ReadTimeout("silent")],
)  # fmt: skip
def test_a_network_failure_resumes(failure: Exception) -> None:
    script = Script(sse(CONNECTED, out(1)), failure, sse(CONNECTED, out(2), out(3), COMPLETE))
    assert read(script) == LINES
    assert script.resumed_from == [None, f"{CID}:1", f"{CID}:1"]


def test_a_stream_that_ends_without_complete_is_resumed() -> None:
    script = Script(sse(CONNECTED, out(1), out(2)), sse(CONNECTED, out(3), COMPLETE))
    assert read(script) == LINES
    assert script.resumed_from == [None, f"{CID}:2"]


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SHUTTING_DOWN"), (503, "DATABASE_UNAVAILABLE"), (429, "TOO_MANY_STREAMS"),
     (502, "BAD_GATEWAY")],
)  # fmt: skip
def test_a_busy_or_restarting_server_is_retried(status: int, code: str) -> None:
    script = Script(sse(CONNECTED, out(1), transient("SHUTTING_DOWN")),
                    error(status, code, "0"), sse(CONNECTED, out(2), out(3), COMPLETE))  # fmt: skip
    assert read(script) == LINES
    assert script.resumed_from == [None, f"{CID}:1", f"{CID}:1"]


def test_204_on_resume_means_nothing_more() -> None:
    script = Script(sse(CONNECTED, out(1), transient("SLOW_CONSUMER")), httpx.Response(204))
    assert read(script) == ["connected:running", "output:l1"]


@pytest.mark.parametrize(
    ("status", "code"), [(404, "NOT_FOUND"), (403, "FORBIDDEN"), (400, "INVALID_EVENT_ID"),
                         (401, "UNAUTHORIZED")],
)  # fmt: skip
def test_a_refusal_is_raised_not_retried(status: int, code: str) -> None:
    script = Script(sse(CONNECTED, out(1)), error(status, code))
    with pytest.raises(RdevError) as refused:
        read(script)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert script.answers == []  # asked once after the drop, then gave up


def test_heartbeats_are_left_out_unless_asked_for() -> None:
    beat = frame("heartbeat", {"timestamp": "t"})
    script = Script(sse(CONNECTED, beat, out(1), out(2), out(3), COMPLETE))
    assert read(script) == LINES


def test_an_unknown_error_event_is_raised() -> None:
    script = Script(sse(CONNECTED, out(1), frame("error", {"code": "WEIRD", "message": "no"})))
    with pytest.raises(RdevError) as raised:
        read(script)
    assert raised.value.code == "WEIRD"


def test_it_gives_up_when_nothing_arrives_for_resume_timeout() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(ConnectionFailed) as gave_up:
        read(refuse, resume_timeout=0.3)
    assert gave_up.value.code == "CONNECTION"


def test_a_server_that_stays_unavailable_is_reported_as_such() -> None:
    with pytest.raises(Unavailable) as gave_up:
        read(lambda request: error(503, "OVERLOADED", "0"), resume_timeout=0.3)
    assert gave_up.value.code == "OVERLOADED"


def test_the_initial_connect_is_not_retried_into_a_refusal() -> None:
    with pytest.raises(NotFound):
        read(Script(error(404, "NOT_FOUND")))


async def test_the_async_client_resumes_the_same_way() -> None:
    script = Script(
        sse(CONNECTED, out(1), out(2), transient("SLOW_CONSUMER")),
        httpx.ReadError("reset"),
        sse(CONNECTED, out(1), out(2), out(3), COMPLETE),
    )
    transport = httpx.MockTransport(script)
    async with AsyncClient("http://rdev.test", "k", transport=transport) as c:
        got = [e.line async for e in c.events(CID) if e.line]
    assert got == ["l1", "l2", "l3"]
    assert script.resumed_from == [None, f"{CID}:2", f"{CID}:2"]
