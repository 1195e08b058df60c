"""A Grafana dashboard for served and monitored models.

:func:`grafana_dashboard` returns dashboard JSON in Grafana's current model (schema version 39,
Grafana 10 and later): import it with *Dashboards > New > Import*, or provision it from a file.
It asks no import questions: the Prometheus data source is a template variable (``datasource``)
that every panel and query uses, so the dashboard works with any data source, and a ``model``
variable (several or all) filters every panel.

Rows: an overview (time since the last monitoring run, dataset drift, critical findings, alerts
firing), serving (throughput, latency p50/p99, error rate, batch size, overload and dropped
prediction logs, from the model server's metrics), drift, data quality, model performance and
fairness (from :mod:`shipway.monitoring.prometheus`'s gauges), and the alerts firing, from
Prometheus' ``ALERTS`` series for the rules of :mod:`shipway.monitoring.rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["SCHEMA_VERSION", "dashboard_queries", "grafana_dashboard"]

SCHEMA_VERSION: Final = 39

_DS: Final = {"type": "prometheus", "uid": "${datasource}"}
_M: Final = 'model=~"$model"'
_RATE: Final = "$__rate_interval"

Panel = dict[str, Any]


def grafana_dashboard(
    *,
    datasource_uid: str | None = None,
    title: str = "Shipway models",
    uid: str = "shipway-models",
    drift_share: float = 0.5,
    parity_ratio: float = 0.8,
    latency_p99_seconds: float = 0.5,
    error_rate: float = 0.05,
) -> dict[str, Any]:
    """The dashboard JSON (a dict: ``json.dumps`` it).

    ``datasource_uid`` preselects a Prometheus data source (otherwise Grafana picks the default
    one). The thresholds draw the lines of the matching alerting rules: pass the values given to
    :func:`shipway.monitoring.rules.alert_rules`.
    """
    rows: list[tuple[str, list[Panel]]] = [
        ("Overview", _overview(drift_share)),
        ("Serving", _serving(latency_p99_seconds, error_rate)),
        ("Drift", _drift(drift_share)),
        ("Data quality", _quality()),
        ("Model performance", _performance()),
        ("Fairness", _fairness(parity_ratio)),
        ("Alerts", _alerts()),
    ]
    datasource: dict[str, Any] = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "skipUrlSync": False,
    }
    if datasource_uid:
        datasource["current"] = {"selected": True, "text": datasource_uid, "value": datasource_uid}
    models = (
        'label_values({__name__=~"shipway_model_info|shipway_monitor_last_run_timestamp_seconds"}'
        ", model)"
    )
    model: dict[str, Any] = {
        "name": "model",
        "label": "Model",
        "type": "query",
        "datasource": _DS,
        "definition": models,
        "query": models,
        "regex": "",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "options": [],
        "refresh": 2,
        "skipUrlSync": False,
        "sort": 1,
    }
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Serving, drift, data quality, performance and fairness of Shipway models.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": _layout(rows),
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["shipway", "mlops"],
        "templating": {"list": [datasource, model]},
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of ``dashboard``'s panels, in order (for checking them)."""
    out: list[str] = []
    for panel in dashboard["panels"]:
        for nested in [panel, *panel.get("panels", [])]:
            out.extend(t["expr"] for t in nested.get("targets", []))
    return out


# --------------------------------------------------------------------------- panels


def _target(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False, ref: str = "A"
) -> dict[str, Any]:
    """A query; ``table`` (instant) gives one row per series for table panels."""
    return {
        "datasource": _DS,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        "range": not (instant or table),
        "instant": instant or table,
        "format": "table" if table else "time_series",
    }


def _thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def _timeseries(
    title: str,
    targets: Sequence[dict[str, Any]],
    *,
    unit: str = "short",
    width: int = 8,
    description: str = "",
    line: float | None = None,
    below_is_bad: bool = False,
    bounds: tuple[float, float] | None = None,
    step: bool = True,
) -> Panel:
    """A time series; ``line`` draws a dashed threshold (red above it, or below it).

    ``step``: the value holds until the next one (a monitoring run's gauges), rather than a
    rate that changes continuously.
    """
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineInterpolation": "stepAfter" if step else "linear",
            "showPoints": "never",
            "spanNulls": False,
            "fillOpacity": 0,
            "thresholdsStyle": {"mode": "off" if line is None else "dashed"},
        },
        "color": {"mode": "palette-classic"},
        "thresholds": _thresholds(("green", None)),
    }
    if line is not None:
        defaults["thresholds"] = (
            _thresholds(("red", None), ("green", line))
            if below_is_bad
            else _thresholds(("green", None), ("red", line))
        )
    if bounds is not None:
        defaults["min"], defaults["max"] = bounds
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": _DS,
        "targets": list(targets),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_width": width,
    }


def _stat(title: str, expr: str, legend: str, *, unit: str = "short", steps: Any = None) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "datasource": _DS,
        "targets": [_target(expr, legend, instant=True)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "thresholds"},
                "thresholds": steps or _thresholds(("green", None)),
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        },
        "_width": 6,
    }


def _table(title: str, expr: str, *, value: str, width: int = 12, description: str = "") -> Panel:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": _DS,
        "targets": [_target(expr, table=True)],
        "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True,
                        "__name__": True,
                        "job": True,
                        "instance": True,
                    },
                    "renameByName": {"Value": value},
                },
            }
        ],
        "_width": width,
    }


def _overview(drift_share: float) -> list[Panel]:
    return [
        _stat(
            "Time since the last monitoring run",
            f"time() - shipway_monitor_last_run_timestamp_seconds{{{_M}}}",
            "{{model}}",
            unit="s",
            steps=_thresholds(("green", None), ("orange", 86400), ("red", 172800)),
        ),
        _stat(
            "Drifted columns",
            f"shipway_monitor_drifted_columns_ratio{{{_M}}}",
            "{{model}}",
            unit="percentunit",
            steps=_thresholds(("green", None), ("red", drift_share)),
        ),
        _stat(
            "Critical data quality findings",
            f'shipway_monitor_quality_findings{{{_M}, severity="critical"}}',
            "{{model}}",
            steps=_thresholds(("green", None), ("red", 1)),
        ),
        _stat(
            "Alerts firing",
            'count(ALERTS{alertstate="firing", alertname=~"Shipway.+"}) or vector(0)',
            "alerts",
            steps=_thresholds(("green", None), ("red", 1)),
        ),
    ]


def _serving(latency: float, error_rate: float) -> list[Panel]:
    requests = f"shipway_requests_total{{{_M}}}"
    duration = f"shipway_request_duration_seconds_bucket{{{_M}}}"
    batch = "shipway_batch_size"
    return [
        _timeseries(
            "Throughput",
            [_target(f"sum by (model) (rate({requests}[{_RATE}]))", "{{model}}")],
            unit="reqps",
            step=False,
        ),
        _timeseries(
            "Latency p50 / p99",
            [
                _target(
                    f"histogram_quantile(0.5, sum by (model, le) (rate({duration}[{_RATE}])))",
                    "{{model}} p50",
                ),
                _target(
                    f"histogram_quantile(0.99, sum by (model, le) (rate({duration}[{_RATE}])))",
                    "{{model}} p99",
                    ref="B",
                ),
            ],
            unit="s",
            line=latency,
            step=False,
        ),
        _timeseries(
            "Error rate (5xx)",
            [
                _target(
                    f'sum by (model) (rate(shipway_requests_total{{{_M}, status=~"5.."}}'
                    f"[{_RATE}]))\n/\nsum by (model) (rate({requests}[{_RATE}]))",
                    "{{model}}",
                )
            ],
            unit="percentunit",
            line=error_rate,
            step=False,
        ),
        _timeseries(
            "Batch size (rows per predict call)",
            [
                _target(
                    f"sum by (model) (rate({batch}_sum{{{_M}}}[{_RATE}]))\n/\n"
                    f"sum by (model) (rate({batch}_count{{{_M}}}[{_RATE}]))",
                    "{{model}} mean",
                ),
                _target(
                    "histogram_quantile(0.99, sum by (model, le) "
                    f"(rate({batch}_bucket{{{_M}}}[{_RATE}])))",
                    "{{model}} p99",
                    ref="B",
                ),
            ],
            width=12,
            step=False,
        ),
        _timeseries(
            "Overload rejections and dropped prediction logs",
            [
                _target(
                    f"sum by (model) (rate(shipway_overload_rejections_total{{{_M}}}[{_RATE}]))",
                    "{{model}} rejected",
                ),
                _target(
                    f"sum by (model) (rate(shipway_prediction_log_dropped_total{{{_M}}}[{_RATE}]))",
                    "{{model}} log dropped",
                    ref="B",
                ),
            ],
            unit="reqps",
            width=12,
            step=False,
        ),
    ]


def _drift(drift_share: float) -> list[Panel]:
    return [
        _timeseries(
            "Dataset drift (share of drifted columns)",
            [_target(f"shipway_monitor_drifted_columns_ratio{{{_M}}}", "{{model}}")],
            unit="percentunit",
            line=drift_share,
            bounds=(0, 1),
            width=12,
            description="Per monitoring run: drifted columns over tested columns.",
        ),
        _table(
            "Drifted columns",
            f"shipway_monitor_drift_score{{{_M}}}\n"
            f"and on (model, column) (shipway_monitor_column_drifted{{{_M}}} == 1)",
            value="score",
            description="Columns that drifted in the latest run, with their test and statistic.",
        ),
        _timeseries(
            "Drift score per column",
            [_target(f"shipway_monitor_drift_score{{{_M}}}", "{{model}} {{column}} ({{method}})")],
            width=12,
            description="Statistic of each column's drift test (p-value tests: the statistic).",
        ),
        _timeseries(
            "Model output drift",
            [
                _target(
                    f"shipway_monitor_output_drift_score{{{_M}}}",
                    "{{model}} {{column}} ({{method}})",
                )
            ],
            width=12,
        ),
    ]


def _quality() -> list[Panel]:
    return [
        _timeseries(
            "Missing values",
            [
                _target(f"shipway_monitor_missing_ratio{{{_M}}}", "{{model}} {{column}}"),
                _target(
                    f"shipway_monitor_reference_missing_ratio{{{_M}}} > 0",
                    "{{model}} {{column}} (reference)",
                    ref="B",
                ),
            ],
            unit="percentunit",
            bounds=(0, 1),
        ),
        _timeseries(
            "Values outside the reference range",
            [_target(f"shipway_monitor_out_of_range_ratio{{{_M}}}", "{{model}} {{column}}")],
            unit="percentunit",
            bounds=(0, 1),
        ),
        _timeseries(
            "Data quality findings",
            [
                _target(
                    f'shipway_monitor_quality_findings{{{_M}, severity=~"warning|critical"}}',
                    "{{model}} {{severity}}",
                )
            ],
        ),
    ]


def _performance() -> list[Panel]:
    return [
        _timeseries(
            "Model metrics",
            [
                _target(f"shipway_monitor_model_metric{{{_M}}}", "{{model}} {{metric}}"),
                _target(
                    f"shipway_monitor_reference_model_metric{{{_M}}}",
                    "{{model}} {{metric}} (reference)",
                    ref="B",
                ),
            ],
            width=16,
        ),
        _timeseries(
            "Rows checked",
            [
                _target(f"shipway_monitor_rows{{{_M}}}", "{{model}} {{source}}"),
                _target(f"shipway_monitor_labelled_rows{{{_M}}}", "{{model}} labelled", ref="B"),
            ],
        ),
    ]


def _fairness(parity_ratio: float) -> list[Panel]:
    return [
        _timeseries(
            "Demographic parity ratio",
            [_target(f"shipway_monitor_fairness_parity_ratio{{{_M}}}", "{{model}} {{sensitive}}")],
            unit="percentunit",
            line=parity_ratio,
            below_is_bad=True,
            bounds=(0, 1),
            description="Lowest over highest selection rate across groups (four-fifths rule).",
        ),
        _timeseries(
            "Equalized odds difference",
            [
                _target(
                    f"shipway_monitor_fairness_equalized_odds_difference{{{_M}}}",
                    "{{model}} {{sensitive}}",
                )
            ],
            bounds=(0, 1),
        ),
        _timeseries(
            "Selection rate per group",
            [
                _target(
                    f"shipway_monitor_fairness_selection_ratio{{{_M}}}",
                    "{{model}} {{sensitive}}={{group}}",
                )
            ],
            unit="percentunit",
            bounds=(0, 1),
        ),
    ]


def _alerts() -> list[Panel]:
    return [
        _table(
            "Prometheus alerts firing",
            f'ALERTS{{alertstate="firing", alertname=~"Shipway.+", {_M}}}',
            value="firing",
            description="Alerts of the Shipway rule file (`shipway monitor export-rules`).",
        ),
        _table(
            "Alerts of the latest monitoring runs",
            f"shipway_monitor_alerts{{{_M}}} > 0",
            value="count",
        ),
    ]


def _layout(rows: Sequence[tuple[str, Sequence[Panel]]]) -> list[Panel]:
    """Place the panels left to right, wrapping at 24 columns, under one row panel each."""
    out: list[Panel] = []
    y = 0
    ids = iter(range(1, 1000))
    for title, panels in rows:
        out.append(
            {
                "type": "row",
                "title": title,
                "id": next(ids),
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        y += 1
        x = line_height = 0
        for panel in panels:
            width = panel.pop("_width")
            height = 4 if panel["type"] == "stat" else 8
            if x + width > 24:
                x, y, line_height = 0, y + line_height, 0
            out.append(
                {"id": next(ids), **panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}}
            )
            x += width
            line_height = max(line_height, height)
        y += line_height
    return out
