"""The Kubernetes objects of a model version, one small function per kind, as plain dicts.

Everything here is data: no I/O, no templates. The pod follows the image Shipway builds
(`packaging/dockerfile.py`): user 10001, the server on `port`, `SHIPWAY_HOME` under
`/home/shipway`. The root filesystem is read-only, so the two places the server writes are
`emptyDir` volumes: `/tmp` (prometheus-client's multiprocess files with several workers) and
`/home/shipway` (the prediction log when no `--artifact-url` sends it to shared storage).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from shipway.deploy.kubernetes.options import RenderOptions

__all__ = [
    "Names",
    "Obj",
    "Release",
    "config_digest",
    "config_map",
    "container",
    "cron_job",
    "deployment",
    "external_secret",
    "horizontal_pod_autoscaler",
    "int_or_percent",
    "job",
    "labels",
    "meta",
    "namespace",
    "network_policy",
    "pod_disruption_budget",
    "pod_template",
    "selector",
    "service",
    "service_account",
    "versioned",
]

Obj = dict[str, Any]

UID = 10001  # the image's user (packaging/dockerfile.py)
HOME = "/home/shipway"
LIVE, READY = "/v2/health/live", "/v2/health/ready"
# The server's settings the ConfigMap holds, as (key, `shipway serve` flag).
SETTINGS = (
    ("SHIPWAY_SERVE_MAX_BATCH_SIZE", "--max-batch-size"),
    ("SHIPWAY_SERVE_MAX_LATENCY_MS", "--max-latency-ms"),
    ("SHIPWAY_SERVE_MAX_QUEUE_ROWS", "--max-queue-rows"),
    ("SHIPWAY_SERVE_LOG_SAMPLE", "--log-sample"),
    ("SHIPWAY_SERVE_MODEL_THREADS", "--model-threads"),
)


@dataclass(frozen=True)
class Release:
    """One model version as the cluster runs it."""

    model: str
    version: int
    image: str

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


class Names:
    """Every object name, derived from the app name so they stay consistent."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.config = f"{app}-server"
        self.secrets = f"{app}-secrets"
        self.analysis = f"{app}-analysis"
        self.cron_job = f"{app}-train"

    def track(self, track: str) -> str:
        return f"{self.app}-{track}"

    def job(self, version: int) -> str:
        return f"{self.app}-train-v{version}"


def labels(app: str, component: str) -> dict[str, str]:
    """The recommended labels every object carries."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": app,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "shipway",
        "app.kubernetes.io/managed-by": "shipway",
    }


def selector(app: str, track: str | None = None) -> dict[str, str]:
    """Pod selector labels; immutable on a workload once created, so they never hold a version."""
    base = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app}
    return base | ({"shipway.dev/track": track} if track else {})


def meta(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> Obj:
    out: Obj = {"name": name, "labels": labels}
    if annotations:
        out["annotations"] = annotations
    return out


def versioned(app: str, component: str, release: Release) -> dict[str, str]:
    return labels(app, component) | {"app.kubernetes.io/version": str(release.version)}


def _uri(release: Release) -> dict[str, str]:
    return {"shipway.dev/model-uri": release.uri}


# ----------------------------------------------------------------------------------------------
# Configuration and identity


def service_account(o: RenderOptions, app: str) -> Obj:
    component = "training" if o.training else "model-server"
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(app, labels(app, component)),
        "automountServiceAccountToken": False,
    }
    if o.image_pull_secrets:
        obj["imagePullSecrets"] = [{"name": s} for s in o.image_pull_secrets]
    return obj


def config_map(o: RenderOptions, app: str) -> Obj:
    s = o.server
    values = (
        s.max_batch_size,
        s.max_latency_ms,
        s.max_queue_rows,
        s.prediction_log_sample,
        s.model_threads,
    )
    data = {key: str(value) for (key, _), value in zip(SETTINGS, values, strict=True)}
    if o.artifact_url:
        data["SHIPWAY_ARTIFACT_URL"] = o.artifact_url
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(Names(app).config, labels(app, "model-server")),
        "data": data,
    }


def config_digest(config: Obj) -> str:
    """A digest of the ConfigMap's data, put on the pod template so a change rolls the pods."""
    return hashlib.sha256(json.dumps(config["data"], sort_keys=True).encode()).hexdigest()[:16]


def external_secret(o: RenderOptions, app: str) -> Obj:
    """A stub that has the External Secrets operator make the Secret; no value is in it."""
    component = "training" if o.training else "model-server"
    name = Names(app).secrets
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": meta(name, labels(app, component)),
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": o.secret_store, "kind": o.secret_store_kind},
            "target": {"name": name, "creationPolicy": "Owner"},
            "dataFrom": [{"extract": {"key": key}} for key in o.external_secrets],
        },
    }


def namespace(name: str, environment: str) -> Obj:
    """An environment's namespace, enforcing the `restricted` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(
            name,
            {
                "app.kubernetes.io/part-of": "shipway",
                "app.kubernetes.io/managed-by": "shipway",
                "shipway.dev/environment": environment,
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        ),
    }


# ----------------------------------------------------------------------------------------------
# The pod


def _env(o: RenderOptions, app: str) -> list[Obj]:
    names = Names(app)
    env: list[Obj] = []
    if not o.training:
        keys = [key for key, _ in SETTINGS] + (["SHIPWAY_ARTIFACT_URL"] if o.artifact_url else [])
        env = [
            {"name": k, "valueFrom": {"configMapKeyRef": {"name": names.config, "key": k}}}
            for k in keys
        ]
    elif o.artifact_url:
        env = [{"name": "SHIPWAY_ARTIFACT_URL", "value": o.artifact_url}]
    return env


def _env_from(o: RenderOptions, app: str) -> list[Obj]:
    refs = list(o.secrets) + ([Names(app).secrets] if o.external_secrets else [])
    return [{"secretRef": {"name": name}} for name in refs]


def _resources(o: RenderOptions) -> Obj:
    limits: dict[str, Any] = {"cpu": o.cpu_limit, "memory": o.memory_limit or o.memory}
    if o.gpu:
        limits["nvidia.com/gpu"] = str(o.gpu)  # extended resources: the request defaults to it
    return {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": limits}


def _server_args(o: RenderOptions) -> list[str]:
    """Flags after the image's `shipway serve bundle:/model --host 0.0.0.0 --port PORT`.

    Settings come from the ConfigMap through `$(VAR)`, which the kubelet expands from the
    container's environment. The drain time is literal: the grace period is sized from it.
    """
    args = ["--workers", str(o.workers)]
    for key, flag in SETTINGS:
        args += [flag, f"$({key})"]
    args += ["--drain-seconds", str(o.drain_seconds)]
    if not o.server.prediction_log:
        args.append("--no-prediction-log")
    return args


def _probe(path: str, period: int, failures: int, timeout: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def container(o: RenderOptions, app: str, release: Release) -> Obj:
    name = "train" if o.training else "server"
    out: Obj = {"name": name, "image": release.image, "imagePullPolicy": "IfNotPresent"}
    if not o.training:
        out["args"] = _server_args(o)
    if env := _env(o, app):
        out["env"] = env
    if env_from := _env_from(o, app):
        out["envFrom"] = env_from
    if not o.training:
        out["ports"] = [{"name": "http", "containerPort": o.port, "protocol": "TCP"}]
        # Readiness turns 200 once the model has loaded and answered a warm-up request: the
        # startup probe waits for exactly that, up to --startup-seconds, before liveness starts.
        out["startupProbe"] = _probe(READY, 5, math.ceil(o.startup_seconds / 5), 3)
        out["readinessProbe"] = _probe(READY, 5, 3, 3)
        out["livenessProbe"] = _probe(LIVE, 10, 3, 5)
        if o.prestop_seconds:
            # Endpoints are removed while the pod sleeps, so no new request arrives once the
            # server starts draining on SIGTERM.
            out["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(o.prestop_seconds)]}}}
    out["resources"] = _resources(o)
    out["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    out["volumeMounts"] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME},
    ]
    return out


def pod_template(
    o: RenderOptions, app: str, release: Release, *, track: str | None, digest: str | None
) -> Obj:
    """The pod: non-root, read-only, no API token, spread over nodes, on GPU nodes if asked."""
    component = "training" if o.training else "model-server"
    pod_labels = selector(app, track) | versioned(app, component, release)
    annotations = _uri(release)
    if not o.training:
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(o.port),
            "prometheus.io/path": "/metrics",
        }
    if digest:
        annotations["shipway.dev/config-digest"] = digest
    spec: Obj = {
        "serviceAccountName": app,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(o, app, release)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}},
            {"name": "home", "emptyDir": {"sizeLimit": "2Gi"}},
        ],
    }
    if o.training:
        spec["restartPolicy"] = "Never"
    else:
        # SIGTERM comes after preStop; then the server drains for up to --drain-seconds and
        # flushes the prediction log. A few seconds of margin before SIGKILL.
        spec["terminationGracePeriodSeconds"] = o.prestop_seconds + o.drain_seconds + 10
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(app, track)},
            }
        ]
    if o.gpu:
        spec["nodeSelector"] = o.node_selector
        spec["tolerations"] = [
            {"key": t.key, "operator": "Equal" if t.value is not None else "Exists"}
            | ({"value": t.value} if t.value is not None else {})
            | ({"effect": t.effect} if t.effect else {})
            for t in o.tolerations
        ]
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": spec}


# ----------------------------------------------------------------------------------------------
# Serving


def deployment(
    o: RenderOptions,
    app: str,
    release: Release,
    *,
    name: str,
    track: str,
    replicas: int | None,
    digest: str,
) -> Obj:
    """`replicas` None leaves the count to the HorizontalPodAutoscaler (so applying the
    manifest again does not reset it)."""
    spec: Obj = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec |= {
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": max(600, o.startup_seconds + 120),
        "selector": {"matchLabels": selector(app, track)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": int_or_percent(o.max_surge),
                "maxUnavailable": int_or_percent(o.max_unavailable),
            },
        },
        "template": pod_template(o, app, release, track=track, digest=digest),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, versioned(app, "model-server", release), _uri(release)),
        "spec": spec,
    }


def int_or_percent(value: str) -> int | str:
    return value if value.endswith("%") else int(value)


def service(o: RenderOptions, app: str, *, name: str, track: str | None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, labels(app, "model-server")),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(app, track),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(app: str) -> Obj:
    """Base: one pod at a time; production overlays switch to `minAvailable`."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(app, labels(app, "model-server")),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(app)},
            # Pods that are not ready protect nothing: let drains evict them.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def network_policy(o: RenderOptions, app: str) -> Obj:
    """Ingress only on the serving port (Prometheus scrapes /metrics there too); training
    pods accept no ingress at all."""
    component = "training" if o.training else "model-server"
    ingress = [] if o.training else [{"ports": [{"port": o.port, "protocol": "TCP"}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(app, labels(app, component)),
        "spec": {
            "podSelector": {"matchLabels": selector(app)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def horizontal_pod_autoscaler(o: RenderOptions, app: str, *, target: Obj) -> Obj:
    """CPU utilisation, plus per-pod metrics (served by a metrics adapter such as
    prometheus-adapter). Base bounds are staging's; overlays set each environment's."""
    metrics: list[Obj] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": o.cpu_utilization},
            },
        }
    ]
    for metric, value in o.parsed_pods_metrics:
        metrics.append({
            "type": "Pods",
            "pods": {
                "metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": value},
            },
        })  # fmt: skip
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(app, labels(app, "model-server")),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": target["apiVersion"],
                "kind": target["kind"],
                "name": target["metadata"]["name"],
            },
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": metrics,
        },
    }


# ----------------------------------------------------------------------------------------------
# Training


def _job_spec(o: RenderOptions, app: str, release: Release) -> Obj:
    # No ttlSecondsAfterFinished: a Job deleted after its run would be created (and run) again
    # by the next `kubectl apply -k` or GitOps sync.
    return {
        "backoffLimit": 2,
        "template": pod_template(o, app, release, track=None, digest=None),
    }


def job(o: RenderOptions, app: str, release: Release) -> Obj:
    """One training run now. Named after the version: a Job's pod template is immutable."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(
            Names(app).job(release.version), versioned(app, "training", release), _uri(release)
        ),
        "spec": _job_spec(o, app, release),
    }


def cron_job(o: RenderOptions, app: str, release: Release) -> Obj:
    """The retraining schedule; a run never overlaps the previous one. With `retrain`, each run
    is `shipway retrain MODEL` in the project's folder of the training image (train on the
    newest data, compare with the champion, let the policy of shipway.yaml decide) instead of a
    bare training run."""
    assert o.schedule is not None
    job_spec = _job_spec(o, app, release)
    if o.retrain:
        job_spec["template"]["spec"]["containers"][0]["command"] = [
            "shipway", "retrain", release.model, "--trigger", "schedule",
        ]  # fmt: skip
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(Names(app).cron_job, versioned(app, "training", release), _uri(release)),
        "spec": {
            "schedule": o.schedule.strip(),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": job_spec},
        },
    }
