"""`lean.streams_first`: `GET /commands/{id}/events` is served by a shorter stack than the
app's, and nothing else is. What it leaves out must not change the answer: TokenGuard and
InFlightLimit pass that request through untouched (checked here for every case they act on),
and the lean route answers its own errors with the app's handlers (the e2e stream tests run
through it: tests/support.py serves `server_config`, which uses it)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from starlette.types import Message, Receive, Scope, Send

from rdev.adapters.http import errors
from rdev.adapters.http.app import create_app
from rdev.adapters.http.browser import TokenGuard
from rdev.adapters.http.capacity import InFlightLimit
from rdev.adapters.http.lean import PASSED_THROUGH, STREAM_PATH, streams_first
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import InvalidInput, NotFound, Unauthenticated


def _scope(method: str, path: str, query: bytes = b"") -> Scope:
    return {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": query, "headers": [], "root_path": "", "state": {},
    }  # fmt: skip


class _Inner:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


@pytest.mark.parametrize(
    "query",
    [b"", b"token=st_abc", b"last_event_id=c%3A1&token=x", b"%74oken=x", b"after=1"],
)
async def test_the_layers_left_out_pass_a_command_stream_through_untouched(query: bytes) -> None:
    """TokenGuard refuses a stream token anywhere but this route; InFlightLimit counts every
    request but streams, even when the replica is at its limit."""
    assert set(PASSED_THROUGH) == {TokenGuard, InFlightLimit}
    scope = _scope("GET", "/commands/cmd_0123/events", query)
    inner = _Inner()
    await TokenGuard(inner)(scope, _receive, _send)
    full = InFlightLimit(inner, limit=1)
    full.in_flight = 1
    await full(scope, _receive, _send)
    assert inner.calls == 2


async def test_those_layers_do_act_on_other_requests() -> None:
    """(So the test above could fail.)"""
    inner = _Inner()
    await TokenGuard(inner)(_scope("GET", "/projects", b"token=st_abc"), _receive, _send)
    full = InFlightLimit(inner, limit=1)
    full.in_flight = 1
    await full(_scope("GET", "/projects"), _receive, _send)
    assert inner.calls == 0


APP = create_app(cast(HttpServices, None), max_body_bytes=1 << 20)


class _Recorder:
    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)


@pytest.mark.parametrize(
    ("method", "path", "shortcut"),
    [
        ("GET", "/commands/cmd_0123/events", True),
        ("HEAD", "/commands/cmd_0123/events", False),
        ("POST", "/commands/cmd_0123/events", False),
        ("GET", "/commands/cmd_0123/events/", False),
        ("GET", "/commands/cmd_0123", False),
        ("GET", "/commands//events", False),
        ("GET", "/projects/demo/events", False),
        ("GET", "/commands/a/b/events", False),
        ("GET", "/health", False),
    ],
)
async def test_only_get_of_a_command_stream_takes_the_short_stack(
    method: str, path: str, shortcut: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _Recorder()

    async def through_the_app(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    monkeypatch.setattr(type(APP), "__call__", through_the_app)  # the app's own stack
    short = _Recorder()
    route = next(r for r in APP.router.routes if getattr(r, "path", None) == STREAM_PATH)
    monkeypatch.setattr(route, "app", short)
    served = streams_first(APP)  # the short stack ends at the route's app: `short`
    await served(_scope(method, path), _receive, _send)
    if shortcut:
        assert app.scopes == []
        (scope,) = short.scopes
        assert scope["path_params"] == {"command_id": "cmd_0123"}
        assert scope["app"] is APP
    else:
        assert (len(app.scopes), short.scopes) == (1, [])


@pytest.mark.parametrize(
    "exc",
    [
        Unauthenticated("no key"),
        NotFound("no such command"),
        InvalidInput("bad id", details={"field": "Last-Event-ID"}),
        RuntimeError("a bug"),
    ],
)
async def test_a_lean_route_answers_errors_as_the_apps_handlers_do(exc: Exception) -> None:
    from starlette.requests import Request

    request = Request(_scope("GET", "/commands/cmd_0123/events") | {"app": APP})
    ours = await errors.respond(request, exc)
    expected_handler: Any = None
    for cls in type(exc).__mro__:
        if cls in APP.exception_handlers:
            expected_handler = APP.exception_handlers[cls]
            break
    theirs = await expected_handler(request, exc)
    assert (ours.status_code, bytes(ours.body)) == (theirs.status_code, bytes(theirs.body))
