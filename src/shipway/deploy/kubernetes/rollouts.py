"""`shipway k8s rollout start`: a canary on a cluster, driven by the same
:class:`~shipway.deploy.rollout.Controller` as on one machine, in the foreground.

Start: the canary Deployment, the stable and canary Services and the HTTPRoute (stable 100,
canary 0) are applied next to the recorded stable version, and the canary must become
available before the rollout is recorded. Then the controller ticks every second: traffic
moves through :class:`~shipway.deploy.kubernetes.traffic.KubernetesTraffic`, numbers come from
:class:`~shipway.deploy.kubernetes.prometheus.PrometheusMetricsSource`, and every state is
saved with `records.save_rollout` (so `shipway rollout status` shows it, and `shipway
rollout promote|abort --env ENV` from another terminal is taken at the next tick). A promoted
canary is recorded as the environment's deployment (`k8s.promote`); Ctrl-C aborts the rollout
(the canary's weight drops to 0 and it is scaled to 0).

Resume (`shipway k8s rollout resume`): when the process following a rollout died (a closed
laptop, a killed CI job), the stored state and the cluster's objects are all a new process
needs: :func:`attach` rebuilds the run around them and :func:`run` carries on from the step
the rollout was at.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from shipway.client import Client, get_client
from shipway.deploy import records
from shipway.deploy.analysis import Checks, MetricsSource
from shipway.deploy.kubernetes.apply import (
    SERVICE_PORT,
    ClusterFactory,
    _default_cluster,
    _observed,
    environment_objects,
    move_alias,
)
from shipway.deploy.kubernetes.objects import Names, Obj, Release
from shipway.deploy.kubernetes.options import RenderOptions
from shipway.deploy.kubernetes.render import resolve_release
from shipway.deploy.kubernetes.status import APPS, RolloutStatus, wait_available
from shipway.deploy.kubernetes.traffic import KubernetesTraffic
from shipway.deploy.rollout import Controller, RolloutState, Step, new_rollout
from shipway.errors import ConflictError, DeployError, InvalidInputError, ShipwayError
from shipway.governance.approvals import check_approved

__all__ = ["CanaryRun", "attach", "run", "start"]

ERRORS_BEFORE_ABORT = 5
"""Ticks in a row whose analysis could not read its numbers before the rollout aborts."""


@dataclasses.dataclass
class CanaryRun:
    controller: Controller
    traffic: KubernetesTraffic
    environment: str
    stable: Release
    canary: Release
    client: Client
    closers: list[Callable[[], None]] = dataclasses.field(default_factory=list)


def start(
    o: RenderOptions,
    environment: str,
    *,
    steps: Sequence[Step],
    interval_s: float,
    failure_limit: int = 1,
    checks: Checks | None = None,
    source: Callable[[str, str], MetricsSource],
    context: str | None = None,
    namespace: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 1.0,
    cluster_factory: ClusterFactory = _default_cluster,
    client: Client | None = None,
    on_status: Callable[[RolloutStatus], None] = lambda _: None,
) -> CanaryRun:
    """Put `o.uri` next to the recorded stable version at weight 0 and start the rollout.

    `source(namespace, app)` makes the metrics source (a PrometheusMetricsSource)."""
    client = client or get_client()
    o.check()
    dep = records.kubernetes_deployment(environment, client=client)
    if dep.status != "running" or dep.image is None:
        raise ConflictError(
            f"{environment} is {dep.status} on the cluster; nothing stable to compare with.",
            f"Apply a version first: `shipway k8s apply URI --env {environment}`.",
        )
    canary = resolve_release(o.uri, "inference", o.image, client=client)
    if canary.model != dep.model:
        raise InvalidInputError(f"{environment} serves '{dep.model}', not '{canary.model}'.")
    check_approved(environment, canary.model, canary.version, client=client)
    if (running := records.active_rollout(environment, client=client)) is not None:
        raise ConflictError(
            f"Rollout {running.id} is {running.status} in {environment}.",
            "Finish it first (`shipway rollout promote|abort --env ENV`).",
        )
    state = new_rollout(
        environment=environment, model=dep.model, stable_version=dep.version,
        canary_version=canary.version, steps=steps, interval_s=interval_s,
        failure_limit=failure_limit, checks=checks, now=time.time(),
    )  # fmt: skip
    stable = Release(dep.model, dep.version, dep.image)
    app = dep.observed["app"]
    ns = namespace or dep.observed["namespace"]
    names = Names(app)
    with_canary = dataclasses.replace(
        o, uri=stable.uri, image=None, canary=canary.uri, canary_image=None, canary_weight=0
    )
    wanted = {("Deployment", names.track("canary")), ("Service", names.track("stable")),
              ("Service", names.track("canary")), ("HTTPRoute", app)}  # fmt: skip
    objects = [
        obj
        for obj in environment_objects(
            with_canary, environment, app, stable, canary, namespace=ns, create_namespace=False
        )
        if (obj["kind"], obj["metadata"]["name"]) in wanted
    ]
    cluster = cluster_factory(context or dep.host, ns)
    traffic = KubernetesTraffic(
        cluster, app, promoted_stable=_promoted_stable(o, environment, app, canary, ns),
        timeout_s=timeout_s, poll_s=poll_s, on_status=on_status,
    )  # fmt: skip
    try:
        cluster.apply(objects)
        try:
            wait_available(
                cluster, names.track("canary"), timeout_s=timeout_s, poll_s=poll_s,
                on_status=on_status,
            )  # fmt: skip
        except BaseException:
            traffic.stop_canary()
            raise
        records.start_rollout(state, client=client)
    except BaseException:
        cluster.close()
        raise
    run = _canary_run(state, traffic, source(ns, app), environment, stable, canary, client)
    after = run.controller.begin(time.time())
    records.save_rollout(after, client=client, previous=state)
    return run


def attach(
    o: RenderOptions,
    environment: str,
    *,
    source: Callable[[str, str], MetricsSource],
    context: str | None = None,
    namespace: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 1.0,
    cluster_factory: ClusterFactory = _default_cluster,
    client: Client | None = None,
    on_status: Callable[[RolloutStatus], None] = lambda _: None,
) -> CanaryRun:
    """The active rollout of ``environment``, taken over from a process that is gone. ``o``
    renders the stable Deployment a promotion applies (the options it was applied with)."""
    client = client or get_client()
    state = records.active_rollout(environment, client=client)
    if state is None:
        raise ConflictError(
            f"No rollout is running or paused in {environment}: nothing to resume.",
            f"Start one with `shipway k8s rollout start URI --env {environment}`.",
        )
    dep = records.kubernetes_deployment(environment, client=client)
    app = dep.observed["app"]
    ns = namespace or dep.observed["namespace"]
    cluster = cluster_factory(context or dep.host, ns)
    try:
        found = cluster.get(APPS, "Deployment", Names(app).track("canary"))
        if found is None:
            raise ConflictError(
                f"Rollout {state.id} has no canary Deployment in {ns}: it cannot go on.",
                f"Abort it (`shipway rollout abort --env {environment}`) and start a new one.",
            )
        image = found["spec"]["template"]["spec"]["containers"][0]["image"]
        canary = Release(dep.model, state.canary_version, image)
        traffic = KubernetesTraffic(
            cluster, app, promoted_stable=_promoted_stable(o, environment, app, canary, ns),
            timeout_s=timeout_s, poll_s=poll_s, on_status=on_status,
        )  # fmt: skip
    except BaseException:
        cluster.close()
        raise
    stable = Release(dep.model, dep.version, str(dep.image))
    return _canary_run(state, traffic, source(ns, app), environment, stable, canary, client)


def _canary_run(
    state: RolloutState,
    traffic: KubernetesTraffic,
    metrics: MetricsSource,
    environment: str,
    stable: Release,
    canary: Release,
    client: Client,
) -> CanaryRun:
    """The run of `state`: its controller over `traffic` and `metrics`, and what closes them."""
    closers = [traffic.cluster.close]
    if (close := getattr(metrics, "close", None)) is not None:
        closers.append(close)
    return CanaryRun(Controller(state, metrics, traffic), traffic, environment, stable, canary,
                     client, closers)  # fmt: skip


def _promoted_stable(o: RenderOptions, environment: str, app: str, canary: Release, ns: str) -> Obj:
    """The stable Deployment as it runs the canary's version."""
    plain = dataclasses.replace(o, uri=canary.uri, image=canary.image, canary=None)
    for obj in environment_objects(plain, environment, app, canary, namespace=ns):
        if (obj["kind"], obj["metadata"]["name"]) == ("Deployment", app):
            return obj
    raise AssertionError("no stable Deployment rendered")


def run(
    canary: CanaryRun,
    *,
    tick_s: float = 1.0,
    on_change: Callable[[RolloutState], None] = lambda _: None,
    on_error: Callable[[ShipwayError], None] = lambda _: None,
) -> RolloutState:
    """Tick until the rollout ends; requests from `shipway rollout promote|abort` are taken
    between ticks. Ctrl-C aborts it."""
    controller, client = canary.controller, canary.client
    errors = 0
    try:
        while controller.state.active:
            time.sleep(tick_s)
            before = controller.state
            request = records.take_request(before.id, client=client)
            now = time.time()
            try:
                if request == "abort":
                    after = controller.abort(now)
                elif request in ("promote", "promote-full"):
                    after = controller.promote(now, full=request == "promote-full")
                else:
                    after = controller.tick(now)
                errors = 0
            except ShipwayError as exc:
                on_error(exc)
                if request is not None:  # a refused request leaves the rollout as it was
                    continue
                errors += 1
                if errors < ERRORS_BEFORE_ABORT:
                    continue
                after = controller.abort(now, f"gave up after {errors} errors: {exc.message}")
            if after != before:
                records.save_rollout(after, client=client, previous=before)
                on_change(after)
    except KeyboardInterrupt:
        before = controller.state
        if before.active:
            after = controller.abort(time.time(), "interrupted (Ctrl-C)")
            records.save_rollout(after, client=client, previous=before)
            on_change(after)
        raise
    finally:
        if not controller.state.active:
            for close in canary.closers:
                close()
    if controller.state.status == "promoted":
        _record_promotion(canary)
    return controller.state


def _record_promotion(run: CanaryRun) -> None:
    traffic, release = run.traffic, run.canary
    status = traffic.promoted
    if status is None:
        raise DeployError("The canary was promoted but the stable rollout was not observed.")
    # The promoted stable Deployment was rendered with the options the environment was applied
    # with: they stay on record for the next rollout.
    options = records.get_deployment(run.environment, client=run.client).observed.get("options")
    records.record_kubernetes(
        run.environment, model=release.model, version=release.version,
        replicas=status.desired, context=traffic.cluster.context,
        namespace=traffic.cluster.namespace, port=SERVICE_PORT, image=release.image,
        observed=_observed(traffic.cluster, traffic.app, release.image, status)
        | ({"options": options} if options else {}),
        event="k8s.promote", client=run.client,
    )  # fmt: skip
    move_alias(release, run.environment, run.client)
