"""REST handlers: discovery, version, and list/get/watch of pods and configmaps.

Responses copy the real server's shapes (lists without per-item kind, Status errors, Table
rendering for kubectl) so both ``kubernetes_asyncio`` and ``kubectl`` accept them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .labels import SelectorError, parse_field_selector, parse_label_selector
from .objects import Obj, make_namespace, not_found, status_doc, truthy
from .state import Store
from .watch import KINDS, WatchParams, WatchStream

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-fake",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_VERBS = ["get", "list", "watch"]
RESOURCES = [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
     "verbs": _VERBS, "shortNames": ["po"], "categories": ["all"]},
    {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
     "verbs": ["create", "get"]},
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "verbs": ["get", "list"], "shortNames": ["ns"]},
    {"name": "configmaps", "singularName": "configmap", "namespaced": True,
     "kind": "ConfigMap", "verbs": _VERBS, "shortNames": ["cm"]},
]  # fmt: skip


def error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_doc(code, reason, message), status=code)


def _age(obj: Obj) -> str:
    created = datetime.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    seconds = int((datetime.now(UTC) - created.replace(tzinfo=UTC)).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def _pod_cells(pod: Obj) -> list[Any]:
    statuses = pod["status"].get("containerStatuses", [])
    ready = sum(1 for s in statuses if s["ready"])
    restarts = sum(s["restartCount"] for s in statuses)
    ready_col = f"{ready}/{len(pod['spec']['containers'])}"
    return [pod["metadata"]["name"], ready_col, pod["status"].get("phase", ""), restarts, _age(pod)]


def _cm_cells(cm: Obj) -> list[Any]:
    return [cm["metadata"]["name"], len(cm.get("data", {})), _age(cm)]


_TABLES: dict[str, tuple[list[tuple[str, str]], Callable[[Obj], list[Any]]]] = {
    "pods": (
        [("Name", "string"), ("Ready", "string"), ("Status", "string"),
         ("Restarts", "integer"), ("Age", "string")],
        _pod_cells,
    ),
    "configmaps": ([("Name", "string"), ("Data", "integer"), ("Age", "string")], _cm_cells),
}  # fmt: skip


def as_table(resource: str, items: list[Obj], rv: int) -> Obj:
    """The ``meta.k8s.io/v1`` Table kubectl asks for with ``Accept: ...;as=Table``."""
    columns, cells = _TABLES[resource]
    rows = [
        {
            "cells": cells(item),
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": item["metadata"],
            },
        }
        for item in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n,
             "priority": 0}
            for n, t in columns
        ],
        "rows": rows,
    }  # fmt: skip


def _since(raw: str | None) -> int | None:
    if raw in (None, "", "0"):
        return None
    try:
        return int(raw)
    except ValueError:
        raise SelectorError(f"invalid resource version: {raw!r}") from None


def _timeout(raw: str | None) -> float | None:
    return float(raw) if raw not in (None, "", "0") else None


class Api:
    """Route handlers over one :class:`Store`."""

    def __init__(self, store: Store, bookmark_interval: Callable[[], float]) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval

    def add_routes(self, app: web.Application) -> None:
        discovery = {
            "/version": self.version,
            "/api": self.api_versions,
            "/api/v1": self.api_resources,
            "/apis": self.api_groups,
        }
        for path, handler in discovery.items():  # the Python client asks for "/api/" etc.
            app.router.add_get(path, handler)
            app.router.add_get(path + "/", handler)
        res = "{res:" + "|".join(KINDS) + "}"
        app.router.add_get("/api/v1/namespaces", self.list_namespaces)
        app.router.add_get("/api/v1/namespaces/{ns}", self.get_namespace)
        app.router.add_get(f"/api/v1/{res}", self.list)
        app.router.add_get(f"/api/v1/namespaces/{{ns}}/{res}", self.list)
        app.router.add_get(f"/api/v1/namespaces/{{ns}}/{res}/{{name}}", self.get)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response(VERSION)

    async def api_versions(self, request: web.Request) -> web.Response:
        cidr = {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
        doc = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [cidr]}
        return web.json_response(doc)

    async def api_resources(self, request: web.Request) -> web.Response:
        doc = {"kind": "APIResourceList", "groupVersion": "v1", "resources": RESOURCES}
        return web.json_response(doc)

    async def api_groups(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def get_namespace(self, request: web.Request) -> web.Response:
        """Namespaces exist implicitly once anything was put in them (kubectl asks on 404)."""
        name = request.match_info["ns"]
        if name not in self.store.namespaces:
            return web.json_response(not_found("namespaces", name), status=404)
        return web.json_response(make_namespace(name))

    async def list_namespaces(self, request: web.Request) -> web.Response:
        items = [make_namespace(n) for n in sorted(self.store.namespaces)]
        meta = {"resourceVersion": str(self.store.rv)}
        return web.json_response(
            {"kind": "NamespaceList", "apiVersion": "v1", "metadata": meta, "items": items}
        )

    async def get(self, request: web.Request) -> web.Response:
        res, ns, name = (request.match_info[k] for k in ("res", "ns", "name"))
        obj = self.store.get(res, ns, name)
        if obj is None:
            return web.json_response(not_found(res, name), status=404)
        if "as=Table" in request.headers.get("Accept", ""):
            return web.json_response(as_table(res, [obj], self.store.rv))
        return web.json_response(obj)

    async def list(self, request: web.Request) -> web.StreamResponse:
        res, ns, q = request.match_info["res"], request.match_info.get("ns"), request.query
        try:
            labels = parse_label_selector(q.get("labelSelector"))
            fields = parse_field_selector(res, q.get("fieldSelector"))
            since = _since(q.get("resourceVersion"))
        except SelectorError as exc:
            return error(400, "BadRequest", str(exc))

        def matches(obj: Obj) -> bool:
            return labels(obj["metadata"].get("labels") or {}) and fields(obj)

        if truthy(q.get("watch")):
            bookmarks = truthy(q.get("allowWatchBookmarks"))
            params = WatchParams(
                res, ns, since, matches, bookmarks, _timeout(q.get("timeoutSeconds"))
            )
            return await WatchStream(self.store, params, self.bookmark_interval()).serve(request)
        items = [o for o in self.store.list(res, ns) if matches(o)]
        if "as=Table" in request.headers.get("Accept", ""):
            return web.json_response(as_table(res, items, self.store.rv))
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        meta = {"resourceVersion": str(self.store.rv)}
        return web.json_response({"kind": f"{KINDS[res]}List", "apiVersion": "v1",
                                  "metadata": meta, "items": items})  # fmt: skip
