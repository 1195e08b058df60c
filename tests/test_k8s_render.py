"""`shipway k8s render`: what it writes, which image it picks, and how it refuses bad input.

Schema validation and `kubectl kustomize` of many option combinations are in
test_k8s_schemas.py; these tests look at the content and the refusals.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import shipway
from deploy_helpers import register_doubler
from shipway.deploy.analysis import Checks
from shipway.deploy.kubernetes import RenderOptions, render
from shipway.errors import InvalidInputError, NotFoundError
from shipway.packaging import images

DIGEST = {1: "a" * 64, 2: "b" * 64}
TRAIN_DIGEST = "e" * 64


def _record(version: shipway.ModelVersionInfo, kind: str, image_id: str, ref: str | None) -> None:
    images.record_build(version.uri, images.BuiltImage(
        tag=f"{version.name}:v{version.version}", image_id=image_id, size_bytes=1,
        base_image="localhost/python-base:3.11", engine="podman", kind=kind,
        lock_digest="c" * 64, sbom_digest=None,
    ))  # fmt: skip
    if ref is not None:
        images.record_push(version.uri, image_id, ref)


@pytest.fixture
def credit(shipway_home: Path) -> list[shipway.ModelVersionInfo]:
    """credit v1 and v2 with pushed inference images, v1 with a pushed training image, and v3
    with no image at all."""
    versions = [register_doubler("credit"), register_doubler("credit", factor=3)]
    for v in versions:
        _record(v, "inference", "1" * 64, f"registry.example/credit@sha256:{DIGEST[v.version]}")
    train_ref = f"registry.example/credit-train@sha256:{TRAIN_DIGEST}"
    _record(versions[0], "training", "2" * 64, train_ref)
    versions.append(register_doubler("credit", factor=4))
    return versions


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty directory for the output (tmp_path also holds SHIPWAY_HOME)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def _docs(directory: Path) -> dict[str, Any]:
    """Base objects by file name."""
    paths = sorted((directory / "base").glob("*.yaml"))
    return {p.name: yaml.safe_load(p.read_text()) for p in paths}


def _kustomize(directory: Path, env: str) -> dict[tuple[str, str], Any]:
    out = subprocess.run(["kubectl", "kustomize", str(directory / "overlays" / env)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout)}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    pod = spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


def test_the_base_serves_the_pushed_image_with_probes_drain_and_a_read_only_non_root_pod(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    done = render(RenderOptions("models:/credit/1", out))
    assert done.release.image == f"registry.example/credit@sha256:{DIGEST[1]}"
    assert "base/kustomization.yaml" in done.files and "README.md" in done.files
    base = _docs(out)
    listed = base.pop("kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(base)
    assert (out / "base" / "deployment.yaml").read_text().startswith("---\n")

    dep = base["deployment.yaml"]
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "1"
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": 0}
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5 + 30 + 10
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    assert pod["spec"]["automountServiceAccountToken"] is False
    c = _container(dep)
    assert c["image"] == done.release.image
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 300
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert c["args"][c["args"].index("--drain-seconds") + 1] == "30"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"/tmp", "/home/shipway"}  # SHIPWAY_HOME (prediction log) and tempfiles
    config = base["configmap-server.yaml"]["data"]
    assert config["SHIPWAY_SERVE_MAX_BATCH_SIZE"] == "64"
    for key in config:
        assert f"$({key})" in c["args"] or key == "SHIPWAY_ARTIFACT_URL"
    assert base["serviceaccount.yaml"]["automountServiceAccountToken"] is False
    policy = base["networkpolicy.yaml"]["spec"]
    assert policy["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]


def test_overlays_size_each_environment_in_its_own_namespace(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    render(RenderOptions("models:/credit/1", out, replicas=4, max_replicas=12))
    staging, production = _kustomize(out, "staging"), _kustomize(out, "production")
    assert {d["metadata"].get("namespace") for k, d in staging.items() if k[0] != "Namespace"} == {
        "credit-staging"
    }
    assert staging["Namespace", "credit-staging"]["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"  # fmt: skip
    hpa = staging["HorizontalPodAutoscaler", "credit"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    assert _container(staging["Deployment", "credit"])["resources"]["requests"]["cpu"] == "250m"
    assert staging["PodDisruptionBudget", "credit"]["spec"]["maxUnavailable"] == 1

    hpa = production["HorizontalPodAutoscaler", "credit"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 12)
    assert _container(production["Deployment", "credit"])["resources"]["requests"]["cpu"] == "500m"
    pdb = production["PodDisruptionBudget", "credit"]["spec"]
    assert pdb["minAvailable"] == 3 and "maxUnavailable" not in pdb


def test_without_autoscaling_the_overlays_set_replicas(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    done = render(RenderOptions("models:/credit/1", out, hpa=False, replicas=2))
    assert not any("horizontalpodautoscaler" in f for f in done.files)
    assert _kustomize(out, "staging")["Deployment", "credit"]["spec"]["replicas"] == 1
    assert _kustomize(out, "production")["Deployment", "credit"]["spec"]["replicas"] == 2


def test_autoscaling_on_a_per_pod_metric_and_a_gpu_pool(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    render(RenderOptions("models:/credit/1", out, pods_metrics=("shipway_requests_in_flight=4",),
                         gpu=1, gpu_tolerations=("gpu=a100:NoSchedule",)))  # fmt: skip
    base = _docs(out)
    metrics = base["horizontalpodautoscaler.yaml"]["spec"]["metrics"]
    assert metrics[1] == {
        "type": "Pods",
        "pods": {"metric": {"name": "shipway_requests_in_flight"},
                 "target": {"type": "AverageValue", "averageValue": "4"}},
    }  # fmt: skip
    pod = base["deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}
    ]
    assert _container(base["deployment.yaml"])["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" in (out / "README.md").read_text()


def test_secrets_are_only_ever_referenced(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    render(RenderOptions("models:/credit/1", out, secrets=("credit-store",),
                         external_secrets=("shipway/credit",), secret_store="vault"))  # fmt: skip
    base = _docs(out)
    assert _container(base["deployment.yaml"])["envFrom"] == [
        {"secretRef": {"name": "credit-store"}},
        {"secretRef": {"name": "credit-secrets"}},
    ]
    stub = base["externalsecret-secrets.yaml"]
    assert stub["spec"]["target"]["name"] == "credit-secrets"
    assert stub["spec"]["dataFrom"] == [{"extract": {"key": "shipway/credit"}}]
    assert stub["spec"]["secretStoreRef"] == {"name": "vault", "kind": "ClusterSecretStore"}
    for env in ("staging", "production"):
        rendered = _kustomize(out, env)
        assert not [k for k in rendered if k[0] == "Secret"]
        assert ("ExternalSecret", "credit-secrets") in rendered
    for path in out.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path


def test_a_canary_gets_its_own_deployment_and_a_weighted_route(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    done = render(RenderOptions("models:/credit/1", out, canary="models:/credit/2",
                                canary_weight=20, gateway="infra/public"))  # fmt: skip
    assert done.canary is not None and done.canary.version == 2
    base = _docs(out)
    stable, canary = base["deployment.yaml"], base["deployment-canary.yaml"]
    assert _container(stable)["image"].endswith(DIGEST[1])
    assert _container(canary)["image"].endswith(DIGEST[2])
    assert canary["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2"
    assert canary["spec"]["selector"]["matchLabels"]["shipway.dev/track"] == "canary"
    assert base["service-canary.yaml"]["spec"]["selector"]["shipway.dev/track"] == "canary"
    route = base["httproute.yaml"]["spec"]
    assert route["parentRefs"] == [{"name": "public", "namespace": "infra"}]
    assert route["rules"][0]["backendRefs"] == [
        {"name": "credit-stable", "port": 80, "weight": 80},
        {"name": "credit-canary", "port": 80, "weight": 20},
    ]
    # Only the stable track autoscales.
    assert base["horizontalpodautoscaler.yaml"]["spec"]["scaleTargetRef"]["name"] == "credit"


def test_argo_rollout_steps_and_analysis_match_the_local_controller(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    render(RenderOptions("models:/credit/1", out, canary="models:/credit/2", argo=True,
                         steps="10,25,pause,50,100", interval="30s", failure_limit=2,
                         checks=Checks(max_error_rate=0.02, min_requests=50)))  # fmt: skip
    base = _docs(out)
    assert "deployment.yaml" not in base
    ro = base["rollout.yaml"]
    assert _container(ro)["image"].endswith(DIGEST[2])  # the release is the canary version
    strategy = ro["spec"]["strategy"]["canary"]
    hold = {"pause": {"duration": "30s"}}
    assert strategy["steps"] == [
        {"setWeight": 10}, hold, {"setWeight": 25}, hold, {"pause": {}},
        {"setWeight": 50}, hold, {"setWeight": 100}, hold,
    ]  # fmt: skip
    assert strategy["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"] == {
        "httpRoute": "credit"
    }
    assert strategy["analysis"]["templates"] == [{"templateName": "credit-analysis"}]
    metrics = {m["name"]: m for m in base["analysistemplate-analysis.yaml"]["spec"]["metrics"]}
    assert set(metrics) == {"error-rate", "p99-over-stable"}
    err = metrics["error-rate"]
    assert err["successCondition"] == "len(result) > 0 && result[0] <= 0.02"
    assert err["failureCondition"] == "len(result) > 0 && result[0] > 0.02"
    assert err["failureLimit"] == 1 and err["inconclusiveLimit"] == 4
    query = err["provider"]["prometheus"]["query"]
    assert 'status=~"5.."' in query and "[30s]" in query and ">= 50" in query
    assert 'rollouts_pod_template_hash="{{args.canary-hash}}"' in query
    p99 = metrics["p99-over-stable"]["provider"]["prometheus"]["query"]
    assert "shipway_request_duration_seconds_bucket" in p99 and "1.5 *" in p99 and "+ 0.05" in p99
    assert "{{args.stable-hash}}" in p99
    # Each overlay points the traffic-router plugin at its own namespace.
    rendered = _kustomize(out, "production")["Rollout", "credit"]["spec"]["strategy"]["canary"]
    assert rendered["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"] == {
        "httpRoute": "credit", "namespace": "credit-production"
    }  # fmt: skip


def test_argo_with_an_absolute_p99_bound(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    render(RenderOptions("models:/credit/1", out, argo=True, checks=Checks(max_p99_ms=250)))
    metrics = _docs(out)["analysistemplate-analysis.yaml"]["spec"]["metrics"]
    assert metrics[1]["name"] == "p99-latency"
    assert metrics[1]["successCondition"] == "len(result) > 0 && result[0] <= 0.25"


def test_training_renders_a_job_and_a_cron_job_of_the_training_image(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    done = render(RenderOptions("models:/credit/1", out, kind="training",
                                schedule="0 3 * * 0", secrets=("shipway-store",)))  # fmt: skip
    assert done.release.image == f"registry.example/credit-train@sha256:{TRAIN_DIGEST}"
    base = _docs(out)
    assert set(base) == {"kustomization.yaml", "serviceaccount.yaml", "networkpolicy.yaml",
                         "job-train-v1.yaml", "cronjob-train.yaml"}  # fmt: skip
    job, cron = base["job-train-v1.yaml"], base["cronjob-train.yaml"]
    assert cron["spec"]["schedule"] == "0 3 * * 0"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    for workload in (job, cron):
        c = _container(workload)
        assert "args" not in c and "command" not in c  # the image's training command runs
        assert c["envFrom"] == [{"secretRef": {"name": "shipway-store"}}]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert base["networkpolicy.yaml"]["spec"]["ingress"] == []
    staging = _kustomize(out, "staging")
    assert _container(staging["CronJob", "credit-train"])["resources"]["requests"]["cpu"] == "250m"


def test_a_retraining_cron_job_runs_shipway_retrain_and_the_job_still_trains(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    render(RenderOptions("models:/credit/1", out, kind="training", schedule="@daily",
                         retrain=True, secrets=("shipway-store",)))  # fmt: skip
    base = _docs(out)
    cron = _container(base["cronjob-train.yaml"])
    assert cron["command"] == ["shipway", "retrain", "credit", "--trigger", "schedule"]
    assert cron["envFrom"] == [{"secretRef": {"name": "shipway-store"}}]
    assert "command" not in _container(base["job-train-v1.yaml"])  # the image's training command
    with pytest.raises(InvalidInputError, match="--retrain makes the retraining CronJob"):
        render(RenderOptions("models:/credit/1", tmp_path / "other", kind="training",
                             retrain=True))  # fmt: skip


def test_an_image_given_by_digest_overrides_the_recorded_one(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    image = f"other.example/team/credit@sha256:{'f' * 64}"
    done = render(RenderOptions("models:/credit/3", tmp_path / "k8s", image=image))
    assert _container(_docs(tmp_path / "k8s")["deployment.yaml"])["image"] == image
    assert done.release.version == 3


def test_the_latest_pushed_image_is_used_and_an_unpushed_one_is_refused(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    v3 = credit[2]
    _record(v3, "inference", "3" * 64, f"registry.example/credit@sha256:{'3' * 64}")
    _record(v3, "inference", "4" * 64, f"registry.example/credit@sha256:{'4' * 64}")
    _record(v3, "inference", "5" * 64, None)  # built since, never pushed
    done = render(RenderOptions(v3.uri, tmp_path / "a"))
    assert done.release.image.endswith("4" * 64)

    v4 = register_doubler("credit", factor=5)
    _record(v4, "inference", "6" * 64, None)
    with pytest.raises(NotFoundError, match="built but never pushed") as err:
        render(RenderOptions(v4.uri, tmp_path / "b"))
    assert f"shipway build models:/credit/{v4.version}" in str(err.value)
    assert not (tmp_path / "b").exists()


def test_a_version_without_an_image_names_the_build_command_and_writes_nothing(
    credit: list[shipway.ModelVersionInfo], work: Path
) -> None:
    out = work / "k8s"
    with pytest.raises(NotFoundError, match=r"No inference image is recorded for .*/3") as err:
        render(RenderOptions("models:/credit/3", out))
    assert "shipway build models:/credit/3 --push" in str(err.value)
    with pytest.raises(NotFoundError, match=r"shipway build models:/credit/2 --kind training"):
        render(RenderOptions("models:/credit/2", out, kind="training"))
    with pytest.raises(NotFoundError, match="No inference image"):
        render(RenderOptions("models:/credit/1", out, canary="models:/credit/3"))
    assert not out.exists()
    assert list(work.iterdir()) == []


BAD = [
    ({"environments": ("Staging",)}, "not a usable environment name"),
    ({"environments": ("stag ing",)}, "not a usable environment name"),
    ({"environments": ("a-very-long-environment-name",)}, "at most 20 characters"),
    ({"kind": "training", "schedule": "every sunday"}, "not a cron schedule"),
    ({"kind": "training", "schedule": "0 3 * * 0 5"}, "not a cron schedule"),
    ({"kind": "training", "schedule": "61 3 * * *"}, "not a cron schedule"),
    ({"schedule": "0 3 * * 0"}, "--schedule is for training images"),
    ({"canary": "models:/credit/2", "canary_weight": 101}, "canary weight 101 is out of range"),
    ({"canary": "models:/credit/2", "canary_weight": -1}, "canary weight -1 is out of range"),
    ({"argo": True, "steps": "10,5,100"}, "must be above the previous one"),
    ({"argo": True, "steps": "10,150"}, "at most 100"),
    ({"argo": True, "interval": "soon"}, "Cannot read the interval"),
    ({"argo": True, "checks": Checks(max_score_shift=0.1)}, "score-shift"),
    ({"image": "registry.example/credit:latest"}, "not pinned by digest"),
    ({"name": "Credit_Model"}, "not a usable name"),
    ({"replicas": 0}, "at least 1"),
    ({"replicas": 5, "max_replicas": 4}, "at most --max-replicas"),
    ({"cpu": "lots"}, "not a CPU amount"),
    ({"cpu": "3", "cpu_limit": "2"}, "above its limit"),
    ({"memory": "1Gi", "memory_limit": "512Mi"}, "below its request"),
    ({"gpu_node_selector": ("pool=gpu",)}, "without --gpu"),
    ({"gpu": 1, "gpu_tolerations": ("nvidia.com/gpu:Sometimes",)}, "Unknown taint effect"),
    ({"pods_metrics": ("in flight",)}, "Cannot read the autoscaling metric"),
    ({"max_surge": "0", "max_unavailable": "0"}, "cannot both be 0"),
    ({"secrets": ("Not_A_Name",)}, "not a Kubernetes object name"),
    ({"canary_image": f"r.example/c@sha256:{'a' * 64}"}, "--canary-image needs --canary"),
    ({"kind": "training", "canary": "models:/credit/2"}, "for inference images"),
    ({"canary": "models:/credit/1"}, "canary and stable are both"),
    ({"canary": "models:/other/1"}, "not found"),
]


@pytest.mark.parametrize(("options", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_refused_before_anything_is_written(
    credit: list[shipway.ModelVersionInfo], work: Path, options: dict[str, Any], message: str
) -> None:
    out = work / "k8s"
    with pytest.raises((InvalidInputError, NotFoundError), match=message):
        render(RenderOptions("models:/credit/1", out, **options))
    assert list(work.iterdir()) == []


def test_an_existing_directory_is_replaced_only_with_force_and_never_half_written(
    credit: list[shipway.ModelVersionInfo], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = work / "k8s"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InvalidInputError, match="is not empty"):
        render(RenderOptions("models:/credit/1", out))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]

    written = 0
    real = Path.write_text

    def failing(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        nonlocal written
        written += 1
        if written == 4:
            raise OSError(28, "No space left on device")
        return real(self, data, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", failing)
        with pytest.raises(OSError, match="No space left"):
            render(RenderOptions("models:/credit/1", out, force=True))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in work.iterdir()) == ["k8s"]  # no temporary left behind

    render(RenderOptions("models:/credit/1", out, force=True))
    assert not (out / "mine.txt").exists() and (out / "base" / "deployment.yaml").exists()
    assert sorted(p.name for p in work.iterdir()) == ["k8s"]


def test_environments_other_than_staging_and_production(
    credit: list[shipway.ModelVersionInfo], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    done = render(RenderOptions("models:/credit/1", out, environments=("qa", "staging", "prod-eu")))
    assert done.environments == ("staging", "production", "qa", "prod-eu")
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(done.environments)
    assert _kustomize(out, "qa")["HorizontalPodAutoscaler", "credit"]["spec"]["minReplicas"] == 1
    prod = _kustomize(out, "prod-eu")
    assert prod["HorizontalPodAutoscaler", "credit"]["spec"]["minReplicas"] == 3
    assert prod["Deployment", "credit"]["metadata"]["namespace"] == "credit-prod-eu"


# ----------------------------------------------------------------------------------------------
# The command


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shipway.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)  # fmt: skip


@pytest.fixture
def in_subprocess(credit: list[shipway.ModelVersionInfo]) -> Iterator[None]:
    yield  # the subprocess inherits SHIPWAY_HOME from the environment shipway_home set


def test_the_command_renders_and_refuses_with_a_clear_line(
    in_subprocess: None, tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    ok = _cli("k8s", "render", "models:/credit/1", "-o", str(out), "--env", "staging",
              "--canary", "models:/credit/2", "--canary-weight", "10", "--secret",
              "credit-store", "--hpa-metric", "shipway_requests_in_flight=4")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "kubectl apply -k" in ok.stdout and "canary models:/credit/2" in ok.stdout
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["production", "staging"]

    bad = _cli("k8s", "render", "models:/credit/3", "-o", str(tmp_path / "other"))
    assert bad.returncode == 2
    assert "shipway build models:/credit/3" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "other").exists()

    bad = _cli("k8s", "render", "models:/credit/1", "-o", str(tmp_path / "other"),
               "--kind", "training", "--schedule", "sometimes")  # fmt: skip
    assert bad.returncode == 2 and "not a cron schedule" in bad.stderr
