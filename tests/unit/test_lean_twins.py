"""The lean routes and their documentation twins cannot drift: every lean route is built from
a twin (same path, methods, scope and parameter rules), the twins are never routed, and a twin
that declares a rule its lean route could not keep is refused when the app is built."""

from __future__ import annotations

from typing import Annotated, Any, cast

import pytest
from fastapi import APIRouter, Depends, Query
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from rdev.adapters.http.app import create_app
from rdev.adapters.http.deps import Caller, CommandsRead, KeyAuth
from rdev.adapters.http.lean import _Lean, is_twin, lean_routes, serves
from rdev.adapters.http.openapi import operations
from rdev.adapters.http.routes import projects, streams
from rdev.adapters.http.state import HttpServices
from rdev.domain.models import Scope

# FastAPI's own documentation routes; every other plain route must be a lean one
FASTAPI_OWN = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

APP = create_app(cast(HttpServices, None), max_body_bytes=1 << 20)
SPEC = APP.openapi()
ROUTES = list(iter_route_contexts(APP.routes))
LEAN = [r.original_route for r in ROUTES if isinstance(r.endpoint, _Lean)]


def test_no_twin_is_ever_routed() -> None:
    routed = [
        r for r in ROUTES if is_twin(r.original_route) or hasattr(r.endpoint, "__rdev_lean__")
    ]
    assert not routed
    twins = [*projects.twins.routes, *streams.twins.routes]
    assert twins and all(is_twin(t) for t in twins)
    endpoints = {id(r.endpoint) for r in ROUTES}
    assert not any(id(cast(APIRoute, t).endpoint) in endpoints for t in twins)


# Prometheus' scrape: text, its own token (adapters/http/metrics.py), not part of the API
NOT_THE_API = {"/metrics"}


def test_every_plain_route_is_a_lean_route_built_from_a_twin() -> None:
    plain = [
        r.original_route
        for r in ROUTES
        if type(r.original_route) is Route and r.path not in FASTAPI_OWN | NOT_THE_API
    ]
    assert plain and all(isinstance(r, Route) and isinstance(r.endpoint, _Lean) for r in plain)


def _documented(path: str) -> dict[str, dict[str, Any]]:
    return {m: op for m, p, op in operations(SPEC) if p == path}


@pytest.mark.parametrize("route", LEAN, ids=[cast(Route, r).path for r in LEAN])
def test_lean_route_matches_its_documentation(route: Any) -> None:
    """Path and methods as documented; the parameters it checks are the documented ones, with
    the same `required` and `maxLength`; and it authorizes for the documented scope."""
    documented = _documented(route.path)
    assert {m.upper() for m in documented} == route.methods
    for op in documented.values():
        params = {
            (p["in"], p["name"]): (
                bool(p.get("required")),
                next(
                    (
                        s.get("maxLength")
                        for s in p["schema"].get("anyOf", [p["schema"]])
                        if "maxLength" in s
                    ),
                    None,
                ),
            )
            for p in op.get("parameters", [])
        }
        lean = route.endpoint
        assert {(q.where, q.name): (q.required, q.max_length) for q in lean.params} == params
        assert op["security"] == [{"Bearer": []}, {"ApiKey": []}]


def test_the_lean_routes_keep_their_twins_limits() -> None:
    by_path = {r.path: r.endpoint for r in LEAN}
    stream = {(p.where, p.name): p for p in by_path["/projects/{project_id}/events"].params}
    assert stream["query", "stream_id"].required
    assert stream["query", "stream_id"].max_length == 100
    assert stream["header", "Last-Event-ID"].max_length == 200
    assert stream["query", "last_event_id"].max_length == 200
    assert by_path["/projects"].scope is Scope.PROJECTS_READ
    assert by_path["/commands/{command_id}/events"].scope is Scope.COMMANDS_READ


async def _handler(*args: Any) -> Any:
    raise AssertionError("never called")


def test_a_twin_with_a_rule_the_lean_route_cannot_keep_is_refused() -> None:
    twins = APIRouter()

    @twins.get("/x")
    @serves(_handler)
    async def twin(caller: CommandsRead, q: Annotated[str, Query(pattern="^a+$")]) -> None:
        """Documentation only."""

    with pytest.raises(TypeError, match="only strings and maxLength"):
        lean_routes(twins.routes)


def test_a_twin_with_a_number_parameter_is_refused() -> None:
    twins = APIRouter()

    @twins.get("/x")
    @serves(_handler)
    async def twin(caller: CommandsRead, n: Annotated[int, Query(le=5)] = 1) -> None:
        """Documentation only."""

    with pytest.raises(TypeError):
        lean_routes(twins.routes)


def test_a_twin_without_a_key_is_refused() -> None:
    twins = APIRouter()

    @twins.get("/x")
    @serves(_handler)
    async def twin() -> None:
        """Documentation only."""

    with pytest.raises(TypeError, match="KeyAuth"):
        lean_routes(twins.routes)


def test_a_route_on_a_twin_router_that_is_not_a_twin_is_refused() -> None:
    twins = APIRouter()

    @twins.get("/x")
    async def plain(caller: Annotated[Caller, Depends(KeyAuth(Scope.ADMIN))]) -> None:
        """Served by nothing."""

    with pytest.raises(TypeError, match="@serves"):
        lean_routes(twins.routes)
