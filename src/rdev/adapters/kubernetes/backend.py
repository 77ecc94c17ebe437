"""The Kubernetes backend: projects are labelled pods in one namespace, kept current by watches;
commands and file operations are execs into the pod discovery chose for the project.

Namespace, pod and container come only from configuration and discovery; no method takes them,
so a client can never aim rdev at another pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from rdev.adapters.kubernetes import discovery, scripts
from rdev.adapters.kubernetes.breaker import ApiBreaker
from rdev.adapters.kubernetes.client import KubeClient, load_configuration
from rdev.adapters.kubernetes.discovery import CONFIGMAP, LABEL_SELECTOR, ConfigEntry, Target
from rdev.adapters.kubernetes.execution import GroupControl, KubeExecution
from rdev.adapters.kubernetes.files import PodFiles
from rdev.adapters.kubernetes.podexec import PodExec
from rdev.adapters.kubernetes.protocol import PROTOCOLS
from rdev.adapters.kubernetes.reflector import Reflector, Request
from rdev.domain.errors import BackendUnavailable, ExecFailed, NotFound, spawn_failure
from rdev.domain.models import Project

log = structlog.get_logger(__name__)


class KubernetesBackend:
    name = "kubernetes"

    def __init__(
        self,
        *,
        namespace: str,
        kubeconfig: str | Path | None = None,
        breaker_threshold: int = 5,
        breaker_reset_seconds: float = 15.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        sync_timeout: float = 5.0,
        watch_seconds: int = 300,
        exec_protocols: Sequence[str] = PROTOCOLS,
        connect_timeout: float = 10.0,
        io_timeout: float = 30.0,
        control_timeout: float = 5.0,
        heartbeat: float | None = 30.0,
        claude_bin: str | None = None,
    ) -> None:
        self.namespace = namespace
        self._claude_bin = claude_bin
        self._kubeconfig = str(kubeconfig) if kubeconfig else None
        self._breaker = ApiBreaker(threshold=breaker_threshold, reset_seconds=breaker_reset_seconds)
        self._backoff = (backoff_base, backoff_cap)
        self._sync_timeout = sync_timeout
        self._watch_seconds = watch_seconds
        self._protocols = tuple(exec_protocols)
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        self._control_timeout = control_timeout
        self._heartbeat = heartbeat
        self._client: KubeClient | None = None
        self._reflectors: list[Reflector] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._settings: dict[str, ConfigEntry] = {}
        self._targets: dict[str, Target] = {}
        self._warned: frozenset[str] = frozenset()

    async def start(self) -> None:
        cfg = await load_configuration(self._kubeconfig)
        self._client = client = KubeClient(
            cfg, protocols=self._protocols, heartbeat=self._heartbeat
        )
        self._pods = PodExec(
            client,
            self.namespace,
            self._breaker,
            connect_timeout=self._connect_timeout,
            io_timeout=self._io_timeout,
        )
        self._files = PodFiles(self._pods)
        core = client.core
        pods = functools.partial(
            core.list_namespaced_pod, self.namespace, label_selector=LABEL_SELECTOR
        )
        maps = functools.partial(
            core.list_namespaced_config_map,
            self.namespace,
            field_selector=f"metadata.name={CONFIGMAP}",
        )
        self._pod_watch = self._reflector("pods", pods, self._rebuild)
        self._map_watch = self._reflector("configmaps", maps, self._reload_settings)
        self._reflectors = [self._pod_watch, self._map_watch]
        self._tasks = [asyncio.create_task(r.run()) for r in self._reflectors]
        try:
            async with asyncio.timeout(self._sync_timeout):
                await asyncio.gather(*(r.synced.wait() for r in self._reflectors))
        except TimeoutError:
            log.warning("kubernetes.not_synced", namespace=self.namespace)

    def _reflector(self, name: str, request: Request, on_change: Callable[[], None]) -> Reflector:
        return Reflector(
            name,
            request,
            self._breaker,
            on_change=on_change,
            backoff=self._backoff,
            watch_seconds=self._watch_seconds,
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def breaker_state(self) -> str:
        """The API circuit breaker's state (closed, open, half_open), for metrics."""
        return await self._breaker.state()

    async def check(self) -> None:
        if self._client is None:
            raise BackendUnavailable("the Kubernetes backend is not started")
        if await self._breaker.is_open():
            raise BackendUnavailable("Kubernetes API circuit breaker is open")
        for reflector in self._reflectors:
            if not reflector.healthy:
                raise BackendUnavailable(
                    f"Kubernetes {reflector.name} watch is not healthy: {reflector.error}",
                    details={"kubernetes_watch_ok": False, "resource": reflector.name},
                )

    # discovery -------------------------------------------------------------------------------

    def _reload_settings(self) -> None:
        data = self._map_watch.items.get(CONFIGMAP, {}).get("data") or {}
        self._settings = discovery.parse_settings(data)
        self._rebuild()

    def _rebuild(self) -> None:
        targets, warnings = discovery.build_targets(self._pod_watch.items.values(), self._settings)
        self._targets = targets
        for warning in sorted(set(warnings) - self._warned):
            log.warning("kubernetes.discovery", problem=warning)
        self._warned = frozenset(warnings)

    def _synced(self) -> dict[str, Target]:
        if not self._reflectors or not all(r.synced.is_set() for r in self._reflectors):
            raise BackendUnavailable("Kubernetes projects are not listed yet")
        return self._targets

    async def list_projects(self) -> list[Project]:
        return [t.project for _, t in sorted(self._synced().items())]

    async def get_project(self, project_id: str) -> Project:
        target = self._synced().get(project_id)
        if target is None:
            raise NotFound(f"project {project_id} not found")
        return target.project

    def _target(self, project: Project) -> Target:
        target = self._synced().get(project.id)
        if target is None:
            raise ExecFailed(
                f"the pod of project {project.id} is gone", details={"reason": "pod_not_found"}
            )
        return target

    # commands and files ------------------------------------------------------------------------

    async def exec(
        self,
        project: Project,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
        stdin: bytes | None = None,
        command_id: str | None = None,
    ) -> KubeExecution:
        target = self._target(project)
        problem = scripts.program_name_problem(argv[0]) if argv else None
        if problem is not None:
            raise ExecFailed(spawn_failure(argv[0], problem), details={"errno": problem})
        token = secrets.token_hex(8)
        marker = command_id or f"run_{secrets.token_hex(12)}"
        if self._claude_bin is not None and argv[0] == self._claude_bin:
            env = {**env, "TMPDIR": scripts.temp_dir(token)}  # removed by the cleanup exec
        command = scripts.run_argv(
            token=token,
            marker=marker,
            workdir=scripts.workspace_path(target.project.workspace, cwd or "", field="cwd"),
            env=env,
            argv=argv,
            stdin_len=-1 if stdin is None else len(stdin),
        )
        channel = await self._pods.open(target, command, stdin=stdin is not None)
        if stdin is not None:
            await channel.send_stdin(stdin)
        control = GroupControl(
            self._pods, target, token, marker=marker, timeout=self._control_timeout
        )
        return KubeExecution(channel, control, argv0=argv[0])

    async def kill_command(self, project_id: str, command_id: str) -> int:
        """Reap the command's processes in its project's pod with an exec (the pod is where
        they run; a pod that is gone took them with it)."""
        target = self._synced().get(project_id)
        if target is None:
            return 0
        done = await self._pods.run(
            target, scripts.kill_argv(command_id), seconds=self._control_timeout
        )
        return scripts.reaped(done.stdout)

    async def list_dir(self, project: Project, path: str) -> list[str]:
        return await self._files.list_dir(self._target(project), path)

    async def read_file(self, project: Project, path: str) -> bytes:
        return await self._files.read_file(self._target(project), path)

    async def write_file(self, project: Project, path: str, data: bytes) -> None:
        await self._files.write_file(self._target(project), path, data)

    async def delete(self, project: Project, path: str) -> None:
        await self._files.delete(self._target(project), path)
