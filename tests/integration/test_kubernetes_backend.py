"""Kubernetes backend discovery and watch against the fake API server: labels, annotations and
ConfigMap precedence, status mapping, changes visible within a second, 410 relists, dropped
watches, an API outage with the circuit breaker, and readiness through check()."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from rdev.domain.errors import BackendUnavailable, ExecFailed, NotFound
from rdev.domain.models import CommandKind, ProjectStatus
from tests.integration.kubernetes_support import (
    MakeBackend,
    drain,
    eventually,
    exec_requests,
    labels,
    make_backend,
)
from tests.kube.fixtures import kube_api, kubeconfig
from tests.kube.server import FakeKubeApi

__all__ = ["kube_api", "kubeconfig", "make_backend"]  # fixtures used by name

Check = Callable[[], Awaitable[bool]]

ALPHA_YAML = """
description: From the ConfigMap
workspace: /srv/alpha
allowed_commands: [shell, git]
max_concurrent_commands: 2
container: side
"""


async def ids(backend: object) -> list[str]:
    return [p.id for p in await backend.list_projects()]  # type: ignore[attr-defined]


async def test_discovery_precedence_labels_annotations_configmap(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod(
        "pod-a",
        labels=labels("alpha", rdev__workspace="ignored"),
        annotations={
            "rdev.orchard9.ai/workspace": "/home/dev/alpha",
            "rdev.orchard9.ai/description": "From the annotation",
        },
        containers=("dev", "side"),
    )
    kube_api.create_pod("pod-b", labels=labels(**{"rdev.orchard9.ai/workspace": "code"}))
    kube_api.create_pod(
        "pod-c", annotations={"rdev.orchard9.ai/workspace": "/x/y"}, labels=labels("gamma")
    )
    kube_api.create_pod("unlabelled", labels={"app": "web"})
    kube_api.put_configmap("rdev-projects", {"alpha.yaml": ALPHA_YAML})
    backend = await make_backend()

    assert await ids(backend) == ["alpha", "gamma", "pod-b"]
    alpha = await backend.get_project("alpha")
    assert (alpha.description, alpha.workspace, alpha.pod) == (
        "From the ConfigMap",
        "/srv/alpha",
        "pod-a",
    )
    assert alpha.allowed_kinds == {CommandKind.SHELL, CommandKind.GIT}
    assert alpha.max_concurrent == 2 and alpha.status is ProjectStatus.RUNNING
    pod_b = await backend.get_project("pod-b")  # no name label: the pod name
    assert (pod_b.workspace, pod_b.description, pod_b.max_concurrent) == ("/code", "", None)
    assert pod_b.allowed_kinds == frozenset(CommandKind)
    assert (await backend.get_project("gamma")).workspace == "/x/y"  # annotation over default
    with pytest.raises(NotFound):
        await backend.get_project("unlabelled")

    # The ConfigMap's container wins over the pod's first container.
    kube_api.exec_options.workspace = "/srv/alpha"  # where the fake maps the pod folder
    _, status = await drain(await backend.exec(alpha, ["true"], env={}))
    assert status.exit_code == 0
    assert exec_requests(kube_api, "pod-a")[0].param("container") == "side"
    kube_api.exec_options.workspace = "/code"
    _, status = await drain(await backend.exec(pod_b, ["true"], env={}))
    assert status.exit_code == 0
    assert exec_requests(kube_api, "pod-b")[0].param("container") == "dev"


async def test_status_mapping(kube_api: FakeKubeApi, make_backend: MakeBackend) -> None:
    cases = {
        "pending": ("Pending", False, ProjectStatus.PENDING),
        "ready": ("Running", True, ProjectStatus.RUNNING),
        "unready": ("Running", False, ProjectStatus.PENDING),
        "done": ("Succeeded", False, ProjectStatus.FAILED),
        "crashed": ("Failed", False, ProjectStatus.FAILED),
        "lost": ("Unknown", False, ProjectStatus.UNKNOWN),
    }
    for name, (phase, ready, _) in cases.items():
        kube_api.create_pod(name, labels=labels(), phase=phase, ready=ready)
    kube_api.create_pod("going", labels=labels())
    kube_api.update_pod(
        "going",
        mutate=lambda pod: pod["metadata"].update(deletionTimestamp="2030-01-01T00:00:00Z"),
    )
    backend = await make_backend()
    got = {p.id: p.status for p in await backend.list_projects()}
    assert got == {n: s for n, (_, _, s) in cases.items()} | {"going": ProjectStatus.TERMINATING}


async def test_two_pods_claiming_a_name_pick_the_ready_one_then_by_name(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod("b-ready", labels=labels("shared"))
    kube_api.create_pod("a-starting", labels=labels("shared"), phase="Pending")
    kube_api.create_pod("z-one", labels=labels("twin"))
    kube_api.create_pod("y-two", labels=labels("twin"))
    backend = await make_backend()
    assert (await backend.get_project("shared")).pod == "b-ready"
    assert (await backend.get_project("twin")).pod == "y-two"
    kube_api.update_pod("b-ready", ready=False)
    await eventually(async_pod(backend, "shared", "a-starting"))


def async_pod(backend: object, project: str, pod: str) -> Check:
    async def check() -> bool:
        return bool((await backend.get_project(project)).pod == pod)  # type: ignore[attr-defined]

    return check


async def test_pod_created_changed_deleted_visible_within_a_second(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    backend = await make_backend()
    assert await backend.list_projects() == []
    kube_api.create_pod("p", labels=labels("web"), phase="Pending")
    await eventually(lambda: ids(backend))
    assert (await backend.get_project("web")).status is ProjectStatus.PENDING

    kube_api.update_pod("p", phase="Running", ready=True)
    await eventually(async_status(backend, "web", ProjectStatus.RUNNING))
    kube_api.update_pod("p", annotations={"rdev.orchard9.ai/description": "now described"})
    await eventually(async_field(backend, "web", "description", "now described"))
    kube_api.update_pod("p", labels={"rdev.orchard9.ai/name": "web"})  # unlabelled: gone
    await eventually(async_absent(backend, "web"))
    kube_api.update_pod("p", labels=labels("web"))
    await eventually(lambda: ids(backend))
    kube_api.delete_pod("p")
    await eventually(async_absent(backend, "web"))


def async_status(backend: object, project: str, status: ProjectStatus) -> Check:
    return async_field(backend, project, "status", status)


def async_field(backend: object, project: str, field: str, value: object) -> Check:
    async def check() -> bool:
        found = await backend.get_project(project)  # type: ignore[attr-defined]
        return bool(getattr(found, field) == value)

    return check


def async_absent(backend: object, project: str) -> Check:
    async def check() -> bool:
        return project not in await ids(backend)

    return check


async def test_configmap_changes_are_reflected(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod("p", labels=labels("web"))
    backend = await make_backend()
    assert (await backend.get_project("web")).allowed_kinds == frozenset(CommandKind)
    kube_api.put_configmap("rdev-projects", {"web.yaml": "allowed_commands: [git]\n"})
    await eventually(async_field(backend, "web", "allowed_kinds", {CommandKind.GIT}))
    kube_api.put_configmap("rdev-projects", {"web.yaml": "description: [unclosed\n"})
    await eventually(async_status(backend, "web", ProjectStatus.FAILED))
    assert (await backend.get_project("web")).allowed_kinds == frozenset()  # never widened
    kube_api.put_configmap("rdev-other", {"web.yaml": "description: not ours\n"})
    kube_api.delete_configmap("rdev-projects")
    await eventually(async_field(backend, "web", "allowed_kinds", frozenset(CommandKind)))
    assert (await backend.get_project("web")).description == ""


def lists_of_pods(kube_api: FakeKubeApi) -> int:
    return sum(
        1 for r in kube_api.requests if r.path == "/api/v1/namespaces/default/pods" and not r.watch
    )


async def test_expired_history_relists_and_stays_correct(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod("old", labels=labels())
    backend = await make_backend()
    assert lists_of_pods(kube_api) == 1
    kube_api.delete_pod("old")
    kube_api.create_pod("new", labels=labels())
    kube_api.faults.expire_history()
    kube_api.faults.drop_watches()  # the resumed watch now meets 410 Gone
    await eventually(lambda: lists_of_pods(kube_api) >= 2, within=3)
    await eventually(lambda: ids(backend))
    assert await ids(backend) == ["new"]
    kube_api.create_pod("after", labels=labels())
    await eventually(async_field_list(backend, ["after", "new"]))


def async_field_list(backend: object, expected: list[str]) -> Check:
    async def check() -> bool:
        return await ids(backend) == expected

    return check


async def test_expired_history_after_a_normal_watch_end_relists(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    backend = await make_backend(watch_seconds=1)
    kube_api.faults.expire_history()  # the next watch (after ~1 s) resumes from a lost version
    await eventually(lambda: lists_of_pods(kube_api) >= 2, within=5)
    kube_api.create_pod("p", labels=labels())
    await eventually(async_field_list(backend, ["p"]))
    await backend.check()


async def test_dropped_watch_reconnects_from_its_version(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    backend = await make_backend()
    await kube_api.wait_for_watchers(1)
    before = len(kube_api.requests)
    assert kube_api.faults.drop_watches() >= 1
    kube_api.create_pod("p", labels=labels("web"))
    await eventually(async_field_list(backend, ["web"]))
    resumed = [r for r in kube_api.requests[before:] if r.watch and "/pods" in r.path]
    assert resumed and resumed[0].param("resourceVersion") not in (None, "", "0")
    assert lists_of_pods(kube_api) == 1  # resumed, not relisted
    await eventually(backend.check)


async def test_api_down_trips_the_breaker_then_recovers_without_restart(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod("p", labels=labels("web"))
    backend = await make_backend(breaker_threshold=3, breaker_reset_seconds=1.0)
    project = await backend.get_project("web")
    await backend.check()

    kube_api.faults.set_down()
    await eventually(lambda: not_ready(backend), within=2)
    for _ in range(6):
        with pytest.raises(BackendUnavailable):
            await backend.exec(project, ["true"], env={})
    # Open: calls fail fast without reaching the server.
    sent = len(exec_requests(kube_api))
    with pytest.raises(BackendUnavailable) as caught:
        await backend.exec(project, ["true"], env={})
    assert caught.value.details.get("reason") == "circuit_open"
    assert len(exec_requests(kube_api)) == sent
    assert await backend.list_projects()  # served from the cache meanwhile

    kube_api.faults.set_up()
    await eventually(backend.check, within=5)
    chunks, status = await drain(await backend.exec(project, ["echo", "back"], env={}))
    assert status.exit_code == 0 and chunks == [("stdout", b"back\n")]


async def not_ready(backend: object) -> bool:
    try:
        await backend.check()  # type: ignore[attr-defined]
    except BackendUnavailable:
        return True
    return False


async def test_unreachable_at_start_then_syncs(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod("p", labels=labels("web"))
    kube_api.faults.set_down("reset")
    backend = await make_backend(sync_timeout=0.3)
    with pytest.raises(BackendUnavailable):
        await backend.list_projects()
    with pytest.raises(BackendUnavailable):
        await backend.get_project("web")
    with pytest.raises(BackendUnavailable):
        await backend.check()
    kube_api.faults.set_up()
    await eventually(async_field_list(backend, ["web"]), within=5)
    await eventually(backend.check, within=5)


async def test_server_errors_on_watch_back_off_and_retry(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    backend = await make_backend(breaker_threshold=50)
    await kube_api.wait_for_watchers(1)
    kube_api.faults.fail_next(3, 500, watch=True, path="/pods")
    kube_api.faults.drop_watches()
    kube_api.create_pod("p", labels=labels("web"))
    await eventually(async_field_list(backend, ["web"]), within=5)
    await eventually(backend.check, within=2)


async def test_exec_in_a_project_whose_pod_is_gone(
    kube_api: FakeKubeApi, make_backend: MakeBackend
) -> None:
    kube_api.create_pod("p", labels=labels("web"))
    backend = await make_backend()
    project = await backend.get_project("web")
    kube_api.delete_pod("p")
    await eventually(async_absent(backend, "web"))
    with pytest.raises(ExecFailed) as caught:
        await backend.exec(project, ["true"], env={})
    assert caught.value.details["reason"] == "pod_not_found"
    with pytest.raises(NotFound):
        await backend.get_project("web")


async def test_check_before_start_and_after_close(kubeconfig: object) -> None:
    from rdev.adapters.kubernetes import KubernetesBackend

    backend = KubernetesBackend(namespace="default", kubeconfig=str(kubeconfig))
    with pytest.raises(BackendUnavailable):
        await backend.check()
    with pytest.raises(BackendUnavailable):
        await backend.list_projects()


async def test_bad_kubeconfig_is_a_clear_error(tmp_path: object) -> None:
    from pathlib import Path

    from rdev.adapters.kubernetes import KubernetesBackend

    missing = Path(str(tmp_path)) / "nope"
    backend = KubernetesBackend(namespace="default", kubeconfig=str(missing))
    with pytest.raises(BackendUnavailable, match="cannot load Kubernetes configuration"):
        await backend.start()
    await backend.close()
