"""Builders for realistic Pod, ConfigMap and Status JSON documents.

Clients deserialize these into typed models (``V1Pod``) and read conditions, container
statuses and resource versions from them, so they mirror the shape real servers emit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def truthy(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it ("True" from Python too)."""
    return value in ("1", "t", "T", "true", "True", "TRUE")


def now() -> str:
    """An RFC 3339 timestamp with second precision, as Kubernetes serializes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_doc(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``metav1.Status`` failure, the body of every API error response."""
    doc: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        doc["details"] = details
    return doc


def not_found(resource: str, name: str) -> Obj:
    details = {"name": name, "kind": resource}
    return status_doc(404, "NotFound", f'{resource} "{name}" not found', details)


def _meta(name: str, namespace: str, labels: Mapping[str, str] | None) -> Obj:
    return {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "resourceVersion": "0",
        "creationTimestamp": now(),
        "labels": dict(labels or {}),
    }


def make_pod(
    name: str,
    namespace: str,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    containers: Sequence[str] = ("dev",),
    node_name: str = "fake-node",
) -> Obj:
    """A pod without status; call :func:`set_pod_status` to fill it in."""
    meta = _meta(name, namespace, labels)
    meta["annotations"] = dict(annotations or {})
    spec_containers = [
        {"name": c, "image": f"{c}:latest", "imagePullPolicy": "IfNotPresent"} for c in containers
    ]
    spec = {"containers": spec_containers, "nodeName": node_name, "restartPolicy": "Always"}
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": {}}


def _container_state(phase: str, started: str) -> Obj:
    if phase == "Running":
        return {"running": {"startedAt": started}}
    if phase == "Succeeded":
        return {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now()}}
    if phase == "Failed":
        return {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now()}}
    return {"waiting": {"reason": "ContainerCreating"}}


def _condition(kind: str, ok: bool, stamp: str) -> Obj:
    return {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": stamp}


def set_pod_status(pod: Obj, phase: str, ready: bool) -> None:
    """Rewrite ``status`` so phase, Ready condition and container states agree."""
    if phase not in PHASES:
        raise ValueError(f"unknown pod phase {phase!r}")
    ready = ready and phase == "Running"
    stamp = now()
    started = pod["status"].get("startTime", stamp)
    statuses = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": f"docker.io/library/{c['image']}@sha256:{'0' * 64}",
            "containerID": f"containerd://{uuid.uuid5(uuid.NAMESPACE_OID, c['name']).hex}",
            "ready": ready,
            "started": phase == "Running",
            "restartCount": 0,
            "state": _container_state(phase, started),
        }
        for c in pod["spec"]["containers"]
    ]
    scheduled = phase != "Unknown"
    pod["status"] = {
        "phase": phase,
        "conditions": [
            _condition("PodScheduled", scheduled, started),
            _condition("Initialized", scheduled, started),
            _condition("ContainersReady", ready, stamp),
            _condition("Ready", ready, stamp),
        ],
        "containerStatuses": statuses,
        "hostIP": "10.0.0.1",
        "podIP": "10.244.0.10",
        "qosClass": "BestEffort",
        "startTime": started,
    }


def make_configmap(
    name: str, namespace: str, data: Mapping[str, str], labels: Mapping[str, str] | None
) -> Obj:
    meta = _meta(name, namespace, labels)
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta, "data": dict(data)}


def make_namespace(name: str) -> Obj:
    meta = {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "resourceVersion": "1",
            "creationTimestamp": "2025-01-01T00:00:00Z", "labels": {"kubernetes.io/metadata.name": name}}  # fmt: skip
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}  # fmt: skip
