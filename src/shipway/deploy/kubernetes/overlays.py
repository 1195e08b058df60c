"""One kustomize overlay per environment: its namespace, and JSON patches for what differs.

An environment named `production` or `prod`, or starting with `prod-`, gets the production
profile (the `--replicas` asked for, autoscaling up to `--max-replicas`, a disruption budget
keeping all but one replica up); any other gets the staging profile (one replica autoscaling
to two, half the CPU request). Patches are RFC 6902 operations targeted by kind and name,
which kustomize applies to custom resources (a Rollout) as well as built-in kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipway.deploy.kubernetes import objects
from shipway.deploy.kubernetes.canary import GATEWAY_PLUGIN
from shipway.deploy.kubernetes.objects import Obj
from shipway.deploy.kubernetes.options import RenderOptions, cpu_millis

__all__ = ["KUSTOMIZATION", "Profile", "overlay", "profile"]

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
WORKLOADS = ("Deployment", "Rollout", "Job", "CronJob")


@dataclass(frozen=True)
class Profile:
    replicas: int
    max_replicas: int
    cpu: str
    min_available: int | None  # None: the base's maxUnavailable 1


def is_production(environment: str) -> bool:
    return environment in ("production", "prod") or environment.startswith("prod-")


def profile(environment: str, o: RenderOptions) -> Profile:
    if is_production(environment):
        keep = o.replicas - 1 if o.replicas > 1 else None
        return Profile(o.replicas, o.max_replicas, o.cpu, keep)
    millis = max(100, cpu_millis(o.cpu) // 2)
    return Profile(1, min(2, o.max_replicas), f"{millis}m", None)


def namespace_of(app: str, environment: str) -> str:
    return f"{app}-{environment}"


def _target(obj: Obj) -> Obj:
    group, _, version = obj["apiVersion"].rpartition("/")
    target = {"version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
    return ({"group": group} if group else {}) | target


def _containers_path(obj: Obj) -> str:
    if obj["kind"] == "CronJob":
        return "/spec/jobTemplate/spec/template/spec/containers/0"
    return "/spec/template/spec/containers/0"


def _patches(obj: Obj, environment: str, p: Profile, o: RenderOptions, app: str) -> list[Obj]:
    kind, ops = obj["kind"], list[Obj]()
    if kind in WORKLOADS:
        cpu = f"{_containers_path(obj)}/resources/requests/cpu"
        ops.append({"op": "replace", "path": cpu, "value": p.cpu})
        # Only the stable workload scales; the HPA owns the count when there is one.
        if "replicas" in obj["spec"] and obj["metadata"]["name"] == app:
            ops.append({"op": "replace", "path": "/spec/replicas", "value": p.replicas})
    if kind == "Rollout":
        path = "/spec/strategy/canary/trafficRouting/plugins/" + GATEWAY_PLUGIN.replace("/", "~1")
        ops.append(
            {"op": "add", "path": f"{path}/namespace", "value": namespace_of(app, environment)}
        )
    if kind == "HorizontalPodAutoscaler":
        ops += [
            {"op": "replace", "path": "/spec/minReplicas", "value": p.replicas},
            {"op": "replace", "path": "/spec/maxReplicas", "value": p.max_replicas},
        ]
    if kind == "PodDisruptionBudget" and p.min_available is not None:
        ops += [
            {"op": "remove", "path": "/spec/maxUnavailable"},
            {"op": "add", "path": "/spec/minAvailable", "value": p.min_available},
        ]
    return ops


def overlay(
    environment: str, o: RenderOptions, app: str, base: list[Obj]
) -> dict[str, Obj | list[Obj]]:
    """The overlay's files (relative path -> YAML document) for the objects in `base`."""
    p = profile(environment, o)
    ns = namespace_of(app, environment)
    files: dict[str, Obj | list[Obj]] = {"namespace.yaml": objects.namespace(ns, environment)}
    patches: list[Obj] = []
    for obj in base:
        if ops := _patches(obj, environment, p, o, app):
            path = f"patches/{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            files[path] = ops
            patches.append({"path": path, "target": _target(obj)})
    kustomization: Obj = KUSTOMIZATION | {
        "namespace": ns,
        "resources": ["namespace.yaml", "../../base"],
    }
    if patches:
        kustomization["patches"] = patches
    return {"kustomization.yaml": kustomization, **files}
