"""Canary objects: a Gateway API HTTPRoute with weighted backends, and the same release as an
Argo Rollouts `Rollout` with an `AnalysisTemplate` for teams that run Argo.

The analysis asks Prometheus what :func:`shipway.deploy.analysis.analyse` asks the gateway's
counters, with the same :class:`~shipway.deploy.analysis.Checks` thresholds:

* **error rate**: the canary's 5xx share of ``shipway_requests_total``;
* **p99 latency**: ``histogram_quantile(0.99, ...)`` over
  ``shipway_request_duration_seconds_bucket``, against ``max_p99_ms`` or, when that is unset,
  against stable's p99 x ``max_p99_ratio`` + ``p99_slack_ms``.

Each query returns nothing while the canary has served fewer than ``min_requests`` requests
in the window: Argo counts a measurement that meets neither the success nor the failure
condition as *inconclusive*, and pauses once ``INCONCLUSIVE_INTERVALS`` of them pile up, as
the local controller does. While stable has too few requests the relative p99 check returns 0,
a pass (not compared), as in ``analyse``. The window is the analysis interval: keep it at
least twice Prometheus' scrape interval, or ``increase`` has too few samples.

The pods are told apart by the ``rollouts_pod_template_hash`` label, which Prometheus has
when its scrape configuration keeps pod labels (the usual ``labelmap`` of
``__meta_kubernetes_pod_label_(.+)``), and by ``namespace``.
"""

from __future__ import annotations

from typing import Any

from shipway.deploy.kubernetes.objects import (
    Names,
    Obj,
    Release,
    int_or_percent,
    labels,
    meta,
    selector,
    versioned,
)
from shipway.deploy.kubernetes.options import RenderOptions
from shipway.deploy.rollout import INCONCLUSIVE_INTERVALS

__all__ = ["GATEWAY_PLUGIN", "analysis_template", "http_route", "queries", "rollout"]

GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"
SERVICE_PORT = 80
NAMESPACE = "metadata.namespace"
TRACKS = ("canary", "stable")


def http_route(o: RenderOptions, app: str, backends: list[tuple[str, int]]) -> Obj:
    """One rule sending everything to `backends` ([(service, weight)]) through the Gateway."""
    gw_namespace, gw_name = o.gateway_ref
    parent: dict[str, Any] = {"name": gw_name}
    if gw_namespace:
        parent["namespace"] = gw_namespace
    spec: Obj = {"parentRefs": [parent]}
    if o.hostnames:
        spec["hostnames"] = list(o.hostnames)
    spec["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {"name": name, "port": SERVICE_PORT, "weight": weight} for name, weight in backends
            ],
        }
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta(app, labels(app, "model-server")),
        "spec": spec,
    }


def _steps(o: RenderOptions) -> list[Obj]:
    """`10,25,pause,50,100` as Argo steps: each weight is held for one analysis interval (the
    background analysis measures it meanwhile); `pause` waits for a promote."""
    steps: list[Obj] = []
    for step in o.parsed_steps:
        if step == "pause":
            steps.append({"pause": {}})
        else:
            steps += [{"setWeight": step}, {"pause": {"duration": o.interval}}]
    return steps


def rollout(
    o: RenderOptions, app: str, release: Release, template: Obj, *, replicas: int | None
) -> Obj:
    """A Rollout running `template` (the release's pod), routed by the Gateway API plugin."""
    names = Names(app)
    spec: Obj = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec |= {
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": max(600, o.startup_seconds + 120),
        "selector": {"matchLabels": selector(app)},
        "template": template,
        "strategy": {
            "canary": {
                "canaryService": names.track("canary"),
                "stableService": names.track("stable"),
                "maxSurge": int_or_percent(o.max_surge),
                "maxUnavailable": int_or_percent(o.max_unavailable),
                # The plugin needs the route's namespace: each overlay fills it in.
                "trafficRouting": {"plugins": {GATEWAY_PLUGIN: {"httpRoute": app}}},
                "analysis": {
                    "templates": [{"templateName": names.analysis}],
                    "startingStep": 1,
                    "args": [
                        {"name": "namespace", "valueFrom": {"fieldRef": {"fieldPath": NAMESPACE}}},
                        {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                        {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
                    ],
                },
                "steps": _steps(o),
            }
        },
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": meta(
            app, versioned(app, "model-server", release), {"shipway.dev/model-uri": release.uri}
        ),
        "spec": spec,
    }


def _sel(track: str) -> str:
    """The series of one track's pods, with Argo's `{{args.*}}` placeholders."""
    hash_arg = "{{args.%s-hash}}" % track  # noqa: UP031 (braces, not a format field)
    return f'namespace="{{{{args.namespace}}}}",rollouts_pod_template_hash="{hash_arg}"'


def queries(o: RenderOptions) -> dict[str, str]:
    """The PromQL of each metric: the error rate, and the p99 (absolute, or its excess over
    the bound stable sets). Each is empty while the canary has too few requests to judge; the
    relative p99 is 0 (a pass, not compared) while stable has too few, as in `analyse`."""
    w, checks = o.interval, o.checks
    need = {"canary": max(1, checks.min_requests), "stable": checks.min_requests}
    requests = {t: f"sum(increase(shipway_requests_total{{{_sel(t)}}}[{w}]))" for t in TRACKS}
    enough = {t: f"on() ({requests[t]} >= {need[t]})" for t in TRACKS}
    errors = f'sum(increase(shipway_requests_total{{{_sel("canary")},status=~"5.."}}[{w}]))'
    p99 = {
        t: "histogram_quantile(0.99, sum by (le) "
        f"(rate(shipway_request_duration_seconds_bucket{{{_sel(t)}}}[{w}])))"
        for t in TRACKS
    }
    out = {
        "error-rate": f"(\n  ({errors} or on() vector(0))\n  / {requests['canary']}\n)\n"
        f"and {enough['canary']}"
    }
    if checks.max_p99_ms is not None:
        out["p99-latency"] = f"{p99['canary']}\nand {enough['canary']}"
    else:
        ratio, slack = checks.max_p99_ratio, checks.p99_slack_ms / 1000
        excess = f"{p99['canary']}\n    - ({ratio:g} * {p99['stable']} + {slack:g})"
        out["p99-over-stable"] = (
            f"(\n  (\n    {excess}\n  ) and {enough['stable']}\n  or on() vector(0)\n)\n"
            f"and {enough['canary']}"
        )
    return out


def _conditions(name: str, o: RenderOptions) -> tuple[str, str]:
    if name == "error-rate":
        bound = f"{o.checks.max_error_rate:g}"
    elif name == "p99-latency":
        assert o.checks.max_p99_ms is not None
        bound = f"{o.checks.max_p99_ms / 1000:g}"
    else:
        bound = "0"  # the canary's p99 minus what stable allows it, in seconds
    return (
        f"len(result) > 0 && result[0] <= {bound}",
        f"len(result) > 0 && result[0] > {bound}",
    )


def analysis_template(o: RenderOptions, app: str) -> Obj:
    metrics = []
    for name, query in queries(o).items():
        success, failure = _conditions(name, o)
        metrics.append({
            "name": name,
            "interval": o.interval,
            "successCondition": success,
            "failureCondition": failure,
            "failureLimit": o.failure_limit - 1,  # Argo fails on the failure after this many
            "inconclusiveLimit": INCONCLUSIVE_INTERVALS - 1,
            "provider": {"prometheus": {"address": o.prometheus_url, "query": query}},
        })  # fmt: skip
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": meta(Names(app).analysis, labels(app, "model-server")),
        "spec": {
            "args": [{"name": "namespace"}, {"name": "canary-hash"}, {"name": "stable-hash"}],
            "metrics": metrics,
        },
    }
