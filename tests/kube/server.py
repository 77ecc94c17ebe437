"""``FakeKubeApi``: the fake API server's lifecycle, middleware and test-facing helpers.

Tests start it on 127.0.0.1 with a random port, write a kubeconfig for it and point the real
``kubernetes_asyncio`` client or ``kubectl`` at that file. Test code mutates cluster state
through the Python helpers here, never over HTTP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import yaml
from aiohttp import web

from .api import Api, error
from .exec import ExecHandler
from .faults import Faults, RequestLog, RequestRecord
from .objects import Obj, make_configmap, make_pod, set_pod_status
from .procs import ProcessTracker, processes_in_dir
from .session import ExecOptions
from .state import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REASONS = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests",
            502: "BadGateway", 504: "Timeout"}  # fmt: skip


class FakeKubeApi:
    """An in-process Kubernetes API server speaking plain HTTP on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = "fake-token",
        namespace: str = "default",
        history_limit: int = 1000,
        bookmark_interval: float = 1.0,
        exec_options: ExecOptions | None = None,
    ) -> None:
        self.root, self.token, self.namespace = Path(root), token, namespace
        self.bookmark_interval = bookmark_interval
        self.store = Store(history_limit)
        self.store.namespaces.add(namespace)
        self.faults = Faults(self.store, self._drop_connections)
        self.log = RequestLog()
        self.tracker = ProcessTracker()
        self.exec_options = exec_options or ExecOptions()
        self._exec = ExecHandler(
            self.store, self.faults, self.tracker, self.exec_options, self._dir
        )
        self._watchers_changed = asyncio.Event()
        self.store.on_watchers_changed = self._watchers_changed.set
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        Api(self.store, lambda: self.bookmark_interval).add_routes(app)
        exec_path = "/api/v1/namespaces/{ns}/pods/{name}/exec"
        app.router.add_get(exec_path, self._exec.handle)
        app.router.add_post(exec_path, self._exec.handle)
        app.router.add_route("*", "/{tail:.*}", _unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Close every connection, kill every process started in a pod, stop serving."""
        self._drop_connections()
        await self.tracker.kill_all(self.root)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: Path, namespace: str | None = None) -> Path:
        user: dict[str, str] = {"token": self.token} if self.token else {}
        context = {"cluster": "fake", "user": "fake", "namespace": namespace or self.namespace}
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
        }
        Path(path).write_text(yaml.safe_dump(doc))
        return Path(path)

    def _drop_connections(self) -> int:
        self._exec.abort_all()
        return self.store.drop_watchers()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = RequestRecord(
            request.method,
            request.path,
            tuple(request.query.items()),
            tuple(request.headers.items()),
        )
        self.log.add(record)
        if self.faults.down == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=503)
        if self.faults.down:
            return error(503, "ServiceUnavailable", "the server is currently unable to handle "
                         "the request")  # fmt: skip
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return error(401, "Unauthorized", "Unauthorized")
        action = self.faults.take(record)
        if action.delay:
            await asyncio.sleep(action.delay)
        if action.status:
            reason = _REASONS.get(action.status, "InternalError")
            response = error(action.status, reason, f"injected fault: {reason}")
            if action.status in (429, 503):
                response.headers["Retry-After"] = "1"
            return response
        return await handler(request)

    # cluster state -------------------------------------------------------------------------

    def _dir(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name

    def pod_dir(self, name: str, namespace: str | None = None) -> Path:
        """The local folder standing in for the pod's workspace (see ExecOptions.workspace)."""
        return self._dir(namespace or self.namespace, name)

    def create_pod(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        namespace: str | None = None,
        containers: Sequence[str] = ("dev",),
    ) -> Obj:
        ns = namespace or self.namespace
        if self.store.get("pods", ns, name) is not None:
            raise ValueError(f"pod {ns}/{name} already exists")
        pod = make_pod(name, ns, labels=labels, annotations=annotations, containers=containers)
        set_pod_status(pod, phase, ready)
        self.pod_dir(name, ns).mkdir(parents=True, exist_ok=True)
        return self.store.put("pods", pod)

    def update_pod(
        self,
        name: str,
        *,
        namespace: str | None = None,
        phase: str | None = None,
        ready: bool | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        mutate: Callable[[Obj], None] | None = None,
    ) -> Obj:
        """Change a pod (labels/annotations are replaced wholesale); emits MODIFIED."""
        pod = self.get_pod(name, namespace)
        if pod is None:
            raise KeyError(f"no pod {name!r}")
        if labels is not None:
            pod["metadata"]["labels"] = dict(labels)
        if annotations is not None:
            pod["metadata"]["annotations"] = dict(annotations)
        if phase is not None or ready is not None:
            old_ready = any(c["type"] == "Ready" and c["status"] == "True"
                            for c in pod["status"]["conditions"])  # fmt: skip
            set_pod_status(
                pod, phase or pod["status"]["phase"], old_ready if ready is None else ready
            )
        if mutate is not None:
            mutate(pod)
        return self.store.put("pods", pod)

    def get_pod(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.store.get("pods", namespace or self.namespace, name)

    def delete_pod(self, name: str, *, namespace: str | None = None) -> None:
        """Delete the pod: DELETED event, its exec streams cut, all its processes killed.

        The pod folder is kept (like a persistent workspace volume).
        """
        key = (namespace or self.namespace, name)
        if self.store.remove("pods", *key) is None:
            raise KeyError(f"no pod {name!r}")
        self._exec.abort_pod(key)
        self.tracker.kill_pod(key, self._dir(*key))

    def put_configmap(
        self,
        name: str,
        data: Mapping[str, str],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        ns = namespace or self.namespace
        cm = self.store.get("configmaps", ns, name) or make_configmap(name, ns, data, labels)
        cm["data"] = dict(data)
        if labels is not None:
            cm["metadata"]["labels"] = dict(labels)
        return self.store.put("configmaps", cm)

    def delete_configmap(self, name: str, *, namespace: str | None = None) -> None:
        if self.store.remove("configmaps", namespace or self.namespace, name) is None:
            raise KeyError(f"no configmap {name!r}")

    # inspection ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        return self.log.records

    async def wait_for_request(
        self, predicate: Callable[[RequestRecord], bool], *, count: int = 1, within: float = 10
    ) -> list[RequestRecord]:
        """Wait until ``count`` logged requests satisfy ``predicate``; returns them all."""
        return await self.log.wait_for(predicate, count=count, within=within)

    def running_processes(self, name: str, namespace: str | None = None) -> list[int]:
        """PIDs of exec'd commands (process group leaders) in the pod still running."""
        return self.tracker.running((namespace or self.namespace, name))

    def processes_in_pod_dir(self, name: str, namespace: str | None = None) -> list[int]:
        """Every live process whose cwd is inside the pod folder, however it was started."""
        return processes_in_dir(self.pod_dir(name, namespace))

    async def wait_for_watchers(
        self, count: int = 1, resource: str = "pods", within: float = 10
    ) -> None:
        """Wait until at least ``count`` watch streams on ``resource`` are open."""
        async with asyncio.timeout(within):
            while sum(w.resource == resource for w in self.store.watchers) < count:
                self._watchers_changed.clear()
                await self._watchers_changed.wait()


async def _unknown(request: web.Request) -> web.Response:
    if request.method != "GET":
        return error(405, "MethodNotAllowed",
                     "the server does not allow this method on the requested resource")  # fmt: skip
    return error(404, "NotFound", "the server could not find the requested resource")
