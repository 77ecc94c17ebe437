"""The OpenAPI document: FastAPI's, from the mounted routes and the lean routes' twins (which
are never mounted, see lean.py), finished with what FastAPI cannot say by itself:

- a key is presented either as `Authorization: Bearer` or as `X-API-Key`: every operation
  behind `KeyAuth` accepts both schemes;
- each error response is the envelope `Error<status>`, whose `error.code` is the enum of the
  codes that come with that status, derived from the one error table (codes.py), and its
  description lists them."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute

from rdev.adapters.http import codes
from rdev.adapters.http.deps import KeyAuth

BEARER = "Bearer"
BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "rdev_sk_<id>_<secret>",
    "description": "An rdev API key as `Authorization: Bearer <key>` (or see ApiKey).",
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def install(app: FastAPI, twins: Sequence[BaseRoute]) -> None:
    """Serve the finished document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=[*app.routes, *twins],
            )
            finish(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the document."""
    return [
        (method, path, op)
        for path, item in schema.get("paths", {}).items()
        for method, op in item.items()
        if method in _METHODS
    ]


def finish(schema: dict[str, Any]) -> None:
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER] = BEARER_SCHEME
    by_status = codes.by_status()
    for _method, _path, op in operations(schema):
        security = op.get("security")
        if security and {KeyAuth.scheme_name: []} in security:
            op["security"] = [{BEARER: []}, {KeyAuth.scheme_name: []}]
        for status, response in op.get("responses", {}).items():
            if status.isdigit() and int(status) >= 400 and int(status) in by_status:
                _with_codes(schema, int(status), response, by_status[int(status)])


def _with_codes(
    schema: dict[str, Any], status: int, response: dict[str, Any], known: list[str]
) -> None:
    """This error response as the envelope `Error<status>`, its `code` one of `known`."""
    content = response.get("content", {}).get("application/json")
    if content is None or "error" not in content["schema"].get("properties", {}):
        return
    name = f"Error{status}"
    components = schema["components"].setdefault("schemas", {})
    if name not in components:
        body = copy.deepcopy(content["schema"])
        body["title"] = name
        body["properties"]["error"]["properties"]["code"] = {
            "type": "string",
            "enum": known,
            "description": "A stable code: see docs/errors.md",
        }
        components[name] = body
    content["schema"] = {"$ref": f"#/components/schemas/{name}"}
    listed = ", ".join(f"`{c}`" for c in known)
    response["description"] = f"{response.get('description', '').rstrip()} Codes: {listed}."
