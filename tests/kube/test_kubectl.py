"""kubectl against the fake API server: discovery, table output and websocket (v5) exec.

client-go never sends bearer tokens over plain HTTP, so these tests switch auth off.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from .server import FakeKubeApi

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
NS = "dev-ns"


@pytest.fixture
def kubectl_api(kube_api: FakeKubeApi) -> FakeKubeApi:
    kube_api.token = None  # client-go drops credentials for non-TLS servers
    kube_api.create_pod("web", labels={"app": "dev"}, namespace=NS)
    kube_api.create_pod("queued", phase="Pending", ready=False, namespace=NS)
    kube_api.create_pod("elsewhere", namespace="default")
    return kube_api


async def kubectl(config: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(config),
        "--cache-dir",
        str(config.parent / "kube-cache"),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_get_pods_table(kubectl_api: FakeKubeApi, kubeconfig: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "get", "pods", "-n", NS)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[:4] for r in rows[1:]] == [
        ["queued", "0/1", "Pending", "0"],
        ["web", "1/1", "Running", "0"],
    ]
    code, out, err = await kubectl(kubeconfig, "get", "po", "-n", NS, "-l", "app=dev", "-o", "name")
    assert (code, out) == (0, "pod/web\n"), err


async def test_get_json_and_configmaps(kubectl_api: FakeKubeApi, kubeconfig: Path) -> None:
    kubectl_api.put_configmap("settings", {"a": "1"}, namespace=NS)
    code, out, err = await kubectl(kubeconfig, "get", "pods", "-n", NS, "-o", "json")
    assert code == 0, err
    assert [p["metadata"]["name"] for p in json.loads(out)["items"]] == ["queued", "web"]
    code, out, err = await kubectl(kubeconfig, "get", "cm", "settings", "-n", NS, "-o", "json")
    assert (code, json.loads(out)["data"]) == (0, {"a": "1"}), err


async def test_exec_over_websocket_v5(kubectl_api: FakeKubeApi, kubeconfig: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "exec", "web", "-n", NS, "--", "echo", "hi")
    assert (code, out) == (0, "hi\n"), err
    [record] = [r for r in kubectl_api.requests if r.path.endswith("/exec")]
    assert (record.header("Upgrade") or "").lower() == "websocket"
    assert V5 in (record.header("Sec-WebSocket-Protocol") or "")


async def test_exec_exit_code_and_stdin(kubectl_api: FakeKubeApi, kubeconfig: Path) -> None:
    code, _, err = await kubectl(kubeconfig, "exec", "web", "-n", NS, "--", "sh", "-c", "exit 3")
    assert code == 3 and "command terminated with exit code 3" in err
    data = "line one\nd\u00e9j\u00e0 vu\n".encode()
    code, out, err = await kubectl(
        kubeconfig, "exec", "-i", "web", "-n", NS, "--", "cat", stdin=data
    )
    assert (code, out.encode()) == (0, data), err


async def test_exec_errors(kubectl_api: FakeKubeApi, kubeconfig: Path) -> None:
    code, _, err = await kubectl(kubeconfig, "exec", "nope", "-n", NS, "--", "true")
    assert code == 1 and 'pods "nope" not found' in err
    kubectl_api.faults.forbid_exec = True
    code, _, err = await kubectl(kubeconfig, "exec", "web", "-n", NS, "--", "true")
    assert code == 1 and "forbidden" in err


V5 = "v5.channel.k8s.io"
