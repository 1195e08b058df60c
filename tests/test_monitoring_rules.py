"""Alerting rules and the Grafana dashboard, checked by the real ``promtool``.

``promtool check rules`` lints the exported rule file; ``promtool test rules`` runs each alert
against input series (one that should fire, one that should not) and compares the alerts,
rendered annotations included; every dashboard query is parsed by promtool as a recording rule.
promtool comes with the Debian package ``prometheus`` (``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from servers import promtool
from shipway.errors import InvalidInputError
from shipway.monitoring.dashboard import SCHEMA_VERSION, dashboard_queries, grafana_dashboard
from shipway.monitoring.rules import alert_rules, rules_yaml


def run_promtool(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def alert_names(rules: dict[str, Any]) -> set[str]:
    return {r["alert"] for g in rules["groups"] for r in g["rules"]}


# =============================================================================
# The rule file
# =============================================================================


def test_default_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "shipway-rules.yml"
    path.write_text(rules_yaml())
    output = run_promtool("check", "rules", path)
    assert "SUCCESS: 16 rules found" in output


def test_custom_rules_pass_promtool_check(tmp_path: Path) -> None:
    text = rules_yaml(
        drift_share=0.3,
        missing_rate_increase=0.00001,
        latency_p99_seconds=0.25,
        error_rate=0.01,
        rate_window="2m",
        stale_after="1h30m",
        for_="0s",
        serving_for="1m",
        labels={"team": "ml", "service": "credit api"},
    )
    path = tmp_path / "rules.yml"
    path.write_text(text)
    run_promtool("check", "rules", path)
    rules = yaml.safe_load(text)
    exprs = {r["alert"] + r["labels"]["severity"]: r for g in rules["groups"] for r in g["rules"]}
    assert exprs["ShipwayDatasetDriftwarning"]["expr"].endswith(">= 0.3")
    assert exprs["ShipwayMissingValuesIncreasewarning"]["expr"].endswith("> 1e-05")
    assert exprs["ShipwayMonitoringStalewarning"]["expr"].endswith("> 5400")
    assert "[2m]" in exprs["ShipwayHighLatencywarning"]["expr"]
    assert exprs["ShipwayHighLatencywarning"]["for"] == "1m"
    assert exprs["ShipwayDatasetDriftwarning"]["for"] == "0s"
    assert all(
        r["labels"]["team"] == "ml" and r["labels"]["service"] == "credit api"
        for r in exprs.values()
    )


def test_every_rule_has_severity_summary_and_description() -> None:
    rules = alert_rules()
    names = [g["name"] for g in rules["groups"]]
    assert names == [
        "shipway-drift",
        "shipway-data-quality",
        "shipway-performance",
        "shipway-fairness",
        "shipway-monitoring",
        "shipway-serving",
    ]
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert set(rule["annotations"]) == {"summary", "description"}
            assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_rules_yaml_keeps_promql_readable() -> None:
    text = rules_yaml()
    assert text.startswith("# Prometheus alerting rules for Shipway")
    assert "expr: |-\n      histogram_quantile(\n        0.99," in text
    assert yaml.safe_load(text) == alert_rules()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drift_share": 1.5}, "drift_share must be a fraction"),
        ({"error_rate": -0.1}, "error_rate must be a fraction"),
        ({"latency_p99_seconds": 0}, "latency_p99_seconds must be a positive number"),
        ({"latency_p99_seconds": float("inf")}, "latency_p99_seconds must be a positive"),
        ({"for_": "5 minutes"}, "for_ must be a Prometheus duration"),
        ({"rate_window": "5"}, "rate_window must be a Prometheus duration"),
        ({"labels": {"severity": "page"}}, "labels cannot set 'severity'"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        alert_rules(**options)


# =============================================================================
# promtool test rules: every alert fires when its condition holds, and only then
# =============================================================================


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def fired(severity: str, summary: str, description: str, **labels: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


MON = "shipway_monitor_"

# alert -> (input series, eval time at which it must be quiet, eval time at which it fires,
# the alerts expected then). Every case also holds series that must never fire.
CASES: dict[str, tuple[list[dict[str, str]], str, str, list[dict[str, Any]]]] = {
    "ShipwayDatasetDrift": (
        [
            series(f"{MON}drifted_columns_ratio", "0.6x20", model="credit"),
            series(f"{MON}drifted_columns_ratio", "0.5x20", model="(files)"),
            series(f"{MON}drifted_columns_ratio", "0.2x20", model="churn"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "Data drift on credit",
                "60% of the columns tested for credit drifted in the latest monitoring run "
                "(alert at 50%).",
                model="credit",
            ),
            fired(
                "warning",
                "Data drift on (files)",
                "50% of the columns tested for (files) drifted in the latest monitoring run "
                "(alert at 50%).",
                model="(files)",
            ),
        ],
    ),
    "ShipwayColumnDrift": (
        [
            series(f"{MON}column_drifted", "1x20", model="credit", column="income"),
            series(f"{MON}column_drifted", "0x20", model="credit", column="age"),
        ],
        "4m",
        "10m",
        [
            fired(
                "info",
                "Drift in column income of credit",
                "The latest monitoring run found that column income of credit drifted from "
                "the reference.",
                model="credit",
                column="income",
            )
        ],
    ),
    "ShipwayModelOutputDrift": (
        [
            series(f"{MON}output_drifted", "1x20", model="credit", column="score"),
            series(f"{MON}output_drifted", "0x20", model="credit", column="prediction"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "Prediction drift on credit",
                "The distribution of output score of credit drifted from its distribution on "
                "the reference.",
                model="credit",
                column="score",
            )
        ],
    ),
    "ShipwayMissingValuesIncrease": (
        [
            series(f"{MON}missing_ratio", "0.15x20", model="credit", column="income"),
            series(f"{MON}reference_missing_ratio", "0.05x20", model="credit", column="income"),
            series(f"{MON}missing_ratio", "0.5x20", model="credit", column="age"),
            series(f"{MON}reference_missing_ratio", "0x20", model="credit", column="age"),
            series(f"{MON}missing_ratio", "0.06x20", model="credit", column="debt"),
            series(f"{MON}reference_missing_ratio", "0.02x20", model="credit", column="debt"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "More missing values in column income of credit",
                "Missing values in column income of credit rose by 10% over the reference "
                "(alert at 5%).",
                model="credit",
                column="income",
            ),
            fired(
                "warning",
                "More missing values in column age of credit",
                "Missing values in column age of credit rose by 50% over the reference "
                "(alert at 5%).",
                model="credit",
                column="age",
            ),
            fired(
                "critical",
                "Many more missing values in column age of credit",
                "Missing values in column age of credit rose by 50% over the reference "
                "(alert at 20%).",
                model="credit",
                column="age",
            ),
        ],
    ),
    "ShipwayValuesOutOfRange": (
        [
            series(f"{MON}out_of_range_ratio", "0.25x20", model="credit", column="income"),
            series(f"{MON}out_of_range_ratio", "0.05x20", model="credit", column="age"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "Values out of the reference range in column income of credit",
                "25% of the values of column income of credit lie outside the reference's "
                "range (alert above 10%).",
                model="credit",
                column="income",
            )
        ],
    ),
    "ShipwayDataQualityCritical": (
        [
            series(f"{MON}quality_findings", "2x20", model="credit", severity="critical"),
            series(f"{MON}quality_findings", "3x20", model="credit", severity="warning"),
            series(f"{MON}quality_findings", "0x20", model="churn", severity="critical"),
        ],
        "4m",
        "10m",
        [
            fired(
                "critical",
                "Critical data quality problems on credit",
                "The latest monitoring run of credit found 2 critical data quality problem(s): "
                "see `shipway monitor show` for which.",
                model="credit",
            )
        ],
    ),
    "ShipwayModelPerformanceDrop": (
        [
            series(f"{MON}model_metric", "0.7x20", model="credit", metric="accuracy"),
            series(f"{MON}reference_model_metric", "0.9x20", model="credit", metric="accuracy"),
            series(f"{MON}model_metric", "0.85x20", model="credit", metric="roc_auc"),
            series(f"{MON}reference_model_metric", "0.9x20", model="credit", metric="roc_auc"),
            series(f"{MON}model_metric", "12x20", model="house", metric="rmse"),
            series(f"{MON}reference_model_metric", "10x20", model="house", metric="rmse"),
            series(f"{MON}model_metric", "9x20", model="house", metric="mae"),  # better
            series(f"{MON}reference_model_metric", "10x20", model="house", metric="mae"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "accuracy of credit dropped",
                "accuracy of credit is 22.22% worse than on the reference (alert above 10%).",
                model="credit",
                metric="accuracy",
            ),
            fired(
                "warning",
                "rmse of house dropped",
                "rmse of house is 20% worse than on the reference (alert above 10%).",
                model="house",
                metric="rmse",
            ),
        ],
    ),
    "ShipwayFairnessParity": (
        [
            series(f"{MON}fairness_parity_ratio", "0.6x20", model="credit", sensitive="gender"),
            series(f"{MON}fairness_parity_ratio", "0.9x20", model="credit", sensitive="age_band"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "Unequal selection rates by gender on credit",
                "The demographic parity ratio of credit across gender is 0.60 (alert below 0.8).",
                model="credit",
                sensitive="gender",
            )
        ],
    ),
    "ShipwayFairnessEqualizedOdds": (
        [
            series(
                f"{MON}fairness_equalized_odds_difference",
                "0.25x20",
                model="credit",
                sensitive="gender",
            ),
            series(
                f"{MON}fairness_equalized_odds_difference",
                "0.05x20",
                model="credit",
                sensitive="age_band",
            ),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "Unequal error rates by gender on credit",
                "The equalized odds difference of credit across gender is 0.25 (alert above 0.1).",
                model="credit",
                sensitive="gender",
            )
        ],
    ),
    "ShipwayMonitoringStale": (
        # promtool's clock starts at 0: a run at time 0 is 3 days old at 3d, while churn's
        # timestamp follows the clock (a run every minute).
        [
            series(f"{MON}last_run_timestamp_seconds", "0x4400", model="credit"),
            series(f"{MON}last_run_timestamp_seconds", "0+60x4400", model="churn"),
        ],
        "1d",
        "3d",
        [
            fired(
                "warning",
                "No recent monitoring run for credit",
                "The latest monitoring run of credit is 3d 0h 0m 0s old (alert after 2d).",
                model="credit",
            )
        ],
    ),
    "ShipwayMonitoringStoreDown": (
        [
            series(f"{MON}store_up", "0x20", instance="monitor-a:9108", job="shipway-monitor"),
            series(f"{MON}store_up", "1x20", instance="monitor-b:9108", job="shipway-monitor"),
        ],
        "4m",
        "10m",
        [
            fired(
                "warning",
                "The monitoring metrics server cannot read the store",
                "monitor-a:9108 could not load monitoring results: its logs say why.",
                instance="monitor-a:9108",
                job="shipway-monitor",
            )
        ],
    ),
    "ShipwayHighLatency": (
        # 1 request/s; credit's all take 0.5-1 s, churn's under 0.1 s.
        [
            *(
                series("shipway_request_duration_seconds_bucket", v, model="credit", le=le)
                for le, v in [("0.1", "0x40"), ("0.5", "0x40"), ("1", "0+60x40")]
            ),
            series("shipway_request_duration_seconds_bucket", "0+60x40", model="credit", le="+Inf"),
            *(
                series("shipway_request_duration_seconds_bucket", "0+60x40", model="churn", le=le)
                for le in ("0.1", "0.5", "1", "+Inf")
            ),
        ],
        "8m",
        "20m",
        [
            fired(
                "warning",
                "Slow predictions from credit",
                "The 99th percentile latency of credit is 995ms (alert above 0.5s).",
                model="credit",
            )
        ],
    ),
    "ShipwayHighErrorRate": (
        [
            series("shipway_requests_total", "0+90x40", model="credit", status="200"),
            series("shipway_requests_total", "0+10x40", model="credit", status="500"),
            series("shipway_requests_total", "0+99x40", model="churn", status="200"),
            series("shipway_requests_total", "0+1x40", model="churn", status="503"),
            series("shipway_requests_total", "0+50x40", model="iris", status="422"),
        ],
        "8m",
        "20m",
        [
            fired(
                "critical",
                "Server errors from credit",
                "10% of the requests to credit failed with a 5xx status (alert above 5%).",
                model="credit",
            )
        ],
    ),
    "ShipwayServerOverloaded": (
        [
            series("shipway_overload_rejections_total", "0+60x40", model="credit"),
            series("shipway_overload_rejections_total", "0x40", model="churn"),
        ],
        "8m",
        "20m",
        [
            fired(
                "warning",
                "Requests to credit rejected as overload",
                "The server rejects 1 requests/s to credit: add workers or replicas, or raise "
                "its queue limits.",
                model="credit",
            )
        ],
    ),
    "ShipwayPredictionLogDropping": (
        [
            series("shipway_prediction_log_dropped_total", "0+5x40", model="credit"),
            series("shipway_prediction_log_dropped_total", "7x40", model="churn"),
        ],
        "8m",
        "20m",
        [
            fired(
                "warning",
                "Prediction log records of credit dropped",
                "25 prediction log records of credit were dropped: monitoring sees only part "
                "of the traffic.",
                model="credit",
            )
        ],
    ),
}


def promtool_test(
    tmp_path: Path, rules: str, input_series: list[dict[str, str]], checks: list[dict[str, Any]]
) -> str:
    (tmp_path / "rules.yml").write_text(rules)
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": checks}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    return run_promtool("test", "rules", "test.yml", cwd=tmp_path)


def test_every_alert_has_a_case() -> None:
    assert alert_names(alert_rules()) == set(CASES)


@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_when_its_condition_holds_and_only_then(tmp_path: Path, alert: str) -> None:
    inputs, quiet_at, fires_at, expected = CASES[alert]
    checks: list[dict[str, Any]] = [
        {"eval_time": "0m", "alertname": alert, "exp_alerts": []},
        # The condition holds but has not lasted `for` yet: pending, not firing.
        {"eval_time": quiet_at, "alertname": alert, "exp_alerts": []},
        {"eval_time": fires_at, "alertname": alert, "exp_alerts": expected},
    ]
    promtool_test(tmp_path, rules_yaml(), inputs, checks)


def test_thresholds_change_what_fires(tmp_path: Path) -> None:
    inputs = [
        series(f"{MON}drifted_columns_ratio", "0.6x20", model="credit"),
        series(f"{MON}fairness_parity_ratio", "0.75x20", model="credit", sensitive="gender"),
        series("shipway_requests_total", "0+97x40", model="credit", status="200"),
        series("shipway_requests_total", "0+3x40", model="credit", status="500"),
    ]
    checks: list[dict[str, Any]] = [
        {"eval_time": "2m", "alertname": "ShipwayDatasetDrift", "exp_alerts": []},
        {"eval_time": "20m", "alertname": "ShipwayFairnessParity", "exp_alerts": []},
        {
            "eval_time": "20m",
            "alertname": "ShipwayHighErrorRate",
            "exp_alerts": [
                fired(
                    "critical",
                    "Server errors from credit",
                    "3% of the requests to credit failed with a 5xx status (alert above 2%).",
                    model="credit",
                    team="ml",
                )
            ],
        },
    ]
    rules = rules_yaml(
        drift_share=0.7, parity_ratio=0.7, error_rate=0.02, for_="1m", labels={"team": "ml"}
    )
    promtool_test(tmp_path, rules, inputs, checks)


# =============================================================================
# The Grafana dashboard
# =============================================================================


def test_dashboard_is_a_current_grafana_model_with_no_import_inputs() -> None:
    dashboard = grafana_dashboard(datasource_uid="prom-1")
    text = json.dumps(dashboard)
    assert "__inputs" not in text and "${DS_" not in text
    assert dashboard["schemaVersion"] == SCHEMA_VERSION >= 36
    assert dashboard["id"] is None and dashboard["uid"] == "shipway-models"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "prom-1"
    assert variables["model"]["type"] == "query"
    assert variables["model"]["query"].startswith("label_values(")
    assert variables["model"]["multi"] and variables["model"]["includeAll"]
    assert grafana_dashboard()["templating"]["list"][0]["current"] == {}


def test_dashboard_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    dashboard = grafana_dashboard()
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in panels}
    for wanted in (
        "Throughput",
        "Latency p50 / p99",
        "Error rate (5xx)",
        "Batch size (rows per predict call)",
        "Dataset drift (share of drifted columns)",
        "Drifted columns",
        "Drift score per column",
        "Missing values",
        "Model metrics",
        "Demographic parity ratio",
        "Prometheus alerts firing",
    ):
        assert wanted in titles
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        own = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & own, f"{panel['title']} overlaps another panel"
        cells |= own
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
    parity = next(p for p in panels if p["title"] == "Demographic parity ratio")
    steps = parity["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[1] == {"color": "green", "value": 0.8}
    assert parity["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables as Grafana does for "All" (a regex matching any model)."""
    return expr.replace("$__rate_interval", "1m").replace("$model", ".*")


def test_every_dashboard_query_parses_in_promtool(tmp_path: Path) -> None:
    dashboard = grafana_dashboard()
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 25
    # The model variable's label_values(SELECTOR, model): its selector is PromQL too.
    model = next(v for v in dashboard["templating"]["list"] if v["name"] == "model")
    selector = re.fullmatch(r"label_values\((.+), model\)", model["query"])
    assert selector is not None
    queries.append(selector.group(1))
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"shipway:dashboard_query_{i}", "expr": grafana_to_promql(q)}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    output = run_promtool("check", "rules", path)
    assert f"SUCCESS: {len(queries)} rules found" in output
