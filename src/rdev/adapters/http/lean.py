"""Lean routes and their documentation twins, derived from one declaration.

The hottest endpoints (project reads, event streams) skip FastAPI's per-request routing and
dependency solving: they are plain Starlette routes whose endpoints are bare ASGI apps (an idle
stream then holds no FastAPI request machinery; see docs/performance.md). Each is declared
once, as a FastAPI route on a *twin* router marked `@serves(opener)`: the twin's path, methods
and parameters document the endpoint in OpenAPI, and `lean_routes` builds the Starlette route
from the twin: the same path and methods, and the twin's parameter rules (required, maxLength)
checked before the opener runs. The twin routers are never mounted (app.py adds them to the
OpenAPI document only), so no request is ever served by a twin.

Only what can be checked cheaply here may be declared on a twin (string parameters, required,
maxLength); anything else raises when the app is built, so a twin cannot promise a rule its
lean route does not keep."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from rdev.adapters.http.deps import Caller, KeyAuth, LeanHandler, caller_for
from rdev.adapters.http.state import HttpServices
from rdev.domain.errors import InvalidInput
from rdev.domain.models import Scope

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__rdev_lean__"
# schema keywords a twin's parameter may carry: documentation, or rules `_Param` checks
_KNOWN = {"type", "maxLength", "title", "description", "examples", "anyOf"}


Authorize = Callable[[Request, HttpServices, Scope], Awaitable[Caller]]


def serves(handler: LeanHandler, *, authorize: Authorize | None = None) -> Callable[[F], F]:
    """Mark a twin: `handler` answers its requests on a lean route, once the caller is
    authorized for the scope of the twin's `KeyAuth` (by `authorize`, where a route takes
    another credential besides a key, such as a stream token) and the parameters are
    checked."""

    def mark(twin: F) -> F:
        setattr(twin, _ATTR, (handler, authorize or caller_for))
        return twin

    return mark


@dataclass(frozen=True, slots=True)
class _Param:
    where: str  # "query", "header" or "path"
    name: str
    required: bool
    max_length: int | None

    def check(self, request: Request) -> None:
        if self.where == "query":
            value = request.query_params.get(self.name)
        elif self.where == "header":
            value = request.headers.get(self.name)
        else:
            value = request.path_params.get(self.name)
        if value is None or value == "":
            if self.required:
                raise InvalidInput(f"{self.name} is required", details={"field": self.name})
        elif self.max_length is not None and len(value) > self.max_length:
            raise InvalidInput(
                f"{self.name} is longer than {self.max_length} characters",
                details={"field": self.name},
            )


def _rules(schema: dict[str, Any], where: str) -> int | None:
    """The parameter's maxLength; a schema with rules `_Param` does not check is refused."""
    alternatives = schema.get("anyOf", [schema])
    max_length: int | None = None
    for alt in alternatives:
        unknown = set(alt) - _KNOWN
        if unknown or alt.get("type") not in ("string", "null"):
            raise TypeError(f"a lean {where} parameter allows only strings and maxLength: {alt}")
        max_length = alt.get("maxLength", max_length)
    return max_length


def _params(operation: dict[str, Any]) -> tuple[_Param, ...]:
    return tuple(
        _Param(
            where=p["in"],
            name=p["name"],
            required=bool(p.get("required")),
            max_length=_rules(p.get("schema", {}), p["in"]),
        )
        for p in operation.get("parameters", ())
    )


class _Lean:
    """A lean endpoint as a bare ASGI app: the caller authorized and the parameters checked
    (in that order, as FastAPI solves the twin), then the handler."""

    def __init__(
        self,
        handler: LeanHandler,
        authorize: Authorize,
        scope: Scope,
        params: tuple[_Param, ...],
    ) -> None:
        self.handler = handler
        self.authorize = authorize
        self.scope = scope
        self.params = params

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        svc: HttpServices = request.app.state.services
        caller = await self.authorize(request, svc, self.scope)
        for param in self.params:
            param.check(request)
        response = await self.handler(request, caller, svc)
        await response(scope, receive, send)


def _key_scope(dependant: Dependant) -> Scope:
    """The scope of the twin's `KeyAuth`: a lean route is authorized as its twin declares."""
    found = [d.call.scope for d in dependant.dependencies if isinstance(d.call, KeyAuth)]
    if len(found) != 1:
        raise TypeError(f"a twin declares exactly one KeyAuth, not {len(found)}")
    return found[0]


def lean_routes(twins: Sequence[BaseRoute]) -> list[Route]:
    """The Starlette routes that serve what the marked `twins` document."""
    marked = [r for r in twins if is_twin(r)]
    if len(marked) != len(twins):
        raise TypeError("every route of a twin router is a twin (@serves)")
    spec = get_openapi(title="twins", version="0", routes=marked)
    routes = []
    for twin in marked:
        assert isinstance(twin, APIRoute)
        methods = sorted(twin.methods or ())
        params = {_params(spec["paths"][twin.path_format][m.lower()]) for m in methods}
        if len(params) != 1:
            raise TypeError(f"{twin.path}: one lean route documents one set of parameters")
        handler, authorize = getattr(twin.endpoint, _ATTR)
        lean = _Lean(handler, authorize, _key_scope(twin.dependant), params.pop())
        route = Route(twin.path, lean, methods=methods)
        route.methods = set(methods)  # no implicit HEAD: the twin has none
        routes.append(route)
    return routes


def is_twin(route: BaseRoute) -> bool:
    return isinstance(route, APIRoute) and hasattr(route.endpoint, _ATTR)
