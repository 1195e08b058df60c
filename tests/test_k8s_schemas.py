"""Every manifest `shipway k8s render` writes is one a cluster accepts.

For many option combinations:
- built-in kinds validate strictly (no unknown field anywhere) against the Kubernetes OpenAPI
  schemas of 1.29 to 1.33 that `kubernetes-validate` ships (offline, no cluster needed);
- custom resources (HTTPRoute, Rollout, AnalysisTemplate, ExternalSecret) validate against their
  published JSON schemas in tests/data/k8s-schemas (see its README for where each came from),
  made strict the same way;
- every overlay renders with the real `kubectl kustomize`, and what it renders validates too.

No Kubernetes API server can run on the machines this is built on, so nothing here applies the
manifests; the schemas and kustomize are the real checks available.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

from deploy_helpers import register_doubler
from shipway.deploy.analysis import Checks
from shipway.deploy.kubernetes import RenderOptions, render
from shipway.packaging import images

VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
SCHEMAS = Path(__file__).parent / "data" / "k8s-schemas"
CRDS = {  # (apiVersion, kind): the schema file, named KIND-GROUP-VERSION.json
    (f"{group}/{version}", kind): f"{kind.lower()}-{group}-{version}.json"
    for group, version, kind in [
        ("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        ("argoproj.io", "v1alpha1", "Rollout"),
        ("argoproj.io", "v1alpha1", "AnalysisTemplate"),
        ("external-secrets.io", "v1beta1", "ExternalSecret"),
    ]
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta#"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"

COMBOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "replicas-and-pod-metrics": {
        "replicas": 5, "max_replicas": 20, "workers": 2, "cpu": "1", "memory": "2Gi",
        "memory_limit": "3Gi", "environments": ("qa", "prod-eu"),
        "pods_metrics": ("shipway_requests_in_flight=4", "shipway_request_p99_seconds=250m"),
    },
    "fixed-replicas": {
        "hpa": False, "replicas": 2, "max_surge": "1", "max_unavailable": "0",
        "prestop_seconds": 0, "drain_seconds": 60,
    },
    "gpu-pool-and-secret": {
        "gpu": 2, "gpu_node_selector": ("cloud.google.com/gke-accelerator=nvidia-l4",),
        "gpu_tolerations": ("nvidia.com/gpu=present:NoSchedule", "dedicated"),
        "secrets": ("credit-store",), "image_pull_secrets": ("regcred",),
        "artifact_url": "s3://models/shipway",
    },
    "external-secret": {"external_secrets": ("shipway/credit", "shipway/common"),
                        "secret_store": "vault"},
    "canary-route": {"canary": "models:/credit/2", "canary_weight": 20,
                     "gateway": "infra/public", "hostnames": ("credit.example.com",)},
    "canary-route-no-hpa": {"canary": "models:/credit/2", "canary_weight": 0, "hpa": False,
                            "canary_replicas": 2},
    "gateway-only": {"gateway": "public"},
    "argo-canary": {"canary": "models:/credit/2", "argo": True, "steps": "10,25,pause,50,100",
                    "interval": "30s", "failure_limit": 2, "checks": Checks(max_p99_ms=250),
                    "external_secrets": ("shipway/credit",)},
    "argo-relative-p99": {"argo": True, "hpa": False, "gpu": 1},
    "training": {"kind": "training", "schedule": "0 3 * * 0", "secrets": ("shipway-store",)},
    "training-gpu": {"kind": "training", "gpu": 1, "external_secrets": ("shipway/store",)},
    "retraining": {"kind": "training", "schedule": "@daily", "retrain": True,
                   "secrets": ("shipway-store",)},
}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Validators


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Iterator[None]:
    """kubernetes-validate reads its JSON files on every call; read each once here."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kv_utils, "schema_contents", functools.cache(kv_utils.schema_contents))
        yield


def _strict(schema: Any) -> Any:
    """Close every object schema that lists its properties, as kubernetes-validate's strict
    schemas do; point `metadata` at Kubernetes' own ObjectMeta."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.get("$ref") == OBJECT_META:
        out["$ref"] = f"{K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    props = out.get("properties")
    if isinstance(props, dict) and props and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validator(file: str) -> jsonschema.Draft202012Validator:
    schema = _strict(json.loads((SCHEMAS / file).read_text()))
    definitions = kv_utils.schema_contents(
        "kubernetes-json-schema/v1.33.0-local-strict/_definitions.json", "1.33"
    )
    kubernetes = referencing.Resource.from_contents(definitions)  # its $id is K8S_DEFINITIONS
    registry: referencing.Registry[Any] = kubernetes @ referencing.Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(doc: dict[str, Any]) -> None:
    """Raise on the first schema violation of `doc` (any kind this project renders)."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRDS:
        _crd_validator(CRDS[key]).validate(doc)
        if doc["kind"] == "Rollout":  # Argo's CRD trims the pod template: check it in full
            pod = {"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": doc["metadata"]["name"]},
                   "template": doc["spec"]["template"]}  # fmt: skip
            validate(pod)
        return
    for version in VERSIONS:
        assert kubernetes_validate.validate(doc, version, strict=True) == version


def test_the_validators_are_strict() -> None:
    """A misspelt field, a wrong type, or a bad value fails each kind of check."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "credit"},
               "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}}}  # fmt: skip
    validate(copy.deepcopy(service) | {"spec": {"ports": [{"port": 80}]}})
    with pytest.raises(jsonschema.ValidationError, match="selectr"):
        validate(service)
    backend = {"name": "credit", "port": 80, "weight": 10}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "credit"},
        "spec": {"rules": [{"backendRefs": [backend]}]},
    }
    validate(route)
    bad = copy.deepcopy(route)
    bad["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 10
    with pytest.raises(jsonschema.ValidationError, match="wieght"):
        validate(bad)
    bad = copy.deepcopy(route)
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_001
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = copy.deepcopy(route)
    bad["metadata"]["labels"] = {"version": 4}  # label values are strings
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "credit"},
               "spec": {"strategy": {"canary": {"steps": [{"setWieght": 10}]}}}}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError, match="setWieght"):
        validate(rollout)
    secret = {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": "s"},
        "spec": {"target": {"creationPolicy": "Kept"}},
    }
    with pytest.raises(jsonschema.ValidationError, match="Kept"):
        validate(secret)


# ----------------------------------------------------------------------------------------------
# Rendering


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store with credit v1 and v2, each with pushed inference and training images."""
    home = tmp_path_factory.mktemp("k8s-home")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("SHIPWAY_HOME", str(home))
        m.delenv("SHIPWAY_DATABASE_URL", raising=False)
        m.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
        versions = [register_doubler("credit"), register_doubler("credit", factor=3)]
        for v in versions:
            for kind, digit in (("inference", "a"), ("training", "e")):
                image_id = f"{v.version}{digit}" * 32
                images.record_build(v.uri, images.BuiltImage(
                    tag=f"credit:v{v.version}", image_id=image_id, size_bytes=1, base_image="b",
                    engine="podman", kind=kind, lock_digest="c" * 64, sbom_digest=None,
                ))  # fmt: skip
                images.record_push(v.uri, image_id, f"registry.example/credit@sha256:{image_id}")
        yield home


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: run scripts/install-system-deps.sh")
    return kubectl


@pytest.mark.parametrize("combo", list(COMBOS))
def test_every_manifest_validates_and_every_overlay_renders(
    registry: Path, tmp_path: Path, combo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWAY_HOME", str(registry))
    options = RenderOptions("models:/credit/1", tmp_path / "k8s", **COMBOS[combo])
    done = render(options)

    base = []
    for path in sorted((done.directory / "base").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if path.name != "kustomization.yaml":
            validate(doc)
            base.append(doc)
    kinds = {d["kind"] for d in base}
    assert "Secret" not in kinds
    if options.training:
        assert kinds >= {"Job", "ServiceAccount", "NetworkPolicy"}
        assert ("CronJob" in kinds) == (options.schedule is not None)
    else:
        assert kinds >= {"ServiceAccount", "ConfigMap", "Service", "PodDisruptionBudget",
                         "NetworkPolicy"}  # fmt: skip
        assert ("HorizontalPodAutoscaler" in kinds) == options.hpa
        assert ("HTTPRoute" in kinds) == options.routed
        assert ("Rollout" in kinds and "AnalysisTemplate" in kinds) == options.argo
    assert ("ExternalSecret" in kinds) == bool(options.external_secrets)

    kubectl = _kubectl()
    for env in options.overlays:
        result = subprocess.run([kubectl, "kustomize", str(done.directory / "overlays" / env)],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
        rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert len(rendered) == len(base) + 1  # and the Namespace
        for doc in rendered:
            validate(doc)
            assert doc["kind"] != "Secret"
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == f"credit-{env}"
            if doc["kind"] in ("Deployment", "Rollout", "Job", "CronJob"):
                spec = doc["spec"].get("jobTemplate", doc)["spec"]
                image = spec["template"]["spec"]["containers"][0]["image"]
                assert image.startswith("registry.example/credit@sha256:")


def test_the_production_profile_fits_the_schema_for_one_replica(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one production replica the budget stays maxUnavailable (minAvailable 1 would
    block every node drain)."""
    monkeypatch.setenv("SHIPWAY_HOME", str(registry))
    done = render(RenderOptions("models:/credit/2", tmp_path / "k8s", replicas=1, max_replicas=1))
    out = subprocess.run([_kubectl(), "kustomize", str(done.directory / "overlays/production")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout)}
    for doc in docs.values():
        validate(doc)
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert docs["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 1
