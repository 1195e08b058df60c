"""Canary analysis numbers from Prometheus: the :class:`~shipway.deploy.analysis.MetricsSource`
of a cluster.

Each ``stats(track, start, end)`` is three instant queries at ``end`` over the window
``end - start`` of the model servers' own metrics:

* requests: ``sum(increase(shipway_requests_total{SEL}[W]))``
* errors: the same with ``status=~"5.."``
* p99: ``histogram_quantile(0.99, sum by (le) (rate(BUCKETS[W])))``, where ``BUCKETS`` is
  ``shipway_request_duration_seconds_bucket{SEL}``

``SEL`` picks one track's pods: ``namespace``, the app and the track labels. The rendered pods
carry ``app.kubernetes.io/name`` and ``shipway.dev/track``; Prometheus has them as
``app_kubernetes_io_name`` and ``shipway_dev_track`` when its scrape configuration keeps pod
labels (the usual ``labelmap`` of ``__meta_kubernetes_pod_label_(.+)``). Other names can be
given. ``increase`` extrapolates, so counts are rounded; keep the interval at least twice the
scrape interval, or there are too few samples to count.
"""

from __future__ import annotations

import math
import re

import httpx

from shipway.deploy.analysis import TrackStats
from shipway.errors import DeployError

__all__ = ["PrometheusMetricsSource"]

LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class PrometheusMetricsSource:
    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        app: str,
        track_label: str = "shipway_dev_track",
        app_label: str = "app_kubernetes_io_name",
        namespace_label: str = "namespace",
        timeout_s: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        for label in (track_label, app_label, namespace_label):
            if not LABEL.fullmatch(label):
                raise ValueError(f"'{label}' is not a Prometheus label name")
        self.url = url.rstrip("/")
        self.matchers = f'{namespace_label}="{namespace}",{app_label}="{app}"'
        self.track_label = track_label
        self.http = http or httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def queries(self, track: str, window_s: float) -> dict[str, str]:
        sel = f'{self.matchers},{self.track_label}="{track}"'
        w = f"{max(1, round(window_s))}s"
        return {
            "requests": f"sum(increase(shipway_requests_total{{{sel}}}[{w}]))",
            "errors": f'sum(increase(shipway_requests_total{{{sel},status=~"5.."}}[{w}]))',
            "p99": "histogram_quantile(0.99, sum by (le) "
            f"(rate(shipway_request_duration_seconds_bucket{{{sel}}}[{w}])))",
        }

    def stats(self, track: str, start: float, end: float) -> TrackStats:
        values = {name: self._query(q, end) for name, q in self.queries(track, end - start).items()}
        requests, errors, p99 = values["requests"], values["errors"], values["p99"]
        return TrackStats(
            requests=round(requests or 0.0),
            errors=round(errors or 0.0),
            p99_ms=None if p99 is None or not requests else p99 * 1000,
        )

    def _query(self, query: str, at: float) -> float | None:
        """The single value of an instant query; None for an empty result or NaN."""
        try:
            response = self.http.post(
                f"{self.url}/api/v1/query", data={"query": query, "time": f"{at:.3f}"}
            )
        except httpx.HTTPError as exc:
            raise DeployError(
                f"Cannot reach Prometheus at {self.url}: {exc}.",
                "Check --prometheus-url (port-forward it, or give its in-cluster address).",
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            raise DeployError(
                f"Prometheus at {self.url} refused a query (HTTP {response.status_code}): "
                f"{body.get('errorType', '')} {body.get('error', response.text[:200])}".strip(),
                f"The query was: {query}",
            )
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value
