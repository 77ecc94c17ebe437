"""Behaviour that only the Kubernetes backend has: discovery through watches, the API going
away and coming back, pods vanishing under a running command."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from rdev.adapters.kubernetes import KubernetesBackend
from rdev.config import Settings
from tests.integration.kubernetes_support import FAST
from tests.kube.fixtures import kube_api, kubeconfig  # noqa: F401  (fixtures)
from tests.kube.server import FakeKubeApi
from tests.support import Running, eventually, read_sse, serve, wait_status

LABELS = {"rdev.orchard9.ai/project": "true"}
pytestmark = pytest.mark.kubernetes


@pytest.fixture
async def rdev_kube(
    kube_api: FakeKubeApi,  # noqa: F811
    kubeconfig: Path,  # noqa: F811
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Running]:
    kube_api.create_pod("claudebox-demo-0", labels=LABELS | {"rdev.orchard9.ai/name": "demo"})
    settings = settings_factory(backend="kubernetes", kubeconfig=str(kubeconfig))
    backend = KubernetesBackend(namespace="default", kubeconfig=str(kubeconfig), **FAST)
    async with serve(settings, backend=backend) as running:
        running.workspaces["demo"] = kube_api.pod_dir("claudebox-demo-0")
        yield running


async def _project_ids(rdev: Running) -> dict[str, str]:
    resp = await rdev.admin.get("/projects")
    return {p["id"]: p["status"] for p in resp.json()["data"]}


async def test_labelled_pods_appear_change_and_vanish_within_a_second(
    rdev_kube: Running,
    kube_api: FakeKubeApi,  # noqa: F811
) -> None:
    assert await _project_ids(rdev_kube) == {"demo": "running"}
    started = time.monotonic()
    kube_api.create_pod(
        "claudebox-api-0",
        labels=LABELS | {"rdev.orchard9.ai/name": "api"},
        annotations={"rdev.orchard9.ai/description": "Go API backend"},
        phase="Pending",
        ready=False,
    )
    await eventually(lambda: _has(rdev_kube, "api", "pending"), timeout=1)
    kube_api.update_pod("claudebox-api-0", phase="Running", ready=True)
    await eventually(lambda: _has(rdev_kube, "api", "running"), timeout=1)
    project = (await rdev_kube.admin.get("/projects/api")).json()["data"]
    assert project["description"] == "Go API backend"
    kube_api.delete_pod("claudebox-api-0")
    await eventually(lambda: _gone(rdev_kube, "api"), timeout=1)
    assert time.monotonic() - started < 5
    kube_api.create_pod("unlabelled-0", labels={"app": "other"})
    assert "unlabelled-0" not in await _project_ids(rdev_kube)


async def _has(rdev: Running, project: str, status: str) -> bool:
    return (await _project_ids(rdev)).get(project) == status


async def _gone(rdev: Running, project: str) -> bool:
    return (await rdev.admin.get(f"/projects/{project}")).status_code == 404


async def test_api_down_refuses_work_with_503_and_recovers_without_restart(
    rdev_kube: Running,
    kube_api: FakeKubeApi,  # noqa: F811
) -> None:
    kube_api.faults.set_down("503")

    async def refused() -> bool:
        resp = await rdev_kube.admin.post("/projects/demo/shell", json={"argv": ["true"]})
        return resp.status_code == 503 and resp.json()["error"]["code"] == "BACKEND_UNAVAILABLE"

    await eventually(refused, timeout=10)
    ready = await rdev_kube.admin.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["error"]["details"]["checks"]["backend"]["ok"] is False
    kube_api.faults.set_up()

    async def recovered() -> bool:
        return (await rdev_kube.admin.get("/ready")).status_code == 200

    await eventually(recovered, timeout=15)
    resp = await rdev_kube.admin.post("/projects/demo/shell", json={"argv": ["echo", "back"]})
    assert resp.status_code == 201
    await wait_status(rdev_kube.admin, resp.json()["data"]["command_id"], "succeeded")


async def test_pod_deleted_mid_command_ends_it_as_lost(
    rdev_kube: Running,
    kube_api: FakeKubeApi,  # noqa: F811
) -> None:
    resp = await rdev_kube.admin.post(
        "/projects/demo/shell", json={"argv": ["sh", "-c", "echo up; sleep 1000"]}
    )
    cid = resp.json()["data"]["command_id"]
    head = await read_sse(rdev_kube.admin, f"/commands/{cid}/events", until="output")
    assert head[-1].data["line"] == "up"  # the command is running inside the pod
    kube_api.delete_pod("claudebox-demo-0")
    started = time.monotonic()
    events = await read_sse(
        rdev_kube.admin, f"/commands/{cid}/events", headers={"Last-Event-ID": str(head[-1].id)}
    )
    assert time.monotonic() - started < 10
    assert events[-1].data["status"] == "lost"
    errors = [e.data for e in events if e.event == "error"]
    assert errors and errors[0]["code"] == "EXEC_LOST"


async def test_clients_never_choose_namespace_pod_or_container(
    rdev_kube: Running,
    kube_api: FakeKubeApi,  # noqa: F811
) -> None:
    for extra in ({"pod": "other"}, {"namespace": "kube-system"}, {"container": "x"}):
        resp = await rdev_kube.admin.post("/projects/demo/shell", json={"argv": ["true"], **extra})
        assert resp.status_code == 422
    resp = await rdev_kube.admin.post("/projects/demo/shell", json={"argv": ["true"]})
    await wait_status(rdev_kube.admin, resp.json()["data"]["command_id"], "succeeded")
    execs = [r.path for r in kube_api.requests if r.path.endswith("/exec")]
    assert execs
    assert set(execs) == {"/api/v1/namespaces/default/pods/claudebox-demo-0/exec"}
