"""Error answers become the SDK's exception families, from the stable code (or, for a code
this SDK does not know, the HTTP status), with message, details, request id and Retry-After."""

from __future__ import annotations

import httpx
import pytest

from rdev.client import (
    AuthError,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    QueueFull,
    RateLimited,
    RdevError,
    ServerError,
    Unavailable,
    ValidationError,
)
from rdev.client.errors import error_for


def answer(status: int, code: str, *, retry_after: str | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", "details": {"field": "x"}},
            "meta": {"request_id": "req-1"}}  # fmt: skip
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, json=body, headers=headers)


CASES = [
    (401, "UNAUTHORIZED", AuthError),
    (403, "FORBIDDEN", Forbidden),
    (404, "NOT_FOUND", NotFound),
    (422, "VALIDATION_ERROR", ValidationError),
    (422, "INVALID_SETTINGS", ValidationError),
    (400, "INVALID_EVENT_ID", ValidationError),
    (400, "COMMAND_REJECTED", ValidationError),
    (413, "PAYLOAD_TOO_LARGE", ValidationError),
    (409, "CONFLICT", Conflict),
    (409, "ALREADY_EXISTS", Conflict),
    (409, "IDEMPOTENCY_CONFLICT", Conflict),
    (409, "PROJECT_UNAVAILABLE", Conflict),
    (429, "QUEUE_FULL", QueueFull),
    (429, "RATE_LIMITED", RateLimited),
    (429, "TOO_MANY_STREAMS", RateLimited),
    (503, "UNAVAILABLE", Unavailable),
    (503, "OVERLOADED", Unavailable),
    (503, "DATABASE_UNAVAILABLE", Unavailable),
    (503, "BACKEND_UNAVAILABLE", Unavailable),
    (503, "SHUTTING_DOWN", Unavailable),
    (503, "NOT_READY", Unavailable),
    (502, "EXEC_FAILED", Unavailable),
    (500, "INTERNAL_ERROR", ServerError),
    # codes this SDK has never heard of: the family of their status
    (403, "IP_NOT_ALLOWED_SOMEDAY", Forbidden),
    (429, "SOME_NEW_LIMIT", RateLimited),
    (422, "NEW_RULE", ValidationError),
    (418, "TEAPOT", RdevError),
    (504, "GATEWAY_TIMEOUT", ServerError),
]


@pytest.mark.parametrize(("status", "code", "family"), CASES)
def test_each_code_maps_to_its_family(status: int, code: str, family: type[RdevError]) -> None:
    response = answer(status, code)
    err = error_for(response, response.content)
    assert type(err) is family
    assert (err.status, err.code, err.message) == (status, code, f"{code} happened")
    assert err.details == {"field": "x"} and err.request_id == "req-1"


@pytest.mark.parametrize(("code", "given", "expected"), [
    ("RATE_LIMITED", "3", 3.0), ("QUEUE_FULL", "1", 1.0), ("OVERLOADED", "0", 0.0),
    ("RATE_LIMITED", None, None), ("RATE_LIMITED", "Wed, 21 Oct 2015 07:28:00 GMT", None),
    ("RATE_LIMITED", "-5", 0.0),
])  # fmt: skip
def test_retry_after_is_read_in_seconds(
    code: str, given: str | None, expected: float | None
) -> None:
    response = answer(429 if code != "OVERLOADED" else 503, code, retry_after=given)
    assert error_for(response, response.content).retry_after == expected


@pytest.mark.parametrize("body", [b"", b"<html>bad gateway</html>", b'{"error": "flat"}', b"[1]"])
def test_an_answer_that_is_not_the_envelope_still_raises_by_status(body: bytes) -> None:
    err = error_for(httpx.Response(502, content=body), body)
    assert isinstance(err, Unavailable) and err.code == "HTTP_502" and err.status == 502


def test_the_client_raises_them_and_a_dead_server_is_connection_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/projects/gone":
            return answer(404, "NOT_FOUND")
        raise httpx.ConnectError("refused")

    with Client("http://rdev.test", "k", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(NotFound):
            c.project("gone")
        with pytest.raises(ConnectionFailed) as dead:
            c.projects()
    assert dead.value.code == "CONNECTION" and dead.value.status == 0


def test_models_keep_fields_they_do_not_know() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        project = {"id": "p", "name": "p", "status": "ready", "allowed_commands": ["shell"],
                   "brand_new_field": {"x": 1}}  # fmt: skip
        return httpx.Response(200, json={"data": [project], "meta": {"request_id": "r"}})

    with Client("http://rdev.test", "k", transport=httpx.MockTransport(handler)) as c:
        [project] = c.projects()
    assert project.id == "p" and project.raw["brand_new_field"] == {"x": 1}
