"""Pods and the `rdev-projects` ConfigMap turned into Projects.

Pure functions over the raw JSON the API returns, so every rule (label vs annotation vs ConfigMap
precedence, status mapping, two pods claiming one name) is testable without a cluster, and the
watch code only has to keep dictionaries current.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rdev.domain import policy, settings
from rdev.domain.errors import InvalidInput, InvalidSettings
from rdev.domain.models import Project, ProjectStatus
from rdev.domain.settings import ProjectSettings

Obj = dict[str, Any]

PREFIX = "rdev.orchard9.ai/"
PROJECT_LABEL = PREFIX + "project"
NAME_KEY = PREFIX + "name"
WORKSPACE_KEY = PREFIX + "workspace"
DESCRIPTION_KEY = PREFIX + "description"
LABEL_SELECTOR = f"{PROJECT_LABEL}=true"
CONFIGMAP = "rdev-projects"
DEFAULT_WORKSPACE = "/workspace"
_CONTAINER = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # an RFC 1123 label


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One `<project>.yaml` entry of the ConfigMap: the project settings every backend has, plus
    where commands run (workspace, container; None keeps the pod's value). `error`, when set, is
    why the entry cannot be used; the project is then `failed`."""

    settings: ProjectSettings = field(default_factory=ProjectSettings)
    workspace: str | None = None
    container: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a project's commands run: only discovery ever decides the pod and container."""

    project: Project
    pod: str
    container: str | None


def parse_settings(data: Mapping[str, str]) -> dict[str, ConfigEntry]:
    return {
        key.removesuffix(".yaml"): _one_entry(key, text)
        for key, text in data.items()
        if key.endswith(".yaml") and len(key) > len(".yaml")
    }


def _one_entry(key: str, text: str) -> ConfigEntry:
    try:
        return _parse_entry(text)
    except InvalidSettings as e:
        return ConfigEntry(error=settings.failure_reason(f"{CONFIGMAP} entry {key}", e))


def _parse_entry(text: str) -> ConfigEntry:
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise InvalidSettings([f"not valid YAML: {_yaml_problem(e)}"]) from e
    if not isinstance(doc, dict):
        raise InvalidSettings([f"must be a mapping of keys to values, not {type(doc).__name__}"])
    common = {k: v for k, v in doc.items() if k not in PLACEMENT_KEYS}
    problems: list[str] = []
    placement: dict[str, str] = {}
    parsed = ProjectSettings()
    for key, parse in PLACEMENT_KEYS.items():
        if key in doc:
            try:
                placement[key] = parse(doc[key])
            except ValueError as e:
                problems.append(f"{key} {e}")
    try:
        parsed = settings.parse_settings(common)
    except InvalidSettings as e:
        problems[:0] = e.problems
    if problems:
        raise InvalidSettings(problems)
    return ConfigEntry(parsed, placement.get("workspace"), placement.get("container"))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The problem and where, without the echo of the text that PyYAML's message carries."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())[:200]


def _workspace_setting(value: object) -> str:
    workspace = _workspace(value)
    if workspace is None:
        raise ValueError("must be a path in the pod, such as /workspace")
    return workspace


def _container_setting(value: object) -> str:
    if not isinstance(value, str) or not _CONTAINER.fullmatch(value):
        raise ValueError("must be a container name (lowercase letters, digits and '-')")
    return value


# the ConfigMap's keys beyond the common project settings: where in the pod commands run
PLACEMENT_KEYS: dict[str, Callable[[object], str]] = {
    "workspace": _workspace_setting,
    "container": _container_setting,
}


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


def pod_reason(pod: Obj) -> str | None:
    """Why a pod's project is not running, for people; None when it is."""
    status = pod_status(pod)
    if status is ProjectStatus.RUNNING:
        return None
    name = (pod.get("metadata") or {}).get("name", "")
    phase = (pod.get("status") or {}).get("phase") or "unknown"
    if status is ProjectStatus.TERMINATING:
        return f"pod {name} is being deleted"
    if status is ProjectStatus.PENDING and phase == "Running":
        return f"pod {name} is not ready"
    return f"pod {name} is in phase {phase}"


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


def build_target(pod: Obj, entry: ConfigEntry | None) -> Target:
    meta = pod.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    notes = meta.get("annotations") or {}
    cfg = entry or ConfigEntry()
    workspace = (
        cfg.workspace
        or _workspace(notes.get(WORKSPACE_KEY))
        or _workspace(labels.get(WORKSPACE_KEY))
        or DEFAULT_WORKSPACE
    )
    common = cfg.settings
    status, reason = pod_status(pod), pod_reason(pod)
    kinds = common.allowed_kinds
    if cfg.error is not None:
        # A broken entry may have been meant to restrict the project: refuse rather than widen.
        status, reason, kinds = ProjectStatus.FAILED, cfg.error, frozenset()
    project = Project(
        id=project_id(pod),
        status=status,
        status_reason=reason,
        description=common.description or str(notes.get(DESCRIPTION_KEY, "")),
        workspace=workspace,
        allowed_kinds=kinds,
        max_concurrent=common.max_concurrent,
        allow_raw_shell=common.allow_raw_shell,
        allow_claude_shell=common.allow_claude_shell,
        claude_env=common.claude_env,
        daily_budget_usd=common.daily_budget_usd,
        pod=str(meta.get("name", "")),
        labels=labels,
    )
    return Target(project, project.pod or "", cfg.container or _first_container(pod))


def build_targets(
    pods: Iterable[Obj], entries: Mapping[str, ConfigEntry]
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
        targets[pid] = build_target(chosen, entries.get(pid))
    return targets, warnings


def _preference(pod: Obj) -> tuple[bool, str]:
    """Running and ready first, then by pod name: the same choice on every replica."""
    return pod_status(pod) is not ProjectStatus.RUNNING, str(pod["metadata"].get("name", ""))
