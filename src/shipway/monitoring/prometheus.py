"""Monitoring results as Prometheus gauges, and a small server that exposes them.

:class:`MonitorCollector` is a prometheus-client custom collector: at every scrape it calls
``load`` (e.g. :func:`shipway.monitoring.history.latest_results`), keeps the newest result per
model and turns it into gauges. Nothing is cached between scrapes, so a run saved to the store
shows up at the next scrape and a model whose results are gone drops out (its series go stale).
With ``SHIPWAY_TRACKING_URI`` set, ``latest_results`` reads the team server's store through
its API, so the exporter can run anywhere Prometheus reaches.

Every series has a ``model`` label; runs that compared files or frames without a model are
labelled ``model="(files)"`` (:data:`NO_MODEL`). Model names start with a letter or digit, so
the two cannot clash, and unlike an empty value (which PromQL treats as "no label") the runs
stay visible in ``label_values`` and tables.

Gauges, each labelled ``model`` plus the labels shown (``*_ratio`` are shares from 0 to 1):

* run: ``shipway_monitor_last_run_timestamp_seconds`` (Unix time),
  ``shipway_monitor_model_version``, ``shipway_monitor_rows{source="reference"|"current"}``;
* drift: ``shipway_monitor_drift_score{column,method}`` (the test's statistic),
  ``shipway_monitor_drift_p_value{column,method}`` (statistical tests only),
  ``shipway_monitor_column_drifted{column}`` (0 or 1), ``shipway_monitor_tested_columns``,
  ``shipway_monitor_drifted_columns``, ``shipway_monitor_drifted_columns_ratio`` (drifted over
  tested), ``shipway_monitor_drifted_columns_threshold_ratio`` (the share at which the dataset
  counts as drifted), ``shipway_monitor_dataset_drifted`` (0 or 1), and for the model's outputs
  ``shipway_monitor_output_drift_score{column,method}`` and
  ``shipway_monitor_output_drifted{column}``;
* data quality: ``shipway_monitor_missing_ratio{column}``,
  ``shipway_monitor_reference_missing_ratio{column}``,
  ``shipway_monitor_out_of_range_ratio{column}``, ``shipway_monitor_new_categories{column}``,
  ``shipway_monitor_quality_findings{severity}`` (info, warning and critical, 0 included);
* performance: ``shipway_monitor_model_metric{metric}`` and
  ``shipway_monitor_reference_model_metric{metric}`` (accuracy, f1, roc_auc, log_loss, mae,
  rmse, ...), ``shipway_monitor_labelled_rows``;
* fairness: ``shipway_monitor_fairness_parity_ratio{sensitive}``,
  ``shipway_monitor_fairness_parity_threshold_ratio{sensitive}``,
  ``shipway_monitor_fairness_parity_difference{sensitive}``,
  ``shipway_monitor_fairness_equalized_odds_difference{sensitive}``,
  ``shipway_monitor_fairness_selection_ratio{sensitive,group}``;
* ``shipway_monitor_alerts{name,severity}``: the run's own alerts, counted;
* ``shipway_monitor_store_up`` (no labels): 0 when ``load`` failed at this scrape.

A value that is unknown (``None``, or NaN) is left out rather than exported as NaN; infinite
drift statistics are exported as ``+Inf``, which Prometheus compares like any number.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, get_args

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from shipway.monitoring.drift import ColumnDrift
from shipway.monitoring.quality import Severity
from shipway.monitoring.result import MonitorResult

__all__ = ["NO_MODEL", "MonitorCollector", "latest_per_model", "metrics_app", "serve_metrics"]

log = logging.getLogger(__name__)

NO_MODEL: Final = "(files)"
"""The ``model`` label value of runs made without a model."""

Loader = Callable[[], Iterable[MonitorResult]]

# name -> (help, labels after ``model``)
_GAUGES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "last_run_timestamp_seconds": ("Time of the latest monitoring run (Unix seconds).", ()),
    "model_version": ("Model version monitored by the latest run.", ()),
    "rows": ("Rows in the reference and current data of the latest run.", ("source",)),
    "drift_score": ("Drift statistic of a column (KS, PSI, distance, ...).", ("column", "method")),
    "drift_p_value": ("p-value of a column's statistical drift test.", ("column", "method")),
    "column_drifted": ("1 if the column drifted in the latest run, else 0.", ("column",)),
    "tested_columns": ("Columns the drift tests could check.", ()),
    "drifted_columns": ("Columns that drifted.", ()),
    "drifted_columns_ratio": ("Share of tested columns that drifted (0-1).", ()),
    "drifted_columns_threshold_ratio": ("Drifted share at which the dataset drifted.", ()),
    "dataset_drifted": ("1 if the dataset as a whole drifted, else 0.", ()),
    "output_drift_score": ("Drift statistic of a model output.", ("column", "method")),
    "output_drifted": ("1 if the model output drifted, else 0.", ("column",)),
    "missing_ratio": ("Share of missing values in the current data (0-1).", ("column",)),
    "reference_missing_ratio": ("Share of missing values in the reference (0-1).", ("column",)),
    "out_of_range_ratio": ("Share of values outside the reference's range (0-1).", ("column",)),
    "new_categories": ("Categories in the current data the reference never held.", ("column",)),
    "quality_findings": ("Data quality findings of the latest run.", ("severity",)),
    "model_metric": ("Model quality metric on the current data.", ("metric",)),
    "reference_model_metric": ("Model quality metric on the reference.", ("metric",)),
    "labelled_rows": ("Current rows with a ground-truth label.", ()),
    "fairness_parity_ratio": ("Demographic parity ratio (min/max selection rate).", ("sensitive",)),
    "fairness_parity_threshold_ratio": ("Parity ratio below which to alert.", ("sensitive",)),
    "fairness_parity_difference": ("Demographic parity difference.", ("sensitive",)),
    "fairness_equalized_odds_difference": ("Equalized odds difference.", ("sensitive",)),
    "fairness_selection_ratio": ("Share of a group predicted positive.", ("sensitive", "group")),
    "alerts": ("Alerts raised by the latest run.", ("name", "severity")),
}


def latest_per_model(results: Iterable[MonitorResult]) -> list[MonitorResult]:
    """The newest result of each model (and of the model-less runs), sorted by model."""
    newest: dict[str, MonitorResult] = {}
    for result in results:
        key = result.model or NO_MODEL
        if key not in newest or result.created_at > newest[key].created_at:
            newest[key] = result
    return [newest[key] for key in sorted(newest)]


class _Families:
    """Gauge families built on demand; only those that received a sample are collected."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily] = {}

    def set(self, name: str, model: str, labels: Sequence[str], value: float | None) -> None:
        if value is None or math.isnan(value):
            return
        family = self._families.get(name)
        if family is None:
            doc, names = _GAUGES[name]
            family = GaugeMetricFamily(f"shipway_monitor_{name}", doc, labels=["model", *names])
            self._families[name] = family
        family.add_metric([model, *labels], float(value))

    def collect(self) -> list[Metric]:
        return [self._families[name] for name in _GAUGES if name in self._families]


class MonitorCollector:
    """Gauges of the newest monitoring result per model, loaded at every scrape."""

    def __init__(self, load: Loader) -> None:
        self._load = load

    def describe(self) -> Iterable[Metric]:
        return []  # no load at registration time

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "shipway_monitor_store_up",
            "1 if the monitoring results could be loaded at this scrape, else 0.",
        )
        try:
            results = latest_per_model(self._load())
        except Exception:  # the store is down: say so in the exposition, do not fail the scrape
            log.exception("could not load the monitoring results")
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        families = _Families()
        for result in results:
            _add(families, result)
        yield from families.collect()


def _add(f: _Families, r: MonitorResult) -> None:
    m = r.model or NO_MODEL
    f.set("last_run_timestamp_seconds", m, (), r.created_at.timestamp())
    f.set("model_version", m, (), r.version)
    f.set("rows", m, ("reference",), r.reference.rows)
    f.set("rows", m, ("current",), r.current.rows)

    _add_drift(f, m, r.drift.columns, "drift_score", "column_drifted", p_values=True)
    f.set("tested_columns", m, (), r.drift.n_tested)
    f.set("drifted_columns", m, (), r.drift.n_drifted)
    f.set("drifted_columns_ratio", m, (), r.drift.share_drifted)
    f.set("drifted_columns_threshold_ratio", m, (), r.drift.share)
    if r.drift.share_drifted is not None:
        f.set("dataset_drifted", m, (), float(r.drift.drifted))
    _add_drift(f, m, r.score_drift, "output_drift_score", "output_drifted")

    for q in r.quality.columns:
        f.set("missing_ratio", m, (q.column,), q.missing_rate)
        f.set("reference_missing_ratio", m, (q.column,), q.reference_missing_rate)
        f.set("out_of_range_ratio", m, (q.column,), q.out_of_range_share)
        f.set("new_categories", m, (q.column,), q.new_category_count)
    findings = Counter(finding.severity for finding in r.quality.findings)
    for severity in get_args(Severity):
        f.set("quality_findings", m, (severity,), findings[severity])

    perf = r.performance
    if perf is not None:
        for metric, value in perf.metrics.items():
            f.set("model_metric", m, (metric,), value)
        for metric, value in (perf.reference_metrics or {}).items():
            f.set("reference_model_metric", m, (metric,), value)
        f.set("labelled_rows", m, (), perf.labelled)

    fair = r.fairness
    if fair is not None:
        s = (fair.sensitive,)
        f.set("fairness_parity_ratio", m, s, fair.demographic_parity_ratio)
        f.set("fairness_parity_threshold_ratio", m, s, fair.ratio_threshold)
        f.set("fairness_parity_difference", m, s, fair.demographic_parity_difference)
        f.set("fairness_equalized_odds_difference", m, s, fair.equalized_odds_difference)
        for g in fair.groups:
            f.set("fairness_selection_ratio", m, (*s, str(g.group)), g.selection_rate)

    alerts = Counter((a.name, a.severity) for a in r.alerts)
    for (name, severity), count in sorted(alerts.items()):
        f.set("alerts", m, (name, severity), count)


def _add_drift(
    f: _Families,
    model: str,
    columns: Iterable[ColumnDrift],
    score: str,
    drifted: str,
    *,
    p_values: bool = False,
) -> None:
    for c in columns:
        if c.statistic is None:  # skipped: nothing was tested
            continue
        f.set(score, model, (c.column, c.method), c.statistic)
        if p_values:
            f.set("drift_p_value", model, (c.column, c.method), c.p_value)
        f.set(drifted, model, (c.column,), float(c.drifted))


# --------------------------------------------------------------------------- the server


def metrics_app(load: Loader) -> Starlette:
    """An ASGI app exposing the gauges of ``load()`` (called at every scrape).

    ``GET /metrics`` (Prometheus text format, or OpenMetrics when the scraper asks for it),
    ``GET /-/healthy``, ``GET /openapi.json`` and ``GET /docs``. ``load`` may block: it runs
    in a worker thread.
    """
    from shipway import __version__
    from shipway.serving import openapi

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(load))

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encoder, registry)
        return Response(body, headers={"Content-Type": content_type})

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("Shipway monitoring metrics are healthy.\n")

    table = [
        openapi.Endpoint(
            "GET",
            "/metrics",
            metrics,
            "Monitoring results as Prometheus gauges",
            "metrics",
            description="The newest result per model, loaded from the store (or the team "
            "server) at every scrape. `shipway_monitor_store_up` is 0 when it could not be read.",
            errors=(),
        ),
        openapi.Endpoint(
            "GET", "/-/healthy", healthy, "Liveness of this server", "health", errors=()
        ),
    ]
    title = "Shipway monitoring metrics"
    spec = openapi.spec(
        table, title, "Drift, data quality, performance and fairness gauges.", __version__
    )

    async def spec_endpoint(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(openapi.docs_page(title))

    return Starlette(
        routes=[Route(e.path, e.handler, methods=[e.method]) for e in table]
        + [
            Route("/openapi.json", spec_endpoint, include_in_schema=False),
            Route("/docs", docs, include_in_schema=False),
        ]
    )


def serve_metrics(host: str, port: int, load: Loader, *, log_level: str = "info") -> None:
    """Serve :func:`metrics_app` on ``host:port`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(metrics_app(load), host=host, port=port, log_level=log_level)
