"""The pods/exec endpoint: checks done before the websocket upgrade, then a real process.

Commands run as local subprocesses in the pod folder (``root/<namespace>/<pod>``), each in a
new session so its process group can be killed like a container's. Container paths under the
workspace prefix (default ``/workspace``) are rewritten to the pod folder in every argument,
so ``sh -c 'cd /workspace/repo && git status'`` works unchanged.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

from aiohttp import hdrs, web

from .api import error
from .faults import Faults
from .objects import Obj, not_found, status_doc, truthy
from .procs import PodKey, ProcessTracker, spawn
from .session import V1, V4, V5, ExecOptions, ExecSession, send_status
from .state import Store

PREFERENCE = (V5, V4, V1)


def map_workspace(arg: str, workspace: str, pod_dir: Path) -> str:
    """Replace each path that starts with ``workspace`` inside ``arg`` by the pod folder."""
    pattern = re.compile(rf"(?<![\w.~/-]){re.escape(workspace.rstrip('/'))}(?![\w.-])")
    return pattern.sub(lambda _: str(pod_dir), arg)


def negotiate(offered: str) -> str | None:
    protocols = {p.strip() for p in offered.split(",")}
    return next((p for p in PREFERENCE if p in protocols), None)


def spawn_error(command: list[str], exc: OSError) -> Obj:
    """The InternalError containerd/runc report when the command cannot be started."""
    exe = command[0]
    if isinstance(exc, FileNotFoundError) and "/" not in exe:
        why = f'exec: "{exe}": executable file not found in $PATH'
    else:
        why = f'exec: "{exe}": stat {exe}: {(exc.strerror or str(exc)).lower()}'
    err = (
        f"error executing command in container: failed to exec in container: failed to start "
        f'exec "{uuid.uuid4().hex}": OCI runtime exec failed: exec failed: unable to start '
        f"container process: {why}: unknown"
    )
    doc = status_doc(500, "InternalError", f"Internal error occurred: {err}")
    doc.pop("kind")
    doc.pop("apiVersion")
    doc["details"] = {"causes": [{"message": err}]}
    return doc


def _pick_container(pod: Obj, wanted: str | None) -> tuple[str | None, str]:
    """(container, "") when valid, else (None, message for a 400)."""
    name = pod["metadata"]["name"]
    names = [c["name"] for c in pod["spec"]["containers"]]
    if wanted is None and len(names) > 1:
        return None, f"a container name must be specified for pod {name}, choose one of: {names}"
    container = wanted or names[0]
    if container not in names:
        return None, f"container {container} is not valid for pod {name}"
    return container, ""


class ExecHandler:
    """Serves exec requests and keeps the live sessions per pod."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        tracker: ProcessTracker,
        options: ExecOptions,
        pod_dir: Callable[[str, str], Path],
    ) -> None:
        self.store, self.faults, self.tracker, self.options = store, faults, tracker, options
        self.pod_dir = pod_dir
        self.sessions: dict[PodKey, set[ExecSession]] = {}

    def _refusal(self, request: web.Request, pod: Obj | None) -> web.Response | None:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if self.faults.forbid_exec:
            msg = (f'pods "{name}" is forbidden: User "fake" cannot create resource "pods/exec" '
                   f'in API group "" in the namespace "{ns}"')  # fmt: skip
            return error(403, "Forbidden", msg)
        if pod is None:
            return web.json_response(not_found("pods", name), status=404)
        q = request.query
        if not q.getall("command", []):
            return error(400, "BadRequest", "you must specify at least one command")
        if not any(truthy(q.get(s)) for s in ("stdin", "stdout", "stderr")):
            return error(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
        container, problem = _pick_container(pod, q.get("container"))
        if container is None:
            return error(400, "BadRequest", problem)
        if self.options.require_running and pod["status"].get("phase") != "Running":
            return error(400, "BadRequest", f'container not found ("{container}")')
        if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
            return error(400, "BadRequest", "Upgrade request required")
        offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
        if negotiate(offered) is None:
            msg = f"requested protocol(s) are not supported: [{offered}]; supports {PREFERENCE}"
            return error(400, "BadRequest", msg)
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        refusal = self._refusal(request, self.store.get("pods", ns, name))
        if refusal is not None:
            return refusal
        protocol = negotiate(request.headers[hdrs.SEC_WEBSOCKET_PROTOCOL])
        assert protocol is not None
        ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0)
        await ws.prepare(request)
        command = request.query.getall("command")
        try:
            proc, exited = await self._spawn((ns, name), command, request)
        except OSError as exc:
            await send_status(ws, protocol, spawn_error(command, exc))
            await ws.close()
            return ws
        session = ExecSession(ws, proc, exited, protocol, self.options, request.transport)
        self.sessions.setdefault((ns, name), set()).add(session)
        try:
            await session.run(command, _flag(request, "tty"))
        finally:
            self.sessions.get((ns, name), set()).discard(session)
            if session.waiter is not None and not session.waiter.done():
                self.tracker.keep(session.waiter)
        return ws

    async def _spawn(
        self, key: PodKey, command: list[str], request: web.Request
    ) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
        pod_dir = self.pod_dir(*key)
        pod_dir.mkdir(parents=True, exist_ok=True)
        argv = [map_workspace(a, self.options.workspace, pod_dir) for a in command]
        env = {**os.environ, "HOSTNAME": key[1], "PWD": str(pod_dir), **self.options.env}
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        out = pipe if _flag(request, "stdout") else null
        err = pipe if _flag(request, "stderr") else null
        if _flag(request, "tty"):  # one merged stream, as with a terminal (but no real pty)
            err = asyncio.subprocess.STDOUT if out == pipe else err
        proc, exited = await spawn(
            argv,
            stdin=pipe if _flag(request, "stdin") else null,
            stdout=out,
            stderr=err,
            cwd=pod_dir,
            env=env,
            start_new_session=True,
        )
        self.tracker.add(key, proc)
        return proc, exited

    def abort_pod(self, key: PodKey) -> None:
        """Cut the pod's exec connections without a status frame, like a vanished node."""
        for session in self.sessions.pop(key, set()):
            session.abort()

    def abort_all(self) -> None:
        for key in list(self.sessions):
            self.abort_pod(key)


def _flag(request: web.Request, name: str) -> bool:
    return truthy(request.query.get(name))
