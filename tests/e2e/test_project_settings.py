"""Project settings fail closed, the same way on both backends: a project whose project.toml (or
ConfigMap entry) is invalid is `failed` with the reason in GET /projects/{id}, and every kind of
submission to it answers 409 PROJECT_UNAVAILABLE naming that reason. Fixing the file makes the
project usable again without a restart. On kubernetes, a pod that is not running answers the
same 409 with its status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rdev.adapters.kubernetes import KubernetesBackend
from rdev.config import Settings
from tests.e2e.conftest import Launch, Raw
from tests.integration.kubernetes_support import FAST
from tests.kube.fixtures import kube_api, kubeconfig  # noqa: F401  (fixtures)
from tests.kube.server import FakeKubeApi
from tests.support import Running, eventually, read_sse, serve, wait_status

LABELS = {"rdev.orchard9.ai/project": "true"}

SUBMISSIONS: dict[str, dict[str, Any]] = {
    "claude": {"prompt": "hello"},
    "shell": {"argv": ["echo", "hi"]},
    "git": {"args": ["status"]},
}

# project -> (settings, a fragment the reason must contain)
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "string-false": ({"allow_raw_shell": "false"}, "allow_raw_shell"),
    "string-true": ({"allow_raw_shell": "true"}, "allow_raw_shell"),
    "claude-shell-string": ({"allow_claude_shell": "no"}, "allow_claude_shell"),
    "unknown-kind": ({"allowed_commands": ["shell", "bogus"]}, "bogus"),
    "kind-case": ({"allowed_commands": ["Shell"]}, "Shell"),
    "kinds-string": ({"allowed_commands": "shell"}, "allowed_commands"),
    "typo-key": ({"alow_raw_shell": False}, "alow_raw_shell"),
    "zero-limit": ({"max_concurrent_commands": 0}, "max_concurrent_commands"),
    "float-limit": ({"max_concurrent_commands": 2.5}, "max_concurrent_commands"),
    "bool-limit": ({"max_concurrent_commands": True}, "max_concurrent_commands"),
    "huge-limit": ({"max_concurrent_commands": 10**9}, "max_concurrent_commands"),
    "list-description": ({"description": ["a"]}, "description"),
}
BROKEN = {  # text that does not parse, per backend
    "local": "allow_raw_shell = \n",
    "kubernetes": "description: [unclosed\n",
}


async def project_of(client: httpx.AsyncClient, project: str) -> dict[str, Any]:
    resp = await client.get(f"/projects/{project}")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()["data"]
    return data


async def assert_unavailable(client: httpx.AsyncClient, project: str, fragment: str) -> None:
    for kind, body in SUBMISSIONS.items():
        resp = await client.post(f"/projects/{project}/{kind}", json=body)
        assert resp.status_code == 409, (project, kind, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "PROJECT_UNAVAILABLE", error
        assert fragment in error["message"], (fragment, error)
        assert error["details"]["status"] == "failed"
        assert fragment in error["details"]["reason"]


async def test_invalid_settings_fail_the_project_and_refuse_every_kind(
    launch: Launch, backend: str
) -> None:
    projects: dict[str, Any] = {name: config for name, (config, _) in INVALID.items()}
    projects["broken"] = Raw(BROKEN[backend])
    projects["fine"] = {"allowed_commands": ["shell"], "allow_raw_shell": False}
    async with launch(projects) as rdev:
        admin = rdev.admin
        listed = {p["id"]: p for p in (await admin.get("/projects")).json()["data"]}
        expected = {name: fragment for name, (_, fragment) in INVALID.items()}
        for name, fragment in [*expected.items(), ("broken", "not valid")]:
            shown = await project_of(admin, name)
            assert shown["status"] == "failed", shown
            assert fragment in shown["status_reason"], (fragment, shown)
            assert listed[name]["status_reason"] == shown["status_reason"]
            assert shown["allowed_commands"] == []
            await assert_unavailable(admin, name, fragment)
        fine = await project_of(admin, "fine")
        assert (fine["status"], fine["status_reason"]) == ("running", None)
        resp = await admin.post("/projects/fine/shell", json={"argv": ["true"]})
        assert resp.status_code == 201, resp.text
        resp = await admin.post("/projects/fine/git", json={"args": ["status"]})
        assert (resp.status_code, resp.json()["error"]["code"]) == (403, "FORBIDDEN")


async def test_fixing_the_settings_makes_the_project_usable_again(launch: Launch) -> None:
    async with launch({"web": {"allow_raw_shell": "false"}}) as rdev:
        admin = rdev.admin
        await assert_unavailable(admin, "web", "allow_raw_shell")

        rdev.put_settings("web", {"allow_raw_shell": False, "description": "fixed"})

        async def running() -> bool:
            shown = await project_of(admin, "web")
            return shown["status"] == "running" and shown["status_reason"] is None

        await eventually(running)
        resp = await admin.post("/projects/web/shell", json={"command": "echo fixed"})
        assert resp.status_code == 201, resp.text
        done = await wait_status(admin, resp.json()["data"]["command_id"], "succeeded")
        assert done["exit_code"] == 0
        # false means false: the dangerous-pattern filter is on
        resp = await admin.post("/projects/web/shell", json={"command": "echo a && echo b"})
        assert (resp.status_code, resp.json()["error"]["code"]) == (400, "COMMAND_REJECTED")

        # and breaking it again takes it out of service again
        rdev.put_settings("web", {"allowed_commands": ["shell", "docker"]})
        await eventually(lambda: _status_is(admin, "web", "failed"))
        await assert_unavailable(admin, "web", "docker")


async def test_a_queued_command_does_not_run_once_its_project_has_failed(launch: Launch) -> None:
    async with launch({"web": {"max_concurrent_commands": 1}}) as rdev:
        admin = rdev.admin
        resp = await admin.post("/projects/web/shell", json={"argv": ["sleep", "30"]})
        blocker = resp.json()["data"]["command_id"]
        await wait_status(admin, blocker, "running")
        resp = await admin.post("/projects/web/shell", json={"argv": ["touch", "ran"]})
        queued = resp.json()["data"]
        assert queued["status"] == "queued", queued

        rdev.put_settings("web", {"max_concurrent_commands": 1, "allow_raw_shell": "yes"})
        await eventually(lambda: _status_is(admin, "web", "failed"))
        await admin.post(f"/commands/{blocker}/cancel")

        done = await wait_status(admin, queued["command_id"], "failed")
        assert "is failed" in done["error"] and "allow_raw_shell" in done["error"], done
        events = await read_sse(admin, f"/commands/{queued['command_id']}/events")
        assert [e.data["code"] for e in events if e.event == "error"] == ["PROJECT_UNAVAILABLE"]
        assert not (rdev.workspace("web") / "ran").exists()


async def _status_is(client: httpx.AsyncClient, project: str, status: str) -> bool:
    return (await project_of(client, project))["status"] == status


@pytest.mark.parametrize("backend", ["local"])  # a ConfigMap holds text, never bytes
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'description = "caf\xe9"\n', "UTF-8"),
        (b"\xff\xfe\x00d\x00", "UTF-8"),
        (b'description = "ok"\ndescription = "twice"\n', "not valid TOML"),
        (b"[allowed_commands]\nshell = true\n", "allowed_commands"),
    ],
)
async def test_local_project_toml_that_cannot_be_read_fails_closed(
    launch: Launch, content: bytes, fragment: str
) -> None:
    async with launch({"p": Raw(content)}) as rdev:
        shown = await project_of(rdev.admin, "p")
        assert shown["status"] == "failed" and fragment in shown["status_reason"], shown
        await assert_unavailable(rdev.admin, "p", fragment)


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


def _deleting(pod: dict[str, Any]) -> None:
    pod["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"


@pytest.mark.kubernetes
@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"phase": "Pending", "ready": False}, "pending"),
        ({"phase": "Running", "ready": False}, "pending"),
        ({"phase": "Unknown"}, "unknown"),
        ({"phase": "Failed"}, "failed"),
        ({"phase": "Succeeded"}, "failed"),
        ({"mutate": _deleting}, "terminating"),
    ],
)
async def test_pod_that_is_not_running_answers_409_with_its_status(
    rdev_kube: Running,
    kube_api: FakeKubeApi,  # noqa: F811
    change: dict[str, Any],
    status: str,
) -> None:
    admin = rdev_kube.admin
    kube_api.update_pod("claudebox-demo-0", **change)
    await eventually(lambda: _status_is(admin, "demo", status), timeout=5)
    shown = await project_of(admin, "demo")
    assert shown["status_reason"], shown
    for kind, body in SUBMISSIONS.items():
        resp = await admin.post(f"/projects/demo/{kind}", json=body)
        assert resp.status_code == 409, (kind, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "PROJECT_UNAVAILABLE"
        assert error["details"]["status"] == status
        assert status in error["message"]
    kube_api.update_pod(
        "claudebox-demo-0",
        phase="Running",
        ready=True,
        mutate=lambda pod: pod["metadata"].pop("deletionTimestamp", None),
    )
    await eventually(lambda: _status_is(admin, "demo", "running"), timeout=5)
    resp = await admin.post("/projects/demo/shell", json={"argv": ["true"]})
    assert resp.status_code == 201, resp.text
