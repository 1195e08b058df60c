"""A Deployment's rollout as `kubectl rollout status` judges it, and its revisions.

Done means: the controller has observed the latest generation, every desired replica runs the
new template (``updatedReplicas``), no old replica is left (``replicas``), and all of them are
available. A ``Progressing`` condition with reason ``ProgressDeadlineExceeded`` is a failure.
When a rollout fails or times out, the pods say why (``ImagePullBackOff``,
``CrashLoopBackOff``, ``Unschedulable`` ...): :func:`pod_problems` collects their reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shipway.deploy.kubernetes.cluster import ClusterClient, Obj
from shipway.errors import DeployError, NotFoundError

__all__ = [
    "REVISION",
    "Revision",
    "RolloutStatus",
    "pod_problems",
    "read_status",
    "revisions",
    "wait_available",
]

REVISION = "deployment.kubernetes.io/revision"
APPS = "apps/v1"


@dataclass(frozen=True)
class RolloutStatus:
    name: str
    desired: int
    updated: int
    ready: int
    available: int
    total: int
    observed: bool
    revision: int | None
    image: str | None
    version: str | None
    failed: str | None  # the failing condition, when the rollout cannot go on

    @property
    def done(self) -> bool:
        return (
            self.observed
            and self.failed is None
            and self.updated >= self.desired
            and self.total <= self.updated
            and self.available >= self.updated
        )

    def describe(self) -> str:
        if not self.observed:
            return "waiting for the controller to see the new spec"
        if self.updated < self.desired:
            return f"{self.updated} of {self.desired} replicas updated"
        if self.total > self.updated:
            return f"{self.total - self.updated} old replicas terminating"
        return f"{self.available} of {self.desired} replicas available"


def status_of(deployment: Obj) -> RolloutStatus:
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    status = deployment.get("status") or {}
    failed = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failed = f"Progressing: {cond.get('reason')}: {cond.get('message', '')}".rstrip(": ")
    containers = spec.get("template", {}).get("spec", {}).get("containers") or [{}]
    labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    revision = (meta.get("annotations") or {}).get(REVISION)
    return RolloutStatus(
        name=meta["name"],
        desired=int(spec.get("replicas", 1)),
        updated=int(status.get("updatedReplicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        total=int(status.get("replicas") or 0),
        observed=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        revision=int(revision) if revision else None,
        image=containers[0].get("image"),
        version=labels.get("app.kubernetes.io/version"),
        failed=failed,
    )


def read_status(cluster: ClusterClient, name: str) -> RolloutStatus:
    found = cluster.get(APPS, "Deployment", name)
    if found is None:
        raise NotFoundError(
            f"Deployment {name} is not in namespace {cluster.namespace} "
            f"(context '{cluster.context}')."
        )
    return status_of(found)


def pod_problems(cluster: ClusterClient, deployment: Obj) -> list[str]:
    """Why the Deployment's pods are not available, one line per distinct reason."""
    labels = deployment["spec"]["selector"].get("matchLabels") or {}
    found: dict[str, None] = {}
    for pod in cluster.list("v1", "Pod", labels):
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("status") == "False" and cond.get("reason"):
                line = f"pod {name}: {cond['reason']}: {cond.get('message', '')}"
                found[line.rstrip(": ")] = None
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            for what in ("waiting", "terminated"):
                if (s := state.get(what)) and s.get("reason"):
                    line = f"pod {name}: {s['reason']}: {s.get('message', '')}".rstrip(": ")
                    if last.get("reason"):
                        line += f" (last exit: {last['reason']}, code {last.get('exitCode')})"
                    found[line] = None
    return list(found)


def wait_available(
    cluster: ClusterClient,
    name: str,
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    on_status: Callable[[RolloutStatus], None] = lambda _: None,
) -> RolloutStatus:
    """Poll the Deployment until its rollout is done; DeployError naming the failing condition
    and the pods' reasons when it fails or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        deployment = cluster.get(APPS, "Deployment", name)
        if deployment is None:
            raise NotFoundError(f"Deployment {name} disappeared from {cluster.namespace}.")
        status = status_of(deployment)
        on_status(status)
        if status.done:
            return status
        timed_out = time.monotonic() > deadline
        if status.failed or timed_out:
            why = status.failed or f"not available after {timeout_s:g} s ({status.describe()})"
            pods = pod_problems(cluster, deployment)
            raise DeployError(
                f"Deployment {name} in {cluster.namespace} (context '{cluster.context}') did "
                f"not become available: {why}." + (" " + "; ".join(pods[:5]) + "." if pods else ""),
                f"Nothing was recorded as deployed. See `kubectl --context {cluster.context} -n "
                f"{cluster.namespace} describe deployment {name}`; `shipway k8s rollback` "
                "returns to the previous revision.",
            )
        time.sleep(poll_s)


@dataclass(frozen=True)
class Revision:
    number: int
    replica_set: str
    template: Obj
    image: str | None
    version: str | None


def revisions(cluster: ClusterClient, deployment: Obj) -> list[Revision]:
    """The Deployment's ReplicaSets as revisions, oldest first (what `kubectl rollout
    history` lists)."""
    uid = deployment["metadata"].get("uid")
    labels = deployment["spec"]["selector"].get("matchLabels") or {}
    out = []
    for rs in cluster.list(APPS, "ReplicaSet", labels):
        owners = rs["metadata"].get("ownerReferences") or []
        if uid and not any(o.get("uid") == uid for o in owners):
            continue
        number = (rs["metadata"].get("annotations") or {}).get(REVISION)
        if number is None:
            continue
        template = rs["spec"]["template"]
        containers = template.get("spec", {}).get("containers") or [{}]
        out.append(Revision(
            int(number), rs["metadata"]["name"], template, containers[0].get("image"),
            (template.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/version"),
        ))  # fmt: skip
    return sorted(out, key=lambda r: r.number)
