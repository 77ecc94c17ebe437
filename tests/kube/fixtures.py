"""Pytest fixtures for the fake Kubernetes API server.

Other test packages reuse them by importing the fixture functions into their own conftest,
e.g. ``from tests.kube.fixtures import kube_api, kubeconfig  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.stream import WsApiClient

from .server import FakeKubeApi


@pytest.fixture
async def kube_api(tmp_path: Path) -> AsyncIterator[FakeKubeApi]:
    """A started server with pods rooted in ``tmp_path/pods``; fast bookmarks for tests."""
    server = FakeKubeApi(tmp_path / "pods", bookmark_interval=0.2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def kubeconfig(kube_api: FakeKubeApi, tmp_path: Path) -> Path:
    """A kubeconfig file for ``kube_api`` (token auth, namespace "default")."""
    return kube_api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def kube_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    """A real ``kubernetes_asyncio`` ApiClient configured only from ``kubeconfig``."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def core_v1(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session for raw protocol tests."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def ws_core_v1(kubeconfig: Path) -> AsyncIterator[client.CoreV1Api]:
    """CoreV1Api over ``kubernetes_asyncio.stream.WsApiClient`` (offers only v4) for exec."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with WsApiClient(configuration) as ws_api:
        yield client.CoreV1Api(ws_api)
