"""`shipway k8s apply`, `status` and `rollback`: an environment's overlay, applied to a cluster.

The objects are those `shipway k8s render` writes, built in memory: the base, then the
environment's overlay (its namespace and its RFC 6902 patches, read from the same
:func:`~shipway.deploy.kubernetes.overlays.overlay` files kustomize would read). They are
server-side applied in order, the Deployment's rollout is awaited, and only then is the
deployment recorded and audited: a failure on the way (a refused object, an unreachable
cluster, pods that never become available) leaves the store as it was.

An environment whose approval policy requires it takes only an approved version, refused
before any call to the cluster.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipway.client import Client, get_client
from shipway.deploy import records
from shipway.deploy.kubernetes import overlays
from shipway.deploy.kubernetes.cluster import ClusterClient, KubeCluster, Obj
from shipway.deploy.kubernetes.objects import Release
from shipway.deploy.kubernetes.options import ENV_NAME, RenderOptions
from shipway.deploy.kubernetes.render import app_name, build_base, resolve_release
from shipway.deploy.kubernetes.status import (
    APPS,
    RolloutStatus,
    read_status,
    revisions,
    status_of,
    wait_available,
)
from shipway.deploy.records import DeploymentInfo
from shipway.errors import ConflictError, InvalidInputError, NotFoundError, ShipwayError
from shipway.governance.approvals import check_approved

__all__ = [
    "Applied",
    "LiveStatus",
    "apply",
    "environment_objects",
    "live_status",
    "move_alias",
    "rollback",
]

SERVICE_PORT = 80
ROUTE_API = "gateway.networking.k8s.io/v1"
ClusterFactory = Callable[[str | None, str], ClusterClient]


@dataclass(frozen=True)
class Applied:
    environment: str
    namespace: str
    context: str
    release: Release
    objects: list[Obj]
    dry_run: bool
    status: RolloutStatus | None  # None for a dry run
    deployment: DeploymentInfo | None  # the record; None for a dry run


def check_environment(environment: str) -> None:
    if not ENV_NAME.fullmatch(environment):
        raise InvalidInputError(
            f"'{environment}' is not a usable environment name.",
            "Use lower-case letters, digits and '-', starting with a letter, e.g. staging.",
        )


def environment_objects(
    o: RenderOptions,
    environment: str,
    app: str,
    release: Release,
    canary: Release | None = None,
    *,
    namespace: str | None = None,
    create_namespace: bool = True,
) -> list[Obj]:
    """What `kubectl kustomize overlays/ENVIRONMENT` prints, in apply order (the Namespace
    first), with `namespace` instead of the overlay's own when given."""
    base = build_base(o, app, release, canary)
    files = overlays.overlay(environment, o, app, base)
    kustomization = files["kustomization.yaml"]
    assert isinstance(kustomization, dict)
    ns = namespace or kustomization["namespace"]
    out = copy.deepcopy(base)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        ops = files[patch["path"]]
        assert isinstance(ops, list)
        for obj in out:
            if (obj["kind"], obj["metadata"]["name"]) == (target["kind"], target["name"]):
                _json_patch(obj, ops)
    for obj in out:
        obj["metadata"]["namespace"] = ns
    ns_obj = files["namespace.yaml"]
    assert isinstance(ns_obj, dict)
    ns_obj["metadata"]["name"] = ns
    return ([ns_obj] if create_namespace else []) + out


def _json_patch(doc: Obj, ops: list[Obj]) -> None:
    """RFC 6902 add/replace/remove, the operations overlays are written with."""
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        ]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] == "remove":
            del node[key]
        elif isinstance(node, list) and op["op"] == "add":
            node.insert(len(node) if key == "-" else key, op["value"])
        elif op["op"] in ("add", "replace"):
            node[key] = op["value"]
        else:
            raise AssertionError(f"unsupported patch operation {op['op']}")


def _default_cluster(context: str | None, namespace: str) -> ClusterClient:
    return KubeCluster(context, namespace)


def check_record(
    environment: str, model: str, client: Client, *, machine: str = "this machine"
) -> None:
    """Refuse to record ``model`` on a cluster as ``environment``: while it runs processes or
    containers on ``machine``, while it serves another model, or while a rollout runs there.
    The team server checks the same before it writes what a client applied (`admission`)."""
    current = records.find_deployment(environment, client=client)
    if current is not None:
        if current.runtime != "kubernetes" and current.status != "stopped":
            raise ConflictError(
                f"{environment} runs on {machine} ({current.runtime}, {current.status}).",
                f"Use another --env, or stop it first: "
                f"`shipway deployments down --env {environment}`.",
            )
        if current.runtime == "kubernetes" and current.model != model:
            raise ConflictError(
                f"{environment} serves model '{current.model}', not '{model}'.",
                "Deploy it to another --env.",
            )
    running = records.active_rollout(environment, client=client)
    if running is not None:
        raise ConflictError(
            f"Rollout {running.id} is {running.status} in {environment}.",
            "Let it finish, or stop its `shipway k8s rollout start` (Ctrl-C aborts it).",
        )


def apply(
    o: RenderOptions,
    environment: str,
    *,
    context: str | None = None,
    namespace: str | None = None,
    dry_run: bool = False,
    create_namespace: bool = True,
    timeout_s: float = 600.0,
    poll_s: float = 1.0,
    cluster_factory: ClusterFactory = _default_cluster,
    client: Client | None = None,
    on_status: Callable[[RolloutStatus], None] = lambda _: None,
) -> Applied:
    """Apply `o`'s version to `environment`, wait for it to be available, then record it."""
    check_environment(environment)
    o.check()
    if o.training or o.argo or o.canary is not None:
        raise InvalidInputError(
            "`k8s apply` runs a model server: no --kind training, --argo or --canary.",
            "Start a canary with `shipway k8s rollout start URI --env ENV`; apply Argo or "
            "training manifests with `shipway k8s render` and `kubectl apply -k`.",
        )
    client = client or get_client()
    release = resolve_release(o.uri, "inference", o.image, client=client)
    app = app_name(o, release.model)
    check_approved(environment, release.model, release.version, client=client)
    check_record(environment, release.model, client)
    objects = environment_objects(
        o, environment, app, release, namespace=namespace, create_namespace=create_namespace
    )
    ns = objects[-1]["metadata"]["namespace"]
    with contextlib.closing(cluster_factory(context, ns)) as cluster:
        applied = cluster.apply(objects, dry_run=dry_run)
        if dry_run:
            return Applied(environment, ns, cluster.context, release, applied, True, None, None)
        status = wait_available(
            cluster, app, timeout_s=timeout_s, poll_s=poll_s, on_status=on_status
        )
    info = records.record_kubernetes(
        environment, model=release.model, version=release.version, replicas=status.desired,
        context=cluster.context, namespace=ns, port=SERVICE_PORT, image=release.image,
        observed=_observed(cluster, app, release.image, status) | {"options": o.saved()},
        event="k8s.apply", client=client,
    )  # fmt: skip
    move_alias(release, environment, client)
    return Applied(environment, ns, cluster.context, release, applied, False, status, info)


def move_alias(release: Release, environment: str, client: Client) -> None:
    """Point the environment's alias at what it now serves, as the local agent does; the
    action that got here was checked for approval, so this consequence is not checked again."""
    import logging

    from shipway.registry.registry import set_alias

    try:
        set_alias(release.uri, environment, client=client, approved=True)
    except ShipwayError as exc:  # an environment name that is no valid alias
        logging.getLogger(__name__).warning("alias %s not moved: %s", environment, exc)


def _observed(
    cluster: ClusterClient, app: str, image: str, status: RolloutStatus
) -> dict[str, Any]:
    return {
        "context": cluster.context,
        "namespace": cluster.namespace,
        "app": app,
        "image": image,
        "digest": image.rpartition("@")[2] if "@" in image else None,
        "revision": status.revision,
        "replicas": {"desired": status.desired, "available": status.available},
    }


# ----------------------------------------------------------------------------------------------
# Status and rollback


@dataclass(frozen=True)
class LiveStatus:
    recorded: DeploymentInfo
    stable: RolloutStatus
    canary: RolloutStatus | None
    weights: dict[str, int] | None  # HTTPRoute backend -> weight


def _cluster_of(
    dep: DeploymentInfo, context: str | None, namespace: str | None, factory: ClusterFactory
) -> ClusterClient:
    return factory(context or dep.host, namespace or dep.observed["namespace"])


def live_status(
    environment: str,
    *,
    context: str | None = None,
    namespace: str | None = None,
    cluster_factory: ClusterFactory = _default_cluster,
    client: Client | None = None,
) -> LiveStatus:
    """What the store recorded for `environment`, and what the cluster runs now."""
    dep = records.kubernetes_deployment(environment, client=client)
    app = dep.observed["app"]
    with contextlib.closing(_cluster_of(dep, context, namespace, cluster_factory)) as cluster:
        stable = read_status(cluster, app)
        canary_obj = cluster.get(APPS, "Deployment", f"{app}-canary")
        route = cluster.get(ROUTE_API, "HTTPRoute", app) if canary_obj else None
    weights = None
    if route is not None:
        refs = route["spec"]["rules"][0]["backendRefs"]
        weights = {ref["name"]: int(ref.get("weight", 1)) for ref in refs}
    canary = status_of(canary_obj) if canary_obj else None
    return LiveStatus(dep, stable, canary, weights)


def rollback(
    environment: str,
    *,
    to_revision: int | None = None,
    context: str | None = None,
    namespace: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 1.0,
    cluster_factory: ClusterFactory = _default_cluster,
    client: Client | None = None,
    on_status: Callable[[RolloutStatus], None] = lambda _: None,
) -> DeploymentInfo:
    """Put the pod template of an earlier ReplicaSet back (the previous one by default), as
    `kubectl rollout undo` does; wait for it, then record and audit it (`k8s.rollback`)."""
    client = client or get_client()
    if client.remote:  # the cluster is patched from here: refuse before it, not after
        from shipway.remote.governance import require_role

        require_role("developer", "record a Kubernetes deployment", client=client)
    dep = records.kubernetes_deployment(environment, client=client)
    if (running := records.active_rollout(environment, client=client)) is not None:
        raise ConflictError(f"Rollout {running.id} is {running.status} in {environment}.")
    with contextlib.closing(_cluster_of(dep, context, namespace, cluster_factory)) as cluster:
        return _rollback(dep, cluster, to_revision, timeout_s, poll_s, on_status, client)


def _rollback(
    dep: DeploymentInfo,
    cluster: ClusterClient,
    to_revision: int | None,
    timeout_s: float,
    poll_s: float,
    on_status: Callable[[RolloutStatus], None],
    client: Client,
) -> DeploymentInfo:
    environment, app = dep.environment, dep.observed["app"]
    deployment = cluster.get(APPS, "Deployment", app)
    if deployment is None:
        raise NotFoundError(f"Deployment {app} is not in {cluster.namespace} ({cluster.context}).")
    current = status_of(deployment).revision
    history = revisions(cluster, deployment)
    if to_revision is not None:
        chosen = [r for r in history if r.number == to_revision]
    else:
        chosen = [r for r in history if current is None or r.number < current][-1:]
    if not chosen:
        known = ", ".join(str(r.number) for r in history) or "none"
        raise NotFoundError(
            f"Deployment {app} has no revision "
            + (str(to_revision) if to_revision is not None else f"before {current}")
            + f" to roll back to (revisions: {known}).",
            "`shipway k8s status --env ENV` shows the current one.",
        )
    target = chosen[0]
    if target.number == current:
        raise ConflictError(f"Revision {current} of {app} is already the current one.")
    version = _version(target.version, target.number)
    template = copy.deepcopy(target.template)
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    cluster.patch(APPS, "Deployment", app, [
        {"op": "replace", "path": "/spec/template", "value": template},
    ])  # fmt: skip
    status = wait_available(cluster, app, timeout_s=timeout_s, poll_s=poll_s, on_status=on_status)
    image = target.image or ""
    info = records.record_kubernetes(
        environment, model=dep.model, version=version, replicas=status.desired,
        context=cluster.context, namespace=cluster.namespace, port=dep.port, image=image,
        observed=_observed(cluster, app, image, status) | {"rolled_back_from": current},
        event="k8s.rollback", client=client,
    )  # fmt: skip
    move_alias(Release(dep.model, version, image), environment, client)
    return info


def _version(label: str | None, revision: int) -> int:
    try:
        return int(label or "")
    except ValueError:
        raise ConflictError(
            f"Revision {revision} carries no model version label (app.kubernetes.io/version).",
            "It was not deployed by Shipway; roll back with kubectl instead.",
        ) from None
