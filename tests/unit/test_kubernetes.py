"""The Kubernetes manifests (deploy/kubernetes/) agree with the gateway and with the images.

Most checks read the YAML files as they are, so they run anywhere the suite does (the gateway's
image included). The `kubectl` ones render each overlay with `kubectl kustomize` and validate
every object against the Kubernetes schemas (kubernetes-validate, offline); they need kubectl,
which CI's host has and the image does not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy/kubernetes"
OVERLAYS = sorted(path.name for path in (KUBERNETES / "overlays").iterdir())
SETTINGS = {name.upper() for name in GatewaySettings.model_fields}
IMAGE_UID = 10001  # the Dockerfile's `useradd --uid`
# Versions the rendered objects must be valid for: an older one still common, and the newest.
KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")


def objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_objects() -> list[dict[str, Any]]:
    return [obj for path in manifest_files() for obj in objects(path)]


def one(kind: str, name: str, source: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [o for o in source if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def gateway_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"
    ]
    return container


def base_objects() -> list[dict[str, Any]]:
    return [
        obj
        for path in sorted((KUBERNETES / "base").glob("gateway-*.yaml"))
        for obj in objects(path)
    ]


def test_every_kustomization_lists_files_that_exist() -> None:
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        config = yaml.safe_load(kustomization.read_text())
        listed = config.get("resources", []) + [p["path"] for p in config.get("patches", [])]
        for entry in listed:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"


def test_every_variable_set_for_the_gateway_is_a_gateway_setting() -> None:
    """Each ConfigMap the gateway reads, base or overlay patch, and any `env` on its container."""
    gateway_configmaps = [
        o
        for o in all_objects()
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "gateway-settings"
    ]
    assert len(gateway_configmaps) >= 2  # the base and the production overlay's patch
    for configmap in gateway_configmaps:
        assert set(configmap["data"]) - SETTINGS == set(), "unknown variables (typos?)"
    for deployment in (o for o in all_objects() if o["kind"] == "Deployment"):
        if deployment["metadata"]["name"] == "gateway":
            container = gateway_container(deployment)
            assert {e["name"] for e in container.get("env", [])} - SETTINGS == set()
            assert container["envFrom"] == [{"configMapRef": {"name": "gateway-settings"}}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_accepts_the_settings(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dict(one("ConfigMap", "gateway-settings", base_objects())["data"])
    for path in (KUBERNETES / "overlays" / overlay).glob("*.yaml"):
        for obj in objects(path):
            if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == "gateway-settings":
                settings.update(obj["data"])
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    parsed = GatewaySettings()
    assert parsed.shared_rate_limit, (
        "replicas must share the limit: RATE_LIMIT_STORAGE_URL=redis://"
    )


def test_termination_grace_matches_the_gateways_drain_time() -> None:
    """cli.py drains for int(REQUEST_TIMEOUT_SECONDS) + 1 s; the pod must be given that long."""
    settings = one("ConfigMap", "gateway-settings", base_objects())["data"]
    pod = one("Deployment", "gateway", base_objects())["spec"]["template"]["spec"]
    assert (
        pod["terminationGracePeriodSeconds"] == int(float(settings["REQUEST_TIMEOUT_SECONDS"])) + 1
    )


def test_the_gateway_runs_several_replicas_with_probes_and_resources() -> None:
    deployment = one("Deployment", "gateway", base_objects())
    container = gateway_container(deployment)
    assert deployment["spec"]["replicas"] >= 2
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000}
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}


def test_every_pod_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    for deployment in (o for o in all_objects() if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert set(container["resources"]) == {"requests", "limits"}
        if deployment["metadata"]["name"] in {"gateway", "flaky-backend"}:
            assert pod["securityContext"]["runAsUser"] == IMAGE_UID


def test_the_disruption_budget_and_the_autoscaler_target_the_gateway() -> None:
    objs = base_objects()
    labels = one("Deployment", "gateway", objs)["spec"]["template"]["metadata"]["labels"]
    budget = one("PodDisruptionBudget", "gateway", objs)["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1
    autoscaler = one("HorizontalPodAutoscaler", "gateway", objs)["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert autoscaler["minReplicas"] >= 2
    assert autoscaler["metrics"][0]["resource"]["name"] == "cpu"


# --- rendered with kubectl kustomize, validated against the schemas ------------------------------


def rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (CI's host has it; the gateway's image does not)")
    output = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.mark.kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_to_valid_kubernetes_objects(overlay: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objs = rendered(overlay)
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)
    kinds = {o["kind"] for o in objs}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } <= kinds


@pytest.mark.kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_rendered_overlay_sets_only_gateway_settings(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered(overlay)
    settings = one("ConfigMap", "gateway-settings", objs)["data"]
    assert set(settings) - SETTINGS == set()
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    drain = int(GatewaySettings().request_timeout_seconds) + 1
    pod = one("Deployment", "gateway", objs)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == drain
    (namespace,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] != "Namespace"} == {namespace}
