"""REST, discovery, auth and fault injection of the fake API server, via the real client."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from .server import FakeKubeApi

NS = "default"


def reason(exc: client.ApiException) -> str:
    return str(json.loads(exc.body or "")["reason"])


async def names(v1: client.CoreV1Api, **kwargs: Any) -> list[str]:
    pods = await v1.list_namespaced_pod(NS, **kwargs)
    return sorted(p.metadata.name for p in pods.items)


async def test_list_pods_with_label_selectors(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    kube_api.create_pod("a", labels={"app": "dev", "tier": "web"})
    kube_api.create_pod("b", labels={"app": "dev"})
    kube_api.create_pod("c", labels={"app": "other", "tier": "db"})
    kube_api.create_pod("x", labels={"app": "dev"}, namespace="elsewhere")
    assert await names(core_v1) == ["a", "b", "c"]
    assert await names(core_v1, label_selector="app=dev") == ["a", "b"]
    assert await names(core_v1, label_selector="app!=dev") == ["c"]
    assert await names(core_v1, label_selector="tier") == ["a", "c"]
    assert await names(core_v1, label_selector="!tier") == ["b"]
    assert await names(core_v1, label_selector="app==dev,tier") == ["a"]
    assert await names(core_v1, label_selector="tier in (db, web),app!=dev") == ["c"]
    assert await names(core_v1, field_selector="metadata.name=b") == ["b"]
    every = await core_v1.list_pod_for_all_namespaces(label_selector="app=dev")
    assert sorted(p.metadata.namespace for p in every.items) == ["default", "default", "elsewhere"]


async def test_bad_selector_is_400_status(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    cases: list[dict[str, Any]] = [{"label_selector": "a=(b"}, {"field_selector": "spec.x=1"}]
    for kwargs in cases:
        with pytest.raises(client.ApiException) as caught:
            await core_v1.list_namespaced_pod(NS, **kwargs)
        assert caught.value.status == 400
        assert reason(caught.value) == "BadRequest"


async def test_missing_objects_are_not_found_status(core_v1: client.CoreV1Api) -> None:
    for read in (core_v1.read_namespaced_pod, core_v1.read_namespaced_config_map):
        with pytest.raises(client.ApiException) as caught:
            await read("nope", NS)
        assert caught.value.status == 404
        assert reason(caught.value) == "NotFound"
        assert json.loads(caught.value.body or "")["message"].endswith('"nope" not found')


async def test_pods_look_like_real_pods(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    kube_api.create_pod("p", labels={"a": "1"}, annotations={"note": "x"})
    pod = await core_v1.read_namespaced_pod("p", NS)
    assert (pod.kind, pod.metadata.namespace, pod.metadata.annotations) == (
        "Pod",
        NS,
        {"note": "x"},
    )
    assert pod.metadata.uid and pod.metadata.creation_timestamp is not None
    assert [c.name for c in pod.spec.containers] == ["dev"]
    ready = {c.type: c.status for c in pod.status.conditions}["Ready"]
    assert (pod.status.phase, ready) == ("Running", "True")
    assert pod.status.container_statuses[0].ready is True
    assert pod.status.container_statuses[0].state.running is not None

    kube_api.update_pod("p", ready=False, labels={"a": "2"})
    pod2 = await core_v1.read_namespaced_pod("p", NS)
    assert {c.type: c.status for c in pod2.status.conditions}["Ready"] == "False"
    assert pod2.metadata.labels == {"a": "2"}
    assert int(pod2.metadata.resource_version) > int(pod.metadata.resource_version)
    kube_api.update_pod("p", phase="Succeeded")
    pod3 = await core_v1.read_namespaced_pod("p", NS)
    assert pod3.status.container_statuses[0].state.terminated.exit_code == 0


async def test_configmaps(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    kube_api.put_configmap("cfg", {"k": "v"}, labels={"role": "cfg"})
    kube_api.put_configmap("cfg", {"k": "v2"})
    cm = await core_v1.read_namespaced_config_map("cfg", NS)
    assert (cm.data, cm.metadata.labels) == ({"k": "v2"}, {"role": "cfg"})
    listed = await core_v1.list_namespaced_config_map(NS, label_selector="role=cfg")
    assert [c.metadata.name for c in listed.items] == ["cfg"]
    assert listed.metadata.resource_version == str(kube_api.store.rv)
    kube_api.delete_configmap("cfg")
    assert (await core_v1.list_namespaced_config_map(NS)).items == []


async def test_every_mutation_bumps_the_global_resource_version(kube_api: FakeKubeApi) -> None:
    versions = [
        kube_api.create_pod("a")["metadata"]["resourceVersion"],
        kube_api.put_configmap("c", {})["metadata"]["resourceVersion"],
        kube_api.update_pod("a", phase="Pending")["metadata"]["resourceVersion"],
    ]
    kube_api.delete_pod("a")
    assert [int(v) for v in versions] == sorted(int(v) for v in versions)
    assert len(set(versions)) == 3 and kube_api.store.rv > int(versions[-1])


async def test_discovery_and_version(kube_api: FakeKubeApi, kube_client: client.ApiClient) -> None:
    assert (await client.VersionApi(kube_client).get_code()).git_version.startswith("v1.32")
    assert (await client.CoreApi(kube_client).get_api_versions()).versions == ["v1"]
    resources = await client.CoreV1Api(kube_client).get_api_resources()
    assert {"pods", "pods/exec", "configmaps"} <= {r.name for r in resources.resources}
    assert (await client.ApisApi(kube_client).get_api_versions()).groups == []


async def test_token_is_checked(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    url = f"{kube_api.url}/api/v1/namespaces/default/pods"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["reason"] == "Unauthorized"
    async with http.get(url, headers={"Authorization": f"Bearer {kube_api.token}"}) as resp:
        assert resp.status == 200


async def test_unknown_paths_and_methods_get_status(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": f"Bearer {kube_api.token}"}
    async with http.get(f"{kube_api.url}/openapi/v2", headers=auth) as resp:
        assert (resp.status, (await resp.json())["reason"]) == (404, "NotFound")
    async with http.post(f"{kube_api.url}/api/v1/namespaces/default/pods", headers=auth) as resp:
        assert (resp.status, (await resp.json())["reason"]) == (405, "MethodNotAllowed")


async def test_injected_errors_then_recovery(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    kube_api.create_pod("a")
    kube_api.faults.fail_next(2, 503, path=r"/pods$", method="GET")
    for _ in range(2):
        with pytest.raises(client.ApiException) as caught:
            await core_v1.list_namespaced_pod(NS)
        assert caught.value.status == 503
        assert reason(caught.value) == "ServiceUnavailable"
    await core_v1.read_namespaced_pod("a", NS)  # path did not match: unaffected
    assert await names(core_v1) == ["a"]
    kube_api.faults.fail_next(1, 500)
    with pytest.raises(client.ApiException) as caught:
        await core_v1.read_namespaced_pod("a", NS)
    assert caught.value.status == 500
    lists = [r for r in kube_api.requests if r.path.endswith("/pods")]
    assert len(lists) == 3


async def test_delayed_requests(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    kube_api.faults.delay_next(1, 0.3)
    started = time.monotonic()
    await core_v1.list_namespaced_pod(NS)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await core_v1.list_namespaced_pod(NS)
    assert time.monotonic() - started < 0.3


async def test_down_and_up(kube_api: FakeKubeApi, kubeconfig: Path) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.retries = 0  # otherwise urllib-style retries hide the reset
    async with client.ApiClient(configuration) as api:
        v1 = client.CoreV1Api(api)
        kube_api.faults.set_down("503")
        with pytest.raises(client.ApiException) as caught:
            await v1.list_namespaced_pod(NS)
        assert caught.value.status == 503
        kube_api.faults.set_down("reset")
        with pytest.raises(aiohttp.ClientConnectionError):
            await v1.list_namespaced_pod(NS)
        kube_api.faults.set_up()
        assert await names(v1) == []
