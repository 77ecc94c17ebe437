"""Checks on the deployment assets: the kustomize manifests in deploy/ and the Dockerfile.

The manifests are rendered with `kubectl kustomize` (offline, no cluster needed) exactly as
`kubectl apply -k` would send them, then checked for the properties the service relies on:
least-privilege RBAC, probes on the real endpoints, a locked-down security context,
selectors that match, no committed credentials. No Docker engine is needed: the Dockerfile is
checked as text.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rdev.adapters.kubernetes import discovery
from rdev.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

KNOWN_KINDS = {
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "Namespace"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
}

EXPECTED_ROLE_RULES = {
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods/exec", "get"),
    ("", "pods/exec", "create"),
    ("", "configmaps", "get"),
    ("", "configmaps", "list"),
    ("", "configmaps", "watch"),
}

DISCOVERY_LABELS = {"rdev.orchard9.ai/project": "true", "rdev.orchard9.ai/name": "example"}

# Kubernetes label syntax: optional DNS-subdomain prefix + "/" + name; values are names or "".
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE_RE = re.compile(rf"^{_LABEL_NAME}?$")

SHUTDOWN_MARGIN_SECONDS = 3  # between rdev's exit and the SIGKILL, for a slow node
REAPER = '["/usr/bin/tini", "--", "rdev"]'
BUILD_TOOLS = ("build-essential", "gcc", "g++", "clang", "make", "cmake", "python3-dev")


# ----------------------------------------------------------------------------- rendering


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot render the kustomize manifests")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return _kustomize(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return _kustomize(OVERLAY)


@pytest.fixture(params=["base", "overlay"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = request.getfixturevalue(request.param)
    return docs


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(docs, "Deployment", "rdev")


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _config_value(docs: list[dict[str, Any]], key: str) -> str:
    value: str = _one(docs, "ConfigMap", "rdev-config")["data"][key]
    return value


def _labels_everywhere(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for key, value in (doc["metadata"].get("labels") or {}).items():
            yield where, key, value
        template = doc.get("spec", {}).get("template", {}).get("metadata", {})
        for key, value in (template.get("labels") or {}).items():
            yield f"{where} pod template", key, value


# ----------------------------------------------------------------------------- structure


def test_every_document_has_api_version_kind_and_name(rendered: list[dict[str, Any]]) -> None:
    assert rendered
    for doc in rendered:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_every_kind_uses_a_known_api_version(rendered: list[dict[str, Any]]) -> None:
    unknown = {(d["apiVersion"], d["kind"]) for d in rendered} - KNOWN_KINDS
    assert not unknown


def test_base_renders_the_expected_objects_without_a_namespace(
    base: list[dict[str, Any]],
) -> None:
    assert {(d["kind"], d["metadata"]["name"]) for d in base} == {
        ("ServiceAccount", "rdev"),
        ("Role", "rdev"),
        ("RoleBinding", "rdev"),
        ("ConfigMap", "rdev-config"),
        ("ConfigMap", "rdev-projects"),
        ("Deployment", "rdev"),
        ("Service", "rdev"),
        ("PodDisruptionBudget", "rdev"),
        ("NetworkPolicy", "rdev"),
    }
    assert all("namespace" not in d["metadata"] for d in base)


def test_example_overlay_adds_the_project_pod_and_puts_everything_in_namespace_rdev(
    base: list[dict[str, Any]], overlay: list[dict[str, Any]]
) -> None:
    added = {(d["kind"], d["metadata"]["name"]) for d in overlay} - {
        (d["kind"], d["metadata"]["name"]) for d in base
    }
    assert added == {("StatefulSet", "claudebox-example"), ("Service", "claudebox-example")}
    assert {d["metadata"].get("namespace") for d in overlay} == {"rdev"}


def test_overlay_sets_a_real_image_for_rdev(overlay: list[dict[str, Any]]) -> None:
    image = _container(overlay)["image"]
    assert image.startswith("registry.example.com/rdev:")
    assert not image.endswith(":latest")


def test_all_labels_are_valid_kubernetes_labels(rendered: list[dict[str, Any]]) -> None:
    for where, key, value in _labels_everywhere(rendered):
        assert LABEL_KEY_RE.match(key), f"{where}: bad label key {key!r}"
        assert isinstance(value, str), f"{where}: label {key} must be a string, got {value!r}"
        assert LABEL_VALUE_RE.match(value), f"{where}: bad value {value!r} for label {key}"


# ----------------------------------------------------------------------------- RBAC


def test_role_grants_exactly_the_least_privilege_rules(rendered: list[dict[str, Any]]) -> None:
    role = _one(rendered, "Role", "rdev")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    assert granted == EXPECTED_ROLE_RULES
    assert not [d for d in rendered if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_rolebinding_binds_role_rdev_to_service_account_rdev(
    overlay: list[dict[str, Any]],
) -> None:
    binding = _one(overlay, "RoleBinding", "rdev")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "rdev",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rdev", "namespace": "rdev"}]
    pod_spec = _deployment(overlay)["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "rdev"
    _one(overlay, "ServiceAccount", "rdev")


# ----------------------------------------------------------------------------- Deployment


def _pre_stop_seconds(container: dict[str, Any]) -> float:
    """The preStop delay: an exec of `sleep N`, or the Kubernetes `sleep` action."""
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] in {"sleep", "/bin/sleep", "/usr/bin/sleep"} and len(command) == 2, command
    return float(command[1])


def _rdev_settings(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """rdev's settings as the pod gets them from rdev-config (rdev's own validation included)."""
    for name in list(os.environ):
        if name.startswith("RDEV_"):
            monkeypatch.delenv(name)
    for name, value in _one(docs, "ConfigMap", "rdev-config")["data"].items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_deployment_runs_two_replicas(rendered: list[dict[str, Any]]) -> None:
    assert _deployment(rendered)["spec"]["replicas"] == 2


def test_pre_stop_delay_and_shutdown_budget_fit_the_termination_grace_with_a_margin(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    grace = _deployment(rendered)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = _pre_stop_seconds(_container(rendered))
    settings = _rdev_settings(rendered, monkeypatch)
    plan = settings.shutdown_plan
    assert "RDEV_SHUTDOWN_BUDGET_SECONDS" in _one(rendered, "ConfigMap", "rdev-config")["data"]
    # the endpoint is gone before rdev stops listening, and rdev is gone before the SIGKILL
    assert pre_stop >= 3
    assert pre_stop + plan.budget + SHUTDOWN_MARGIN_SECONDS <= grace, (pre_stop, plan, grace)
    assert (grace, pre_stop, plan.budget) == (30, 5, 20)  # as docs/deploy.md says


def test_the_deployment_keeps_the_images_entrypoint(rendered: list[dict[str, Any]]) -> None:
    # `command:` would replace ENTRYPOINT, so tini would no longer be PID 1
    assert "command" not in _container(rendered)
    assert _container(rendered)["args"][0] == "serve"


def test_probes_hit_ready_and_health_on_the_container_port(
    rendered: list[dict[str, Any]],
) -> None:
    container = _container(rendered)
    port, _metrics = container["ports"]  # the metrics port: test_metrics_are_served_on_...
    assert port["containerPort"] == 8080
    assert "--port" in container["args"]
    assert container["args"][container["args"].index("--port") + 1] == "8080"
    expected = {"readinessProbe": "/ready", "livenessProbe": "/health", "startupProbe": "/health"}
    for probe, path in expected.items():
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert http_get["port"] in {port["name"], port["containerPort"]}


def test_pod_and_container_are_locked_down(rendered: list[dict[str, Any]]) -> None:
    pod = _deployment(rendered)["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(rendered)["securityContext"]
    assert container["runAsNonRoot"] is True
    assert container["runAsUser"] == 10001
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert not container["capabilities"].get("add")
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_has_resource_requests_and_limits(rendered: list[dict[str, Any]]) -> None:
    resources = _container(rendered)["resources"]
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[section]), section


def test_writable_paths_are_empty_dirs_and_every_mount_has_a_volume(
    rendered: list[dict[str, Any]],
) -> None:
    pod_spec = _deployment(rendered)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(rendered)["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    for path in ("/var/lib/rdev", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], path
    assert _config_value(rendered, "RDEV_DATA_DIR") == "/var/lib/rdev"


def test_every_workload_volume_mount_refers_to_a_declared_volume(
    overlay: list[dict[str, Any]],
) -> None:
    workloads = [d for d in overlay if d["kind"] in {"Deployment", "StatefulSet"}]
    assert len(workloads) == 2
    for workload in workloads:
        pod_spec = workload["spec"]["template"]["spec"]
        declared = {v["name"] for v in pod_spec.get("volumes", [])}
        declared |= {
            c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])
        }
        for container in pod_spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in declared, (workload["metadata"]["name"], mount)


def test_environment_comes_from_config_map_secret_and_own_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    container = _container(rendered)
    assert container["envFrom"] == [{"configMapRef": {"name": "rdev-config"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["RDEV_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    secret_ref = env["RDEV_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == "rdev-database"
    assert secret_ref["key"]
    assert not secret_ref.get("optional", False)
    assert "value" not in env["RDEV_DATABASE_URL"]
    config = _one(rendered, "ConfigMap", "rdev-config")["data"]
    assert config["RDEV_BACKEND"] == "kubernetes"
    assert not {"RDEV_NAMESPACE", "RDEV_DATABASE_URL", "POSTGRES_PASSWORD"} & set(config)


def test_service_links_are_off_so_rdev_env_vars_are_not_clobbered(
    rendered: list[dict[str, Any]],
) -> None:
    # A Service called rdev would inject RDEV_PORT=tcp://... and friends otherwise.
    assert _deployment(rendered)["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_projects_config_map_has_a_parseable_example_entry(
    rendered: list[dict[str, Any]],
) -> None:
    data = _one(rendered, "ConfigMap", "rdev-projects")["data"]
    assert "example.yaml" in data
    assert all(key.endswith(".yaml") for key in data), sorted(data)
    entries = discovery.parse_settings(data)  # the parser rdev itself uses, which fails closed
    for name, entry in entries.items():
        assert entry.error is None, (name, entry.error)
        assert entry.workspace is None or entry.workspace.startswith("/")
    assert entries["example"].settings.max_concurrent == 5


# ----------------------------------------------------------------------------- selectors


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_deployment_selector_matches_its_pod_labels(rendered: list[dict[str, Any]]) -> None:
    selector = _deployment(rendered)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= _pod_labels(rendered).items()


def test_pdb_selects_the_deployment_pods_and_keeps_one(rendered: list[dict[str, Any]]) -> None:
    pdb = _one(rendered, "PodDisruptionBudget", "rdev")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= _pod_labels(rendered).items()


def test_service_selects_the_pods_and_targets_the_http_port(
    rendered: list[dict[str, Any]],
) -> None:
    service = _one(rendered, "Service", "rdev")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= _pod_labels(rendered).items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http"
    assert port["port"] == 80
    assert port["targetPort"] in {"http", 8080}


def test_network_policy_limits_ingress_and_egress(rendered: list[dict[str, Any]]) -> None:
    spec = _one(rendered, "NetworkPolicy", "rdev")["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= _pod_labels(rendered).items()
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    ingress, scrape = spec["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    # /metrics' own port, from the monitoring namespace only
    assert scrape["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert scrape["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    peers = ingress["from"]
    assert any("namespaceSelector" in p and "podSelector" not in p for p in peers)
    assert {"podSelector": {"matchLabels": {"rdev.orchard9.ai/client": "true"}}} in peers
    egress_ports = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 5432),
        ("TCP", 443),
        ("TCP", 6443),
    }
    # Exec goes through the API server: no egress rule towards the project pods.
    for rule in spec["egress"]:
        for peer in rule.get("to", []):
            assert "rdev.orchard9.ai/project" not in str(peer)
            if "ipBlock" in peer:
                ipaddress.ip_network(peer["ipBlock"]["cidr"])


# ----------------------------------------------------------------------------- metrics


def test_metrics_are_served_on_their_own_port_and_the_pods_say_so(
    rendered: list[dict[str, Any]],
) -> None:
    port = int(_config_value(rendered, "RDEV_METRICS_PORT"))
    assert port != 8080
    settings = load_settings(RDEV_METRICS_PORT=str(port))
    assert settings.metrics_port == port
    ports = {p["name"]: p["containerPort"] for p in _container(rendered)["ports"]}
    assert ports == {"http": 8080, "metrics": port}
    annotations = _deployment(rendered)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # the token, if an operator adds one, belongs in a Secret, never in the ConfigMap
    assert "RDEV_METRICS_TOKEN" not in _one(rendered, "ConfigMap", "rdev-config")["data"]


def test_service_monitor_example_scrapes_the_metrics_port_of_every_pod(
    base: list[dict[str, Any]],
) -> None:
    path = DEPLOY / "examples" / "servicemonitor.example.yaml"
    service, monitor = yaml.safe_load_all(path.read_text())
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= _pod_labels(base).items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert monitor["kind"] == "ServiceMonitor"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        assert "servicemonitor" not in kustomization.read_text()


# ----------------------------------------------------------------------------- example project


def test_example_statefulset_is_discoverable_with_a_workspace_volume(
    overlay: list[dict[str, Any]],
) -> None:
    statefulset = _one(overlay, "StatefulSet", "claudebox-example")
    template = statefulset["spec"]["template"]
    assert DISCOVERY_LABELS.items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["annotations"]["rdev.orchard9.ai/description"]
    assert (
        statefulset["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = {
        m["mountPath"]: m["name"]
        for c in template["spec"]["containers"]
        for m in c.get("volumeMounts", [])
    }
    assert mounts["/workspace"] == claim["metadata"]["name"]
    service = _one(overlay, "Service", statefulset["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    # The example project's settings exist in the ConfigMap under its label name.
    assert "example.yaml" in _one(overlay, "ConfigMap", "rdev-projects")["data"]


# ----------------------------------------------------------------------------- secrets


def test_no_secret_with_a_credential_is_rendered(rendered: list[dict[str, Any]]) -> None:
    secrets = [d for d in rendered if d["kind"] == "Secret"]
    assert not secrets, "the database Secret must be created by the operator, not committed"
    text = yaml.safe_dump_all(rendered)
    assert "postgresql://" not in text
    assert "postgresql+psycopg://" not in text


def test_secret_example_is_a_placeholder_outside_every_kustomization() -> None:
    example = DEPLOY / "examples" / "secret.example.yaml"
    secret = yaml.safe_load(example.read_text())
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "rdev-database"
    assert "CHANGE-ME" in secret["stringData"]["database-url"]
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        assert "secret.example.yaml" not in yaml.safe_dump(
            yaml.safe_load(kustomization.read_text())
        ), kustomization


# ----------------------------------------------------------------------------- Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "dangling line continuation at the end of the Dockerfile"
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{keyword} before the first FROM"
        stages[-1].append((keyword, args))
    return stages


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert image == "python:3.11-slim-bookworm", image
    builder = " ".join(args for _, args in stages[0])
    assert "uv==" in builder
    assert "uv sync --frozen --no-dev --no-editable" in builder


def test_dockerfile_final_stage_runs_as_a_non_root_user() -> None:
    final = _stages()[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"


def test_dockerfile_final_stage_has_no_build_tools_and_copies_only_the_venv() -> None:
    final = _stages()[-1]
    for keyword, args in final:
        if keyword == "RUN":
            words = re.split(r"[\s;&|]+", args)
            assert not set(BUILD_TOOLS) & set(words), args
            if "apt-get install" in args:
                assert "--no-install-recommends" in args
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=builder /app/.venv /app/.venv"]
    assert ("EXPOSE", "8080") in final


def test_dockerfile_runs_rdev_under_tini_as_pid_1() -> None:
    final = _stages()[-1]
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoints == [REAPER]
    assert json.loads(entrypoints[0]) == ["/usr/bin/tini", "--", "rdev"]  # exec form, no shell
    installed = [args for keyword, args in final if keyword == "RUN" and "apt-get install" in args]
    assert any("tini" in re.split(r"\s+", args) for args in installed), installed
    assert [args for keyword, args in final if keyword == "CMD"][-1].startswith('["serve"')


def test_dockerfile_leaves_no_apt_lists_or_caches_in_any_layer() -> None:
    for stage in _stages():
        for keyword, args in stage:
            if keyword != "RUN" or not re.search(r"\bapt-get (update|install)\b", args):
                continue
            # cleaned in the same RUN, or the files stay in that layer for good
            assert "apt-get clean" in args, args
            removed = re.search(r"rm -rf ([^;&|]+)", args)
            assert removed is not None, args
            paths = removed.group(1).split()
            assert "/var/lib/apt/lists/*" in paths, args
            assert "/var/cache/apt/*" in paths, args
            assert args.index("rm -rf") > args.rindex("apt-get install"), args


def test_dockerignore_keeps_local_state_out_but_not_the_build_inputs() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".rdev", "tests", "bench"} <= patterns
    for needed in ("pyproject.toml", "uv.lock", "README.md", "src", "src/rdev/__init__.py"):
        assert not any(fnmatch.fnmatch(needed, p) for p in patterns), needed
