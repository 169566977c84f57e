"""The Kubernetes manifests (deploy/kubernetes/), validated on a machine without a cluster or a network.

Every manifest is checked against the schemas of a pinned Kubernetes version that the kubernetes-validate package
ships (strict: an unknown field is an error, so a typo such as `securityContxt` cannot pass), with the network cut
for the duration. Then what a platform team relies on and a schema cannot know: non-root, read-only root filesystem
and resources for every container, probes on the addresses the settings name, secrets only by reference, a grace
period longer than every activity heartbeat timeout in the code and the registry, and NetworkPolicies that let the
pods reach Temporal's frontend, ServiceNow and DNS only.
"""

from __future__ import annotations

import ast
import ipaddress
import socket
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from config.registry import parse_registry
from config.runbooks import Step, WaveParams
from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
EXAMPLE_SECRET = MANIFESTS / "secret.example.yaml"
PRODUCTION_REGISTRY = ROOT / "deploy" / "runbooks.production.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# The Kubernetes release the manifests are written for; kubernetes-validate (pinned in the dev extra) ships its schemas.
KUBERNETES_VERSION = "1.34.0"
NAMESPACE = "changeloop"
SECRET_NAME = "changeloop-secrets"
# Where the code sets heartbeat timeouts: workflow call sites and the models' defaults (host operations, steps, waves).
HEARTBEAT_SOURCES = ("workflows", "activities", "config")
ALLOWED_EGRESS = {(53, "UDP"), (53, "TCP"), (7233, "TCP"), (443, "TCP")}
# Addresses ServiceNow egress must not reach: the cluster's private ranges and the cloud metadata service.
NOT_SERVICENOW = ("10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254")


# -- loading --------------------------------------------------------------------------------------------------------
def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p != KUSTOMIZATION)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text())
    return document


@pytest.fixture(scope="module")
def applied(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/kubernetes` creates."""
    return [doc for name in kustomization["resources"] for doc in documents(MANIFESTS / name)]


def one(applied: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in applied if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def worker(applied: list[dict[str, Any]]) -> dict[str, Any]:
    return one(applied, "Deployment", "changeloop-worker")


@pytest.fixture(scope="module")
def shim(applied: list[dict[str, Any]]) -> dict[str, Any]:
    return one(applied, "Deployment", "changeloop-shim")


@pytest.fixture(scope="module")
def settings_data(applied: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(applied, "ConfigMap", "changeloop-settings")["data"]
    return data


def deployments(applied: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in applied if d["kind"] == "Deployment"]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    result: list[dict[str, Any]] = spec["containers"] + spec.get("initContainers", [])
    return result


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == port)


# -- schema -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection or resolve a name fails the test: the schemas must come from the package."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.usefixtures("no_network")
def test_every_manifest_matches_the_pinned_kubernetes_schemas_offline() -> None:
    problems, validated = [], 0
    for path in manifest_files():
        for doc in documents(path):
            try:
                version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(map(str, exc.path)) or "<root>"
                problems.append(f"{path.name} {doc.get('kind')}/{doc['metadata']['name']}: {where}: {exc.message}")
                continue
            # validate() falls back to the newest older schema set it has; the pinned one must really be there.
            assert version == KUBERNETES_VERSION.rpartition(".")[0], f"validated against {version}"
            validated += 1
    assert problems == []
    kinds = {doc["kind"] for path in manifest_files() for doc in documents(path)}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert validated == sum(len(documents(p)) for p in manifest_files())


@pytest.mark.usefixtures("no_network")
def test_strict_validation_rejects_a_misspelt_field(worker: dict[str, Any]) -> None:
    """The check above can fail: strict schemas refuse what the API server would silently drop."""
    broken = yaml.safe_load(yaml.safe_dump(worker))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {"runAsNonRoot": True}
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_except_the_example_secret(
    kustomization: dict[str, Any], applied: list[dict[str, Any]]
) -> None:
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in manifest_files()} - {EXAMPLE_SECRET.name}
    assert kustomization["namespace"] == NAMESPACE
    assert all(d["kind"] != "Secret" for d in applied), "real secrets never live in the repository"
    for doc in applied:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
    images = {c["image"].rpartition(":")[0] for d in deployments(applied) for c in containers(d)}
    assert images == {entry["name"] for entry in kustomization["images"]}, "kustomize edit set image must reach them"


# -- pods -------------------------------------------------------------------------------------------------------------
def test_every_container_runs_as_the_images_non_root_user_read_only_with_resources(
    applied: list[dict[str, Any]],
) -> None:
    users = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("USER ")]
    image_uid = int(users[-1].split(":")[0])
    assert deployments(applied)
    for deployment in deployments(applied):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == image_uid != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        for container in containers(deployment):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security.get("runAsNonRoot", True) is True and security.get("runAsUser", image_uid) != 0, where
            assert not security.get("privileged"), where
            assert security["capabilities"]["drop"] == ["ALL"] and not security["capabilities"].get("add"), where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            assert container["image"].rpartition(":")[2] not in {"", "latest"}, f"{where}: pin a tag"


def test_writable_paths_are_pod_local_empty_dirs_and_the_registry_is_mounted_read_only(
    applied: list[dict[str, Any]], worker: dict[str, Any], settings_data: dict[str, str]
) -> None:
    runbooks = Path(settings_data["CHANGELOOP_RUNBOOKS"])
    state = Path(settings_data["CHANGELOOP_RECONCILE_STATE_DIR"])
    for deployment in deployments(applied):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        for container in containers(deployment):
            mounts = {Path(m["mountPath"]): m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts[Path("/tmp")]["name"]]
            registry = mounts[runbooks.parent]
            assert registry["readOnly"] is True
            assert volumes[registry["name"]]["configMap"]["name"] == "changeloop-runbooks"
            assert runbooks.name in one(applied, "ConfigMap", "changeloop-runbooks")["data"]
            for path, mount in mounts.items():
                assert "emptyDir" in volumes[mount["name"]] or mount.get("readOnly") is True, f"{path} is writable"
    worker_mounts = {Path(m["mountPath"]): m["name"] for m in containers(worker)[0]["volumeMounts"]}
    holder = next(path for path in worker_mounts if state.is_relative_to(path))
    worker_volumes = {v["name"]: v for v in worker["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in worker_volumes[worker_mounts[holder]]


def test_runbook_configmap_is_the_production_example_and_a_valid_registry(applied: list[dict[str, Any]]) -> None:
    text = one(applied, "ConfigMap", "changeloop-runbooks")["data"]["runbooks.yaml"]
    registry = parse_registry(text, "changeloop-runbooks")
    assert registry.runbooks and registry.match
    assert yaml.safe_load(text) == yaml.safe_load(PRODUCTION_REGISTRY.read_text()), (
        "deploy/kubernetes/runbooks-configmap.yaml must carry deploy/runbooks.production.yaml: update both"
    )


def test_commands_probes_and_ports_follow_the_settings(
    worker: dict[str, Any], shim: dict[str, Any], settings_data: dict[str, str], applied: list[dict[str, Any]]
) -> None:
    assert worker["spec"]["replicas"] == shim["spec"]["replicas"] == 2
    (container,) = containers(worker)
    assert container["command"] == ["changeloop", "worker"]
    health = port_of(settings_data["CHANGELOOP_HEALTH_ADDRESS"])
    assert health == 9465 and port_of(settings_data["CHANGELOOP_METRICS_ADDRESS"]) == 9464
    assert {p["containerPort"] for p in container["ports"]} == {9464, health}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], named_port(container, get["port"])) == (path, health), probe
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port_of(settings_data["CHANGELOOP_METRICS_ADDRESS"]))

    (container,) = containers(shim)
    assert container["command"] == ["changeloop", "shim", "--host", "0.0.0.0", "--port", "8000"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], named_port(container, get["port"])) == (path, 8000), probe

    service = one(applied, "Service", "changeloop-shim")
    assert service["spec"]["type"] == "ClusterIP"
    ((port),) = service["spec"]["ports"]
    assert port["port"] == 8000 and named_port(container, port["targetPort"]) == 8000
    assert service["spec"]["selector"].items() <= shim["spec"]["template"]["metadata"]["labels"].items()


def test_disruption_budgets_keep_one_worker_and_one_shim(applied: list[dict[str, Any]]) -> None:
    budgets = [d for d in applied if d["kind"] == "PodDisruptionBudget"]
    for deployment in deployments(applied):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(mine) == 1, deployment["metadata"]["name"]
        # minAvailable below replicas, or a node drain could never evict anything.
        assert mine[0]["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]


# -- secrets ----------------------------------------------------------------------------------------------------------
def secret_settings() -> set[str]:
    """CHANGELOOP_* names of every setting typed SecretStr (config/settings.py), plus the ServiceNow user and OAuth client."""
    names = {"servicenow_username", "servicenow_client_id"}
    for name, field in Settings.model_fields.items():
        if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation):
            names.add(name)
    return {f"CHANGELOOP_{name.upper()}" for name in names}


def test_secrets_are_only_referenced_and_settings_are_known(
    applied: list[dict[str, Any]], settings_data: dict[str, str]
) -> None:
    secrets = secret_settings()
    assert {"CHANGELOOP_SERVICENOW_PASSWORD", "CHANGELOOP_WEBHOOK_TOKEN", "CHANGELOOP_ENCRYPTION_KEYS"} <= secrets
    known = {f"CHANGELOOP_{name.upper()}" for name in Settings.model_fields}
    assert set(settings_data) <= known, f"unknown settings: {sorted(set(settings_data) - known)}"
    assert not set(settings_data) & secrets, "a secret in a ConfigMap"
    for deployment in deployments(applied):
        for container in containers(deployment):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            for entry in container.get("env", []):
                if entry["name"] in secrets:
                    assert "value" not in entry, f"{where}: {entry['name']} written into the manifest"
                    assert "secretKeyRef" in entry["valueFrom"], f"{where}: {entry['name']} not from a Secret"
            refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
            assert refs == [SECRET_NAME], where
            assert [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e] == [
                "changeloop-settings"
            ]


def test_the_example_secret_holds_placeholders_for_known_settings_only() -> None:
    (secret,) = documents(EXAMPLE_SECRET)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == SECRET_NAME
    values = secret.get("stringData", {}) | secret.get("data", {})
    assert values and set(values) <= secret_settings() | {"CHANGELOOP_SLACK_WEBHOOK_URL"}
    for key, value in values.items():
        assert value.startswith("<") and value.endswith(">"), f"{key} must be a <placeholder>, not a value"


# -- graceful shutdown ------------------------------------------------------------------------------------------------
def _timedelta_literal(node: ast.expr | None) -> timedelta | None:
    """`timedelta(minutes=1)` written with constant arguments, else None (a value computed at run time)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "timedelta"):
        return None
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except ValueError:
        return None
    return timedelta(*args, **kwargs)


def heartbeat_timeouts_in_code() -> Iterator[tuple[str, timedelta]]:
    """Every `heartbeat_timeout=timedelta(...)` argument and `heartbeat_timeout: ... = timedelta(...)` default."""
    for folder in HEARTBEAT_SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.keyword) and node.arg == "heartbeat_timeout":
                    value = _timedelta_literal(node.value)
                elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "heartbeat_timeout":
                    value = _timedelta_literal(node.value)
                else:
                    continue
                if value is not None:
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", value


def test_worker_grace_period_outlasts_every_activity_heartbeat_timeout(applied: list[dict[str, Any]]) -> None:
    """A stopped worker's running activities are retried elsewhere once Temporal hears of them: from the worker as
    it shuts down, or after the heartbeat timeout if the pod is killed first. The grace period covers the latter."""
    found = dict(heartbeat_timeouts_in_code())
    # The models' defaults are among them (host operations and runbook steps: 30 s), or the scan is broken.
    assert Step.model_fields["heartbeat_timeout"].default in found.values()
    registry = parse_registry(one(applied, "ConfigMap", "changeloop-runbooks")["data"]["runbooks.yaml"])
    for runbook in registry.runbooks.values():
        for step in runbook.steps:
            found[f"registry {runbook.name}/{step.name}"] = step.heartbeat_timeout
        if runbook.workflow == "PatchWaveWorkflow":
            found[f"registry {runbook.name} params"] = WaveParams.model_validate(runbook.params).heartbeat_timeout
    where, longest = max(found.items(), key=lambda item: item[1])
    grace = one(applied, "Deployment", "changeloop-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert timedelta(seconds=grace) > longest, f"terminationGracePeriodSeconds {grace} <= {longest} at {where}"


# -- network ----------------------------------------------------------------------------------------------------------
def policies_for(applied: list[dict[str, Any]], deployment: dict[str, Any]) -> list[dict[str, Any]]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return [
        p
        for p in applied
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
        and not p["spec"]["podSelector"].get("matchExpressions")
    ]


def reachable(block: dict[str, Any], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    inside = ip in ipaddress.ip_network(block["cidr"])
    return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))


def test_network_policies_deny_by_default_and_let_pods_reach_temporal_servicenow_and_dns_only(
    applied: list[dict[str, Any]], settings_data: dict[str, str]
) -> None:
    deny = [p for p in applied if p["kind"] == "NetworkPolicy" and p["spec"]["podSelector"] == {}]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny[0]["spec"].get("ingress") and not deny[0]["spec"].get("egress")
    temporal_host, _, temporal_port = settings_data["CHANGELOOP_TEMPORAL_ADDRESS"].rpartition(":")
    temporal_namespace = temporal_host.split(".")[1]
    for deployment in deployments(applied):
        name = deployment["metadata"]["name"]
        policies = policies_for(applied, deployment)
        assert all("Egress" in p["spec"]["policyTypes"] for p in policies)
        rules = [rule for p in policies for rule in p["spec"].get("egress", [])]
        assert rules, f"{name} has no egress rule: it could not reach Temporal"
        allowed = set()
        for rule in rules:
            assert rule.get("to") and rule.get("ports"), f"{name}: an egress rule without `to` or `ports` is open"
            ports = {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}
            assert ports <= ALLOWED_EGRESS, f"{name}: egress to {ports - ALLOWED_EGRESS}"
            allowed |= ports
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert ports == {(443, "TCP")}, f"{name}: an address range is for ServiceNow's HTTPS only"
                    for address in NOT_SERVICENOW:
                        assert not reachable(peer["ipBlock"], address), f"{name} reaches {address}"
                    assert reachable(peer["ipBlock"], "8.8.8.8")
                else:
                    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    assert peer.get("podSelector", {}).get("matchLabels"), f"{name}: every pod of {namespace}"
                    if (int(temporal_port), "TCP") in ports:
                        assert namespace == temporal_namespace
                        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "frontend"
                    else:
                        assert namespace == "kube-system" and ports <= {(53, "UDP"), (53, "TCP")}
        assert {(int(temporal_port), "TCP"), (443, "TCP"), (53, "UDP")} <= allowed, name


def test_network_policies_admit_the_shim_on_8000_and_the_worker_to_prometheus_only(
    applied: list[dict[str, Any]], worker: dict[str, Any], shim: dict[str, Any]
) -> None:
    def ingress_ports(deployment: dict[str, Any]) -> set[int]:
        policies = policies_for(applied, deployment)
        return {p["port"] for pol in policies for rule in pol["spec"].get("ingress", []) for p in rule["ports"]}

    assert ingress_ports(shim) == {8000}
    assert ingress_ports(worker) == {9464}
    for policy in policies_for(applied, worker):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "the worker's metrics are for the monitoring namespace, not everyone"
