"""Pods and the `rdev-projects` ConfigMap turned into Projects.

Pure functions over the raw JSON the API returns, so every rule (label vs annotation vs ConfigMap
precedence, status mapping, two pods claiming one name) is testable without a cluster, and the
watch code only has to keep dictionaries current.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from rdev.domain import policy
from rdev.domain.errors import InvalidInput
from rdev.domain.models import CommandKind, Project, ProjectStatus

Obj = dict[str, Any]

PREFIX = "rdev.orchard9.ai/"
PROJECT_LABEL = PREFIX + "project"
NAME_KEY = PREFIX + "name"
WORKSPACE_KEY = PREFIX + "workspace"
DESCRIPTION_KEY = PREFIX + "description"
LABEL_SELECTOR = f"{PROJECT_LABEL}=true"
CONFIGMAP = "rdev-projects"
DEFAULT_WORKSPACE = "/workspace"
_KINDS = frozenset(k.value for k in CommandKind)


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """One `<project>.yaml` entry of the ConfigMap; None means "not set, keep the pod's value"."""

    description: str | None = None
    workspace: str | None = None
    allowed_kinds: frozenset[CommandKind] | None = None
    max_concurrent: int | None = None
    container: str | None = None
    allow_raw_shell: bool | None = None
    allow_claude_shell: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a project's commands run: only discovery ever decides the pod and container."""

    project: Project
    pod: str
    container: str | None


def parse_settings(data: Mapping[str, str]) -> dict[str, ProjectSettings]:
    return {
        key.removesuffix(".yaml"): _one_settings(text)
        for key, text in data.items()
        if key.endswith(".yaml") and len(key) > len(".yaml")
    }


def _one_settings(text: str) -> ProjectSettings:
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        return ProjectSettings(error=f"invalid YAML: {e}")
    if not isinstance(doc, dict):
        return ProjectSettings(error="entry is not a mapping")
    kinds = doc.get("allowed_commands")
    if kinds is not None and not isinstance(kinds, list):
        return ProjectSettings(error="allowed_commands must be a list")
    limit = doc.get("max_concurrent_commands")
    workspace = _workspace(doc.get("workspace"))
    if doc.get("workspace") is not None and workspace is None:
        return ProjectSettings(error="workspace must be a path")
    container = doc.get("container")
    raw_shell = doc.get("allow_raw_shell")
    return ProjectSettings(
        description=str(doc["description"]) if doc.get("description") is not None else None,
        workspace=workspace,
        allowed_kinds=frozenset(CommandKind(k) for k in kinds if isinstance(k, str) and k in _KINDS)
        if kinds is not None
        else None,
        max_concurrent=limit if isinstance(limit, int) and limit > 0 else None,
        container=container if isinstance(container, str) and container else None,
        allow_raw_shell=raw_shell if isinstance(raw_shell, bool) else None,
        allow_claude_shell=doc.get("allow_claude_shell") is True,
    )


def _workspace(value: object) -> str | None:
    """An absolute, normalised path; a label value cannot hold '/', so `app` means `/app`."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        return None
    return posixpath.normpath("/" + value.strip().lstrip("/"))


def pod_status(pod: Obj) -> ProjectStatus:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return ProjectStatus.TERMINATING
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Pending":
        return ProjectStatus.PENDING
    if phase == "Running":
        return ProjectStatus.RUNNING if _ready(status) else ProjectStatus.PENDING
    if phase in ("Succeeded", "Failed"):
        return ProjectStatus.FAILED
    return ProjectStatus.UNKNOWN


def _ready(status: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _first_container(pod: Obj) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0]["name"]) if containers and containers[0].get("name") else None


def project_id(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return str((meta.get("labels") or {}).get(NAME_KEY) or meta.get("name", ""))


def build_target(pod: Obj, settings: ProjectSettings | None) -> Target:
    meta = pod.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    notes = meta.get("annotations") or {}
    cfg = settings or ProjectSettings()
    workspace = (
        cfg.workspace
        or _workspace(notes.get(WORKSPACE_KEY))
        or _workspace(labels.get(WORKSPACE_KEY))
        or DEFAULT_WORKSPACE
    )
    status = pod_status(pod)
    description = cfg.description or str(notes.get(DESCRIPTION_KEY, ""))
    kinds = cfg.allowed_kinds if cfg.allowed_kinds is not None else frozenset(CommandKind)
    if cfg.error is not None:
        # A broken entry may have been meant to restrict the project: refuse rather than widen.
        status, description, kinds = ProjectStatus.FAILED, f"invalid {CONFIGMAP} entry", frozenset()
    project = Project(
        id=project_id(pod),
        status=status,
        description=description,
        workspace=workspace,
        allowed_kinds=kinds,
        max_concurrent=cfg.max_concurrent,
        allow_raw_shell=bool(cfg.allow_raw_shell),
        allow_claude_shell=cfg.allow_claude_shell,
        pod=str(meta.get("name", "")),
        labels=labels,
    )
    return Target(project, project.pod or "", cfg.container or _first_container(pod))


def build_targets(
    pods: Iterable[Obj], settings: Mapping[str, ProjectSettings]
) -> tuple[dict[str, Target], list[str]]:
    """Projects by id, plus warnings (invalid names, names claimed by several pods)."""
    claims: dict[str, list[Obj]] = {}
    warnings: list[str] = []
    for pod in pods:
        pid = project_id(pod)
        try:
            policy.check_name(pid, field="project")
        except InvalidInput:
            warnings.append(f"pod {pod['metadata'].get('name')} has an invalid project name")
            continue
        claims.setdefault(pid, []).append(pod)
    targets = {}
    for pid, claimants in sorted(claims.items()):
        chosen = min(claimants, key=_preference)
        if len(claimants) > 1:
            names = sorted(p["metadata"]["name"] for p in claimants)
            warnings.append(
                f"project {pid} is claimed by pods {names}; using {chosen['metadata']['name']}"
            )
        targets[pid] = build_target(chosen, settings.get(pid))
    return targets, warnings


def _preference(pod: Obj) -> tuple[bool, str]:
    """Running and ready first, then by pod name: the same choice on every replica."""
    return pod_status(pod) is not ProjectStatus.RUNNING, str(pod["metadata"].get("name", ""))
