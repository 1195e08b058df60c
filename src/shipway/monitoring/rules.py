"""Prometheus alerting rules for monitored models and the model server.

:func:`rules_yaml` writes a rule file for Prometheus' ``rule_files`` (``promtool check rules``
passes on it); :func:`alert_rules` returns the same as a dict. Six groups:

* ``shipway-drift``: the share of drifted columns reaches ``drift_share`` (warning), a column
  drifted (info), a model output (its scores) drifted (warning);
* ``shipway-data-quality``: a column's missing share rose by more than ``missing_rate_increase``
  over the reference (warning) or ``missing_rate_critical`` (critical), more than
  ``out_of_range`` of a column's values lie outside the reference's range (warning), the run
  found a critical quality problem (critical);
* ``shipway-performance``: a model metric is worse than on the reference by more than
  ``performance_drop``, relative (warning; lower is better for mae, rmse and log_loss);
* ``shipway-fairness``: the demographic parity ratio fell below ``parity_ratio`` (warning),
  the equalized odds difference exceeds ``equalized_odds_difference`` (warning);
* ``shipway-monitoring``: no monitoring run for ``stale_after``, or the metrics server cannot
  read the store (warning);
* ``shipway-serving``: p99 latency above ``latency_p99_seconds`` and 5xx share above
  ``error_rate`` over ``rate_window`` (critical), requests rejected as overloaded and
  prediction log records dropped (warning).

The monitoring gauges hold the latest run's values between runs, so their alerts use a short
``for_`` (only a brief scrape hiccup should not page anyone); the serving alerts are about live
traffic and wait ``serving_for``. Both the warning and the critical missing-values alert fire
for a large increase: route the pair with an Alertmanager inhibit rule on ``severity``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml

from shipway.errors import InvalidInputError

__all__ = ["HIGHER_IS_BETTER", "LOWER_IS_BETTER", "alert_rules", "rules_yaml"]

HIGHER_IS_BETTER: Final = ("accuracy", "precision", "recall", "f1", "roc_auc", "r2")
LOWER_IS_BETTER: Final = ("log_loss", "mae", "rmse")

_DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_UNIT_SECONDS: Final = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}


def alert_rules(
    *,
    drift_share: float = 0.5,
    missing_rate_increase: float = 0.05,
    missing_rate_critical: float = 0.2,
    out_of_range: float = 0.1,
    performance_drop: float = 0.1,
    parity_ratio: float = 0.8,
    equalized_odds_difference: float = 0.1,
    latency_p99_seconds: float = 0.5,
    error_rate: float = 0.05,
    rate_window: str = "5m",
    stale_after: str = "2d",
    for_: str = "5m",
    serving_for: str = "10m",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The rule file as a dict (see the module docstring for what each threshold does).

    Shares and rates are fractions (0.05 is 5%). Durations are Prometheus durations
    (``30s``, ``5m``, ``1h30m``). ``labels`` are added to every alert, e.g. ``{"team": "ml"}``.
    """
    for name, value in {
        "drift_share": drift_share,
        "missing_rate_increase": missing_rate_increase,
        "missing_rate_critical": missing_rate_critical,
        "out_of_range": out_of_range,
        "performance_drop": performance_drop,
        "parity_ratio": parity_ratio,
        "equalized_odds_difference": equalized_odds_difference,
        "error_rate": error_rate,
    }.items():
        if not 0 <= value <= 1:
            raise InvalidInputError(f"{name} must be a fraction from 0 to 1, got {value}.")
    if not (math.isfinite(latency_p99_seconds) and latency_p99_seconds > 0):
        raise InvalidInputError(
            f"latency_p99_seconds must be a positive number, got {latency_p99_seconds}."
        )
    for name, duration in {
        "rate_window": rate_window,
        "stale_after": stale_after,
        "for_": for_,
        "serving_for": serving_for,
    }.items():
        _check_duration(name, duration)
    extra = dict(labels or {})
    if "severity" in extra:
        raise InvalidInputError("labels cannot set 'severity': each alert sets its own.")

    def rule(
        alert: str, expr: str, severity: str, summary: str, description: str, wait: str
    ) -> dict[str, Any]:
        return {
            "alert": alert,
            "expr": expr,
            "for": wait,
            "labels": {"severity": severity, **extra},
            "annotations": {"summary": summary, "description": description},
        }

    w = rate_window
    on_model = "{{ $labels.model }}"
    column = "column {{ $labels.column }} of {{ $labels.model }}"
    drift = [
        rule(
            "ShipwayDatasetDrift",
            f"shipway_monitor_drifted_columns_ratio >= {_num(drift_share)}",
            "warning",
            f"Data drift on {on_model}",
            "{{ $value | humanizePercentage }} of the columns tested for "
            + on_model
            + f" drifted in the latest monitoring run (alert at {_pct(drift_share)}).",
            for_,
        ),
        rule(
            "ShipwayColumnDrift",
            "shipway_monitor_column_drifted == 1",
            "info",
            f"Drift in {column}",
            f"The latest monitoring run found that {column} drifted from the reference.",
            for_,
        ),
        rule(
            "ShipwayModelOutputDrift",
            "shipway_monitor_output_drifted == 1",
            "warning",
            f"Prediction drift on {on_model}",
            "The distribution of output {{ $labels.column }} of "
            + on_model
            + " drifted from its distribution on the reference.",
            for_,
        ),
    ]
    missing_increase = "shipway_monitor_missing_ratio - shipway_monitor_reference_missing_ratio"
    missing_description = (
        "Missing values in "
        + column
        + " rose by {{ $value | humanizePercentage }} over the reference (alert at {t})."
    )
    quality = [
        rule(
            "ShipwayMissingValuesIncrease",
            f"{missing_increase} > {_num(missing_rate_increase)}",
            "warning",
            f"More missing values in {column}",
            missing_description.replace("{t}", _pct(missing_rate_increase)),
            for_,
        ),
        rule(
            "ShipwayMissingValuesIncrease",
            f"{missing_increase} > {_num(missing_rate_critical)}",
            "critical",
            f"Many more missing values in {column}",
            missing_description.replace("{t}", _pct(missing_rate_critical)),
            for_,
        ),
        rule(
            "ShipwayValuesOutOfRange",
            f"shipway_monitor_out_of_range_ratio > {_num(out_of_range)}",
            "warning",
            f"Values out of the reference range in {column}",
            "{{ $value | humanizePercentage }} of the values of "
            + column
            + f" lie outside the reference's range (alert above {_pct(out_of_range)}).",
            for_,
        ),
        rule(
            "ShipwayDataQualityCritical",
            'shipway_monitor_quality_findings{severity="critical"} > 0',
            "critical",
            f"Critical data quality problems on {on_model}",
            "The latest monitoring run of "
            + on_model
            + " found {{ $value }} critical data quality problem(s): see "
            "`shipway monitor show` for which.",
            for_,
        ),
    ]
    higher, lower = "|".join(HIGHER_IS_BETTER), "|".join(LOWER_IS_BETTER)
    relative_loss = (
        "(\n"
        f'  (shipway_monitor_reference_model_metric{{metric=~"{higher}"}}'
        " - shipway_monitor_model_metric)\n"
        f'  / shipway_monitor_reference_model_metric{{metric=~"{higher}"}}\n'
        "or\n"
        f'  (shipway_monitor_model_metric{{metric=~"{lower}"}}'
        " - shipway_monitor_reference_model_metric)\n"
        f'  / shipway_monitor_reference_model_metric{{metric=~"{lower}"}}\n'
        f") > {_num(performance_drop)}"
    )
    performance = [
        rule(
            "ShipwayModelPerformanceDrop",
            relative_loss,
            "warning",
            "{{ $labels.metric }} of " + on_model + " dropped",
            "{{ $labels.metric }} of "
            + on_model
            + " is {{ $value | humanizePercentage }} worse than on the reference"
            f" (alert above {_pct(performance_drop)}).",
            for_,
        ),
    ]
    fairness = [
        rule(
            "ShipwayFairnessParity",
            f"shipway_monitor_fairness_parity_ratio < {_num(parity_ratio)}",
            "warning",
            f"Unequal selection rates by {{{{ $labels.sensitive }}}} on {on_model}",
            "The demographic parity ratio of "
            + on_model
            + ' across {{ $labels.sensitive }} is {{ $value | printf "%.2f" }}'
            f" (alert below {_num(parity_ratio)}).",
            for_,
        ),
        rule(
            "ShipwayFairnessEqualizedOdds",
            "shipway_monitor_fairness_equalized_odds_difference"
            f" > {_num(equalized_odds_difference)}",
            "warning",
            f"Unequal error rates by {{{{ $labels.sensitive }}}} on {on_model}",
            "The equalized odds difference of "
            + on_model
            + ' across {{ $labels.sensitive }} is {{ $value | printf "%.2f" }}'
            f" (alert above {_num(equalized_odds_difference)}).",
            for_,
        ),
    ]
    monitoring = [
        rule(
            "ShipwayMonitoringStale",
            f"time() - shipway_monitor_last_run_timestamp_seconds > {_num(_seconds(stale_after))}",
            "warning",
            f"No recent monitoring run for {on_model}",
            "The latest monitoring run of "
            + on_model
            + " is {{ $value | humanizeDuration }} old (alert after "
            + stale_after
            + ").",
            for_,
        ),
        rule(
            "ShipwayMonitoringStoreDown",
            "shipway_monitor_store_up == 0",
            "warning",
            "The monitoring metrics server cannot read the store",
            "{{ $labels.instance }} could not load monitoring results: its logs say why.",
            for_,
        ),
    ]
    requests = "shipway_requests_total"
    serving = [
        rule(
            "ShipwayHighLatency",
            "histogram_quantile(\n  0.99,\n  sum by (model, le) "
            f"(rate(shipway_request_duration_seconds_bucket[{w}]))\n"
            f") > {_num(latency_p99_seconds)}",
            "warning",
            f"Slow predictions from {on_model}",
            "The 99th percentile latency of " + on_model + " is {{ $value | humanizeDuration }}"
            f" (alert above {_num(latency_p99_seconds)}s).",
            serving_for,
        ),
        rule(
            "ShipwayHighErrorRate",
            f'sum by (model) (rate({requests}{{status=~"5.."}}[{w}]))\n'
            f"/\nsum by (model) (rate({requests}[{w}]))\n> {_num(error_rate)}",
            "critical",
            f"Server errors from {on_model}",
            "{{ $value | humanizePercentage }} of the requests to "
            + on_model
            + f" failed with a 5xx status (alert above {_pct(error_rate)}).",
            serving_for,
        ),
        rule(
            "ShipwayServerOverloaded",
            f"sum by (model) (rate(shipway_overload_rejections_total[{w}])) > 0",
            "warning",
            f"Requests to {on_model} rejected as overload",
            "The server rejects {{ $value | humanize }} requests/s to "
            + on_model
            + ": add workers or replicas, or raise its queue limits.",
            serving_for,
        ),
        rule(
            "ShipwayPredictionLogDropping",
            f"sum by (model) (increase(shipway_prediction_log_dropped_total[{w}])) > 0",
            "warning",
            f"Prediction log records of {on_model} dropped",
            "{{ $value | humanize }} prediction log records of "
            + on_model
            + " were dropped: monitoring sees only part of the traffic.",
            serving_for,
        ),
    ]
    return {
        "groups": [
            {"name": "shipway-drift", "rules": drift},
            {"name": "shipway-data-quality", "rules": quality},
            {"name": "shipway-performance", "rules": performance},
            {"name": "shipway-fairness", "rules": fairness},
            {"name": "shipway-monitoring", "rules": monitoring},
            {"name": "shipway-serving", "rules": serving},
        ]
    }


def rules_yaml(**options: Any) -> str:
    """:func:`alert_rules` (same keyword arguments) as a Prometheus rule file."""
    from shipway import __version__

    header = (
        f"# Prometheus alerting rules for Shipway {__version__} models and model servers.\n"
        "# Made by `shipway monitor export-rules`; check with `promtool check rules FILE`.\n"
    )
    return header + yaml.dump(
        alert_rules(**options), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, which keep them readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _check_duration(name: str, value: str) -> None:
    if not _DURATION.match(value):
        raise InvalidInputError(
            f"{name} must be a Prometheus duration such as 30s, 5m or 1h30m, got {value!r}."
        )


def _seconds(duration: str) -> float:
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def _num(value: float) -> str:
    """A PromQL number literal: ``0.05``, ``1e-05``, ``172800``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _pct(value: float) -> str:
    return f"{value * 100:g}%"
