"""Watch streams of the fake API server: ordering, resume, 410, bookmarks, timeouts, drops."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch

from .server import FakeKubeApi

NS = "default"
Seen = list[tuple[str, dict[str, Any]]]


async def collect(func: Any, n: int, *args: Any, **kwargs: Any) -> Seen:
    """The first ``n`` events of a kubernetes_asyncio watch (fewer if the stream ends)."""
    seen: Seen = []
    async with watch.Watch() as w:
        async for event in w.stream(func, *args, **kwargs):
            seen.append((event["type"], event["raw_object"]))
            if len(seen) == n:
                break
    return seen


def summary(seen: Seen) -> list[tuple[str, str]]:
    return [(kind, obj["metadata"].get("name", "")) for kind, obj in seen]


async def start_watch(kube_api: FakeKubeApi, func: Any, n: int, *args: Any, **kw: Any) -> Any:
    before = sum(w.resource == "pods" for w in kube_api.store.watchers)
    task = asyncio.ensure_future(collect(func, n, *args, **kw))
    await kube_api.wait_for_watchers(before + 1)
    return task


async def test_watch_sees_changes_in_order(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    rv = (await core_v1.list_namespaced_pod(NS)).metadata.resource_version
    task = await start_watch(kube_api, core_v1.list_namespaced_pod, 4, NS, resource_version=rv)
    versions = [
        kube_api.create_pod("a")["metadata"]["resourceVersion"],
        kube_api.update_pod("a", ready=False)["metadata"]["resourceVersion"],
        kube_api.create_pod("b")["metadata"]["resourceVersion"],
    ]
    kube_api.delete_pod("a")
    seen = await asyncio.wait_for(task, 10)
    assert summary(seen) == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    got = [o["metadata"]["resourceVersion"] for _, o in seen]
    assert got[:3] == versions and int(got[3]) == kube_api.store.rv
    assert seen[0][1]["kind"] == "Pod" and seen[1][1]["status"]["conditions"]


async def test_watch_without_version_starts_with_current_objects(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    kube_api.create_pod("b")
    kube_api.create_pod("a")
    kube_api.create_pod("z", namespace="other")
    task = await start_watch(kube_api, core_v1.list_namespaced_pod, 3, NS)
    kube_api.create_pod("c")
    assert summary(await asyncio.wait_for(task, 10)) == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
    ]


async def test_resume_replays_missed_events(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    rv0 = kube_api.create_pod("a")["metadata"]["resourceVersion"]
    rv1 = kube_api.update_pod("a", phase="Pending")["metadata"]["resourceVersion"]
    kube_api.put_configmap("not-a-pod", {})
    kube_api.delete_pod("a")
    seen = await collect(core_v1.list_namespaced_pod, 2, NS, resource_version=rv0)
    assert summary(seen) == [("MODIFIED", "a"), ("DELETED", "a")]
    seen = await collect(core_v1.list_namespaced_pod, 1, NS, resource_version=rv1)
    assert summary(seen) == [("DELETED", "a")]


async def test_selector_transitions(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    kube_api.create_pod("a", labels={"app": "dev"})
    rv = str(kube_api.store.rv)
    task = await start_watch(
        kube_api, core_v1.list_namespaced_pod, 3, NS, label_selector="app=dev", resource_version=rv
    )
    kube_api.create_pod("b")  # not selected: no event
    kube_api.update_pod("b", labels={"app": "dev"})
    kube_api.update_pod("a", labels={})
    kube_api.update_pod("b", phase="Pending")
    seen = await asyncio.wait_for(task, 10)
    assert summary(seen) == [("ADDED", "b"), ("DELETED", "a"), ("MODIFIED", "b")]


async def test_expired_history_gives_410(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    rv = kube_api.create_pod("a")["metadata"]["resourceVersion"]
    kube_api.faults.expire_history()
    with pytest.raises(client.ApiException) as caught:
        await collect(core_v1.list_namespaced_pod, 1, NS, resource_version=rv, timeout_seconds=5)
    assert caught.value.status == 410
    assert "Expired" in str(caught.value.reason)
    relisted = await core_v1.list_namespaced_pod(NS)  # the cure: relist, watch from there
    task = await start_watch(
        kube_api, core_v1.list_namespaced_pod, 1, NS,
        resource_version=relisted.metadata.resource_version,
    )  # fmt: skip
    kube_api.delete_pod("a")
    assert summary(await asyncio.wait_for(task, 10)) == [("DELETED", "a")]


async def test_410_is_an_error_event_on_the_wire(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    kube_api.create_pod("a")
    kube_api.faults.expire_history()
    url = f"{kube_api.url}/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion=2"
    async with http.get(url, headers={"Authorization": f"Bearer {kube_api.token}"}) as resp:
        assert resp.status == 200
        lines = (await resp.read()).decode().splitlines()
    event = json.loads(lines[0])
    assert len(lines) == 1 and event["type"] == "ERROR"
    assert event["object"]["kind"] == "Status"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")


async def test_bounded_history_expires_old_versions(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    server = FakeKubeApi(tmp_path, token=None, history_limit=2)
    await server.start()
    try:
        first = server.create_pod("a")["metadata"]["resourceVersion"]
        for phase in ("Pending", "Running", "Pending"):
            server.update_pod("a", phase=phase)
        base = f"{server.url}/api/v1/namespaces/{NS}/pods?watch=true&timeoutSeconds=1"
        async with http.get(f"{base}&resourceVersion={first}") as resp:
            assert json.loads(await resp.content.readline())["type"] == "ERROR"
        async with http.get(f"{base}&resourceVersion={server.store.rv - 2}") as resp:
            kinds = [json.loads(line)["type"] for line in (await resp.read()).splitlines()]
        assert kinds == ["MODIFIED", "MODIFIED"]
    finally:
        await server.stop()


async def test_bookmarks(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    kube_api.create_pod("a")
    rv = str(kube_api.store.rv)
    kube_api.put_configmap("c", {})  # advances the global version beyond any pod event
    seen = await collect(
        core_v1.list_namespaced_pod, 1, NS, resource_version=rv, allow_watch_bookmarks=True
    )
    expected = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(int(rv) + 1)},
    }
    assert seen == [("BOOKMARK", expected)]


async def test_no_bookmarks_unless_asked(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    seen = await collect(core_v1.list_namespaced_pod, 1, NS, timeout_seconds=1)
    assert seen == []


async def test_watch_respects_timeout_seconds(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    kube_api.create_pod("a")
    started = time.monotonic()
    seen = await collect(core_v1.list_namespaced_pod, 5, NS, timeout_seconds=1)
    assert summary(seen) == [("ADDED", "a")]
    assert 1 <= time.monotonic() - started < 5


async def test_dropped_watch_breaks_the_stream(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    url = f"{kube_api.url}/api/v1/namespaces/{NS}/pods?watch=true"
    async with http.get(url, headers={"Authorization": f"Bearer {kube_api.token}"}) as resp:
        await kube_api.wait_for_watchers(1)
        kube_api.create_pod("a")
        assert json.loads(await resp.content.readline())["type"] == "ADDED"
        assert kube_api.faults.drop_watches() == 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.readline()
    assert kube_api.store.watchers == set()


async def test_watch_only_faults(kube_api: FakeKubeApi, core_v1: client.CoreV1Api) -> None:
    kube_api.faults.fail_next(1, 500, watch=True)
    await core_v1.list_namespaced_pod(NS)
    with pytest.raises(client.ApiException) as caught:
        await collect(core_v1.list_namespaced_pod, 1, NS, timeout_seconds=1)
    assert caught.value.status == 500
    watches = [r for r in kube_api.requests if r.watch]
    assert len(watches) == 1 and watches[0].param("timeoutSeconds") == "1"


async def test_configmap_and_cluster_wide_watches(
    kube_api: FakeKubeApi, core_v1: client.CoreV1Api
) -> None:
    cms = asyncio.ensure_future(collect(core_v1.list_namespaced_config_map, 2, NS))
    await kube_api.wait_for_watchers(1, resource="configmaps")
    pods = await start_watch(kube_api, core_v1.list_pod_for_all_namespaces, 2)
    kube_api.put_configmap("c", {"a": "1"})
    kube_api.create_pod("p", namespace="one")
    kube_api.put_configmap("c", {"a": "2"})
    kube_api.create_pod("q", namespace="two")
    seen = await asyncio.wait_for(cms, 10)
    assert [(k, o["data"]) for k, o in seen] == [("ADDED", {"a": "1"}), ("MODIFIED", {"a": "2"})]
    pod_seen = await asyncio.wait_for(pods, 10)
    assert [o["metadata"]["namespace"] for _, o in pod_seen] == ["one", "two"]
