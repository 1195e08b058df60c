"""The rollout controller's :class:`~shipway.deploy.rollout.Traffic` on a cluster.

The canary's share is the weight of its Service in the HTTPRoute's backendRefs (the route
`canary.http_route` renders: ``APP-stable`` and ``APP-canary``), changed by a JSON merge patch
of the route's rules as read just before. Promotion applies the stable Deployment rendered
with the canary's version (so its image, version labels and model URI all follow), waits for
it, then sends all traffic back to stable and scales the canary to 0. A stop sends the
canary's weight to 0 first, then scales it to 0.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from shipway.deploy.kubernetes.cluster import ClusterClient, Obj
from shipway.deploy.kubernetes.objects import Names
from shipway.deploy.kubernetes.status import APPS, RolloutStatus, wait_available
from shipway.errors import DeployError

__all__ = ["ROUTE_API", "KubernetesTraffic"]

ROUTE_API = "gateway.networking.k8s.io/v1"


class KubernetesTraffic:
    def __init__(
        self,
        cluster: ClusterClient,
        app: str,
        *,
        promoted_stable: Obj,
        timeout_s: float = 600.0,
        poll_s: float = 1.0,
        on_status: Callable[[RolloutStatus], None] = lambda _: None,
    ) -> None:
        self.cluster = cluster
        self.app = app
        names = Names(app)
        self.stable, self.canary = names.track("stable"), names.track("canary")
        self.promoted_stable = promoted_stable
        self.timeout_s, self.poll_s, self.on_status = timeout_s, poll_s, on_status
        self.promoted: RolloutStatus | None = None

    def weights(self) -> dict[str, int]:
        route = self._route()
        return {
            ref["name"]: int(ref.get("weight", 1))
            for ref in route["spec"]["rules"][0]["backendRefs"]
        }

    def set_canary_weight(self, percent: float) -> None:
        canary = round(percent)
        self._set_weights({self.stable: 100 - canary, self.canary: canary})

    def promote_canary(self) -> None:
        self.cluster.apply([self.promoted_stable])
        self.promoted = wait_available(
            self.cluster, self.app, timeout_s=self.timeout_s, poll_s=self.poll_s,
            on_status=self.on_status,
        )  # fmt: skip
        self._set_weights({self.stable: 100, self.canary: 0})
        self._scale_canary_down()

    def stop_canary(self) -> None:
        try:
            self._set_weights({self.stable: 100, self.canary: 0})
        finally:
            self._scale_canary_down()

    def _scale_canary_down(self) -> None:
        self.cluster.patch(APPS, "Deployment", self.canary, {"spec": {"replicas": 0}})

    def _route(self) -> Obj:
        route = self.cluster.get(ROUTE_API, "HTTPRoute", self.app)
        if route is None:
            raise DeployError(
                f"HTTPRoute {self.app} is not in {self.cluster.namespace} "
                f"(context '{self.cluster.context}'): the canary's traffic cannot be moved."
            )
        return route

    def _set_weights(self, weights: dict[str, int]) -> None:
        rules = copy.deepcopy(self._route()["spec"]["rules"])
        refs = rules[0]["backendRefs"]
        missing = set(weights) - {ref["name"] for ref in refs}
        if missing:
            raise DeployError(
                f"HTTPRoute {self.app} has no backend {', '.join(sorted(missing))}.",
                "Start the rollout again: it applies the stable and canary Services.",
            )
        for ref in refs:
            if ref["name"] in weights:
                ref["weight"] = weights[ref["name"]]
        self.cluster.patch(ROUTE_API, "HTTPRoute", self.app, {"spec": {"rules": rules}})
