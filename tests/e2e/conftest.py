"""E2E fixtures. The behavioural suite runs once per backend: `local` (folders and
subprocesses) and `kubernetes` (the real kubernetes_asyncio client against tests/kube's API
server, whose pods run commands as real subprocesses)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rdev.adapters.local.backend import settings_file
from rdev.config import Settings
from tests.kube.server import FakeKubeApi
from tests.support import Running, make_project, serve

Launch = Callable[..., AbstractAsyncContextManager[Running]]
LABELS = {"rdev.orchard9.ai/project": "true"}


@dataclass(frozen=True)
class Raw:
    """A project's settings as text, written as they are: project.toml on the local backend,
    the ConfigMap entry on kubernetes (bytes only on the local backend)."""

    text: str | bytes


def _toml_text(config: dict[str, Any] | Raw) -> str | bytes:
    return config.text if isinstance(config, Raw) else _toml(config) if config else ""


def _yaml_text(config: dict[str, Any] | Raw) -> str:
    if isinstance(config, Raw):
        assert isinstance(config.text, str), "a ConfigMap holds text"
        return config.text
    return yaml.safe_dump(config)


def _toml(config: dict[str, Any]) -> str:
    lines = []
    for key, value in config.items():
        if isinstance(value, list):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, dict):  # an inline table of strings
            items = ", ".join(f'{k} = "{v}"' for k, v in value.items())
            lines.append(f"{key} = {{ {items} }}")
        else:
            lines.append(f"{key} = {str(value).lower()}")
    return "\n".join(lines) + "\n"


def _build_kwargs(overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that are for `build`, not Settings (a tracer_provider)."""
    return {k: overrides.pop(k) for k in ("tracer_provider",) if k in overrides}


@asynccontextmanager
async def _local(
    settings_factory: Callable[..., Settings], projects: dict[str, dict[str, Any]], **overrides: Any
) -> AsyncIterator[Running]:
    build = _build_kwargs(overrides)
    settings = settings_factory(**overrides)
    for name, config in projects.items():
        make_project(settings.workspace_root, name, _toml_text(config))
    async with serve(settings, **build) as running:
        running.settings_writer = lambda name, config: _write_toml(
            settings.workspace_root / name, config
        )
        yield running


def _write_toml(folder: Path, config: dict[str, Any] | Raw) -> None:
    text = _toml_text(config)
    file = settings_file(folder.parent, folder.name)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")  # replaced whole, so rdev never reads half a file
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    tmp.replace(file)


@asynccontextmanager
async def _kubernetes(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    projects: dict[str, dict[str, Any]],
    **overrides: Any,
) -> AsyncIterator[Running]:
    kube = FakeKubeApi(tmp_path / "pods", bookmark_interval=0.2)
    await kube.start()
    try:
        entries = {f"{name}.yaml": _yaml_text(c) for name, c in projects.items() if c}
        kube.put_configmap("rdev-projects", entries)
        pods = {}
        for name in projects:
            pod = f"claudebox-{name}-0"
            kube.create_pod(pod, labels=LABELS | {"rdev.orchard9.ai/name": name})
            pods[name] = kube.pod_dir(pod)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        build = _build_kwargs(overrides)
        settings = settings_factory(backend="kubernetes", kubeconfig=str(kubeconfig), **overrides)
        async with serve(settings, **build) as running:
            running.workspaces.update(pods)

            def put(name: str, config: dict[str, Any] | Raw) -> None:
                entries[f"{name}.yaml"] = _yaml_text(config)
                kube.put_configmap("rdev-projects", entries)

            running.settings_writer = put
            yield running
    finally:
        await kube.stop()


@pytest.fixture(params=["local", pytest.param("kubernetes", marks=pytest.mark.kubernetes)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def launch(backend: str, settings_factory: Callable[..., Settings], tmp_path: Path) -> Launch:
    """launch(projects={"demo": {...settings...} or Raw(text)}, **Settings overrides) on this
    backend."""

    def start(projects: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> Any:
        chosen = projects if projects is not None else {"demo": {}}
        if backend == "local":
            return _local(settings_factory, chosen, **overrides)
        return _kubernetes(settings_factory, tmp_path, chosen, **overrides)

    return start


@pytest.fixture
async def rdev(launch: Launch) -> AsyncIterator[Running]:
    async with launch() as running:
        yield running
