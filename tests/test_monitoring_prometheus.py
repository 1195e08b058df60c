"""Monitoring results as Prometheus metrics: the collector, the metrics server, and a real
Prometheus scraping it.

Results come from the real :func:`shipway.monitoring.monitor.monitor` on generated frames. The
exposition is parsed back with prometheus-client's parser and linted by ``promtool check
metrics``; the end-to-end test starts the ``prometheus`` binary (Debian package ``prometheus``,
installed by ``scripts/install-system-deps.sh``) with the exported rules and queries its API.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from servers import assert_promtool_clean, free_port
from serving_helpers import live_server
from shipway.monitoring.dashboard import dashboard_queries, grafana_dashboard
from shipway.monitoring.drift import ColumnDrift
from shipway.monitoring.monitor import Roles, monitor
from shipway.monitoring.prometheus import (
    NO_MODEL,
    MonitorCollector,
    latest_per_model,
    metrics_app,
)
from shipway.monitoring.result import MonitorResult
from shipway.monitoring.rules import rules_yaml

ROLES = Roles(target="default", prediction="prediction", scores=["score"], sensitive="gender")


def frame(
    n: int = 1500, seed: int = 1, shift: float = 0.0, missing: float = 0.0, bias: float = 1.0
) -> pd.DataFrame:
    """Credit-like rows; ``shift`` moves income and age, ``bias`` scales women's scores."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50 + shift, 10, n)
    gender = rng.choice(["f", "m"], n)
    score = 1 / (1 + np.exp(-(income - 50) / 10))
    score = np.where(gender == "f", score * bias, score)
    df = pd.DataFrame(
        {
            "income": income,
            "age": rng.normal(40 + shift / 3, 10, n),
            "housing": rng.choice(["own", "rent", "mortgage"], n, p=[0.3, 0.4, 0.3]),
            "gender": gender,
            "score": score,
            "prediction": (score > 0.5).astype(int),
            "default": (rng.random(n) < 1 / (1 + np.exp(-(income - 50) / 10))).astype(int),
        }
    )
    if missing:
        df.loc[rng.random(n) < missing, "income"] = np.nan
    return df


@pytest.fixture(scope="module")
def results() -> dict[str, MonitorResult]:
    """A drifted run of credit, an older calm one, and a model-less run on files."""
    reference = frame()
    old = monitor(reference, frame(seed=2), roles=ROLES, model="credit", version=2)
    old = old.model_copy(update={"created_at": old.created_at - timedelta(days=1)})
    drifted = monitor(
        reference,
        frame(seed=3, shift=20, missing=0.3, bias=0.6),
        roles=ROLES,
        model="credit",
        version=3,
    )
    small = frame(n=300, seed=4)[["income", "age", "housing"]]
    files = monitor(small, frame(n=300, seed=5, shift=5)[["income", "age", "housing"]])
    return {"old": old, "credit": drifted, "files": files}


def exposition(load: Callable[[], list[MonitorResult]]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(load))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, gauge: str, /, **labels: str) -> float | None:
    return samples(text).get((f"shipway_monitor_{gauge}", frozenset(labels.items())))






# =============================================================================
# The collector
# =============================================================================


def test_latest_per_model_keeps_the_newest_run_of_each(results: dict[str, MonitorResult]) -> None:
    latest = latest_per_model([results["credit"], results["files"], results["old"]])
    assert latest == [results["files"], results["credit"]]  # "(files)" sorts before "credit"
    assert latest_per_model([results["old"], results["credit"]]) == [results["credit"]]


def test_gauges_hold_the_latest_run_per_model(results: dict[str, MonitorResult]) -> None:
    run = results["credit"]
    text = exposition(lambda: [results["old"], run, results["files"]])
    m = "credit"
    assert value(text, "store_up") == 1
    assert value(text, "last_run_timestamp_seconds", model=m) == run.created_at.timestamp()
    assert value(text, "model_version", model=m) == 3  # the older run (version 2) is not shown
    assert value(text, "rows", model=m, source="reference") == 1500
    assert value(text, "rows", model=m, source="current") == 1500

    for c in run.drift.columns:
        assert c.statistic is not None
        assert value(text, "drift_score", model=m, column=c.column, method=c.method) == c.statistic
        assert value(text, "column_drifted", model=m, column=c.column) == float(c.drifted)
    income = next(c for c in run.drift.columns if c.column == "income")
    assert income.drifted and value(text, "column_drifted", model=m, column="income") == 1
    assert value(text, "tested_columns", model=m) == run.drift.n_tested
    assert value(text, "drifted_columns", model=m) == run.drift.n_drifted
    assert value(text, "drifted_columns_ratio", model=m) == run.drift.share_drifted
    assert value(text, "drifted_columns_threshold_ratio", model=m) == 0.5
    assert value(text, "dataset_drifted", model=m) == float(run.drift.drifted)
    for c in run.score_drift:
        assert value(text, "output_drift_score", model=m, column=c.column, method=c.method) == (
            c.statistic
        )
        assert value(text, "output_drifted", model=m, column=c.column) == float(c.drifted)

    q = next(q for q in run.quality.columns if q.column == "income")
    assert value(text, "missing_ratio", model=m, column="income") == q.missing_rate > 0.25
    assert value(text, "reference_missing_ratio", model=m, column="income") == 0
    assert value(text, "out_of_range_ratio", model=m, column="income") == q.out_of_range_share
    assert value(text, "out_of_range_ratio", model=m, column="housing") is None  # categorical
    assert value(text, "new_categories", model=m, column="housing") == 0
    severities = [f.severity for f in run.quality.findings]
    for severity in ("info", "warning", "critical"):
        assert value(text, "quality_findings", model=m, severity=severity) == severities.count(
            severity
        )

    assert run.performance is not None and run.performance.reference_metrics is not None
    for metric, v in run.performance.metrics.items():
        assert value(text, "model_metric", model=m, metric=metric) == v
    for metric, v in run.performance.reference_metrics.items():
        assert value(text, "reference_model_metric", model=m, metric=metric) == v
    assert value(text, "labelled_rows", model=m) == 1500

    fair = run.fairness
    assert fair is not None and fair.demographic_parity_ratio is not None
    s = "gender"
    assert value(text, "fairness_parity_ratio", model=m, sensitive=s) == (
        fair.demographic_parity_ratio
    )
    assert value(text, "fairness_parity_threshold_ratio", model=m, sensitive=s) == 0.8
    assert value(text, "fairness_parity_difference", model=m, sensitive=s) == (
        fair.demographic_parity_difference
    )
    assert value(text, "fairness_equalized_odds_difference", model=m, sensitive=s) == (
        fair.equalized_odds_difference
    )
    for g in fair.groups:
        assert value(text, "fairness_selection_ratio", model=m, sensitive=s, group=g.group) == (
            g.selection_rate
        )

    counted: dict[tuple[str, str], int] = {}
    for a in run.alerts:
        counted[a.name, a.severity] = counted.get((a.name, a.severity), 0) + 1
    assert counted[("column_drift", "warning")] >= 2
    for (name, severity), n in counted.items():
        assert value(text, "alerts", model=m, name=name, severity=severity) == n
    assert_promtool_clean(text)


def test_model_less_runs_are_labelled_files(results: dict[str, MonitorResult]) -> None:
    run = results["files"]
    assert run.model is None
    text = exposition(lambda: [run])
    assert NO_MODEL == "(files)"
    assert value(text, "rows", model="(files)", source="current") == 300
    # A small reference: the statistical tests, whose p-values are exported too.
    ks = next(c for c in run.drift.columns if c.column == "income")
    assert ks.method == "ks" and ks.p_value is not None
    assert value(text, "drift_p_value", model="(files)", column="income", method="ks") == (
        ks.p_value
    )
    names = {name for name, _ in samples(text)}
    assert not any("model_metric" in n or "fairness" in n for n in names)  # no roles: not run
    assert_promtool_clean(text)


def test_unknown_values_are_left_out_and_infinities_kept(
    results: dict[str, MonitorResult],
) -> None:
    run = results["credit"]
    assert run.performance is not None and run.fairness is not None
    columns = [
        *run.drift.columns,
        ColumnDrift(
            column="flat",
            kind="numeric",
            method="wasserstein",
            statistic=math.inf,
            threshold=0.1,
            drifted=True,
            note="constant reference (std 0): any change is drift",
        ),
        ColumnDrift(column="blank", kind="numeric", method="skipped", statistic=None, note="-"),
    ]
    odd = run.model_copy(
        update={
            "drift": run.drift.model_copy(update={"columns": columns}),
            "performance": run.performance.model_copy(
                update={"metrics": {"accuracy": 0.5, "roc_auc": None, "f1": math.nan}}
            ),
            "fairness": run.fairness.model_copy(
                update={"demographic_parity_ratio": None, "equalized_odds_difference": None}
            ),
        }
    )
    text = exposition(lambda: [odd])
    assert (
        'shipway_monitor_drift_score{column="flat",method="wasserstein",model="credit"} +Inf'
        in (text)
    )
    assert value(text, "column_drifted", model="credit", column="flat") == 1
    assert "blank" not in text
    assert value(text, "model_metric", model="credit", metric="accuracy") == 0.5
    assert 'metric="roc_auc"' not in text.split("shipway_monitor_reference_model_metric")[0]
    assert 'metric="f1"' not in text.split("shipway_monitor_reference_model_metric")[0]
    assert "NaN" not in text
    assert "shipway_monitor_fairness_parity_ratio{" not in text
    assert "shipway_monitor_fairness_equalized_odds_difference{" not in text
    assert value(text, "fairness_parity_difference", model="credit", sensitive="gender") == (
        run.fairness.demographic_parity_difference
    )
    assert_promtool_clean(text)


def test_a_store_that_fails_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> list[MonitorResult]:
        raise ConnectionError("database is down")

    with caplog.at_level(logging.ERROR, logger="shipway.monitoring.prometheus"):
        text = exposition(broken)
    assert samples(text) == {("shipway_monitor_store_up", frozenset()): 0.0}
    assert "could not load the monitoring results" in caplog.text
    assert "database is down" in caplog.text
    assert_promtool_clean(text)


def test_no_results_yet_is_an_empty_but_valid_exposition() -> None:
    text = exposition(list)
    assert samples(text) == {("shipway_monitor_store_up", frozenset()): 1.0}
    assert_promtool_clean(text)


# =============================================================================
# The metrics server
# =============================================================================


def test_metrics_app_serves_fresh_results_at_every_scrape(
    results: dict[str, MonitorResult],
) -> None:
    store = [results["old"]]
    loads: list[int] = []

    def load() -> list[MonitorResult]:
        loads.append(1)
        return list(store)

    with (
        live_server(metrics_app(load), wait_ready=False) as url,
        httpx.Client(base_url=url) as http,
    ):
        r = http.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert value(r.text, "model_version", model="credit") == 2
        assert_promtool_clean(r.text)

        store.append(results["credit"])  # a new run is saved: the next scrape shows it
        r = http.get("/metrics")
        assert value(r.text, "model_version", model="credit") == 3
        assert len(loads) == 2

        r = http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.text.endswith("# EOF\n")

        r = http.get("/-/healthy")
        assert r.status_code == 200 and "healthy" in r.text
        assert len(loads) == 3  # health checks do not touch the store

        spec = http.get("/openapi.json").json()
        validate(spec)
        assert set(spec["paths"]) == {"/metrics", "/-/healthy"}
        assert "get" in spec["paths"]["/metrics"]
        docs = http.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text
        assert http.post("/metrics").status_code == 405


# =============================================================================
# End to end: a real Prometheus scrapes `serve_metrics` and evaluates the rules
# =============================================================================

SERVE_SCRIPT = """
import json, sys
from shipway.monitoring.prometheus import serve_metrics
from shipway.monitoring.result import MonitorResult

path, port = sys.argv[1], int(sys.argv[2])

def load():
    with open(path) as f:
        return [MonitorResult.from_dict(d) for d in json.load(f)]

serve_metrics("127.0.0.1", port, load, log_level="warning")
"""


def wait_until(
    check: Callable[[], Any],
    what: str,
    timeout: float = 60,
    message: Callable[[], str] = str,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = check()
        except httpx.TransportError:
            answer = None
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {message()}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture
def metrics_server(tmp_path: Path, results: dict[str, MonitorResult]) -> Iterator[str]:
    """``serve_metrics`` in its own process, over results saved as JSON; yields host:port."""
    data = tmp_path / "results.json"
    data.write_text(json.dumps([r.to_dict() for r in results.values()]))
    port = free_port()
    log = (tmp_path / "serve-metrics.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(data), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        target = f"127.0.0.1:{port}"

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    "serve_metrics exited:\n" + (tmp_path / "serve-metrics.log").read_text()
                )
            return httpx.get(f"http://{target}/-/healthy").status_code == 200

        wait_until(healthy, "the metrics server")
        yield target
    finally:
        stop(process)
        log.close()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_server: str) -> Iterator[str]:
    """The real Prometheus scraping ``metrics_server`` every second, with the exported rules
    (``for`` 0s) evaluated every second; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus is not installed: run scripts/install-system-deps.sh "
            "(Debian/Ubuntu package 'prometheus')"
        )
    (tmp_path / "rules.yml").write_text(rules_yaml(for_="0s"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {"job_name": "shipway-monitor", "static_configs": [{"targets": [metrics_server]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log_path = tmp_path / "prometheus.log"
    for _attempt in range(3):  # the free port can be taken between probe and bind
        started = start_prometheus(binary, tmp_path, log_path)
        if started is not None:
            break
    else:
        raise AssertionError("Prometheus did not start:\n" + log_path.read_text())
    process, url = started
    try:
        yield url
    finally:
        stop(process)


def start_prometheus(
    binary: str, base: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], str] | None:
    """Prometheus on a free loopback port once it is ready, or None if it exited."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: process.poll() is not None or httpx.get(f"{url}/-/ready").status_code == 200,
            "Prometheus to start",
        )
    except BaseException:
        stop(process)
        raise
    return (process, url) if process.poll() is None else None


def query(url: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (promql, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
def test_prometheus_scrapes_the_gauges_and_fires_the_rules(
    prometheus: str, results: dict[str, MonitorResult]
) -> None:
    run = results["credit"]
    income = next(c for c in run.drift.columns if c.column == "income")
    found = wait_until(
        lambda: query(
            prometheus,
            'shipway_monitor_drift_score{model="credit", column="income", job="shipway-monitor"}',
        ),
        "Prometheus to scrape the drift gauge",
    )
    assert len(found) == 1
    assert found[0]["metric"]["method"] == income.method
    assert float(found[0]["value"][1]) == income.statistic
    assert float(query(prometheus, "up")[0]["value"][1]) == 1

    # The older run of credit is not exported; the model-less run is.
    (version,) = query(prometheus, 'shipway_monitor_model_version{model="credit"}')
    assert version["value"][1] == "3"
    assert query(prometheus, 'shipway_monitor_rows{model="(files)", source="current"}')

    def firing() -> set[tuple[str, str]]:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]
        return {
            (a["labels"]["alertname"], a["labels"].get("model", ""))
            for a in alerts
            if a["state"] == "firing"
        }

    expected = {
        ("ShipwayDatasetDrift", "credit"),
        ("ShipwayColumnDrift", "credit"),
        ("ShipwayModelOutputDrift", "credit"),
        ("ShipwayMissingValuesIncrease", "credit"),
        ("ShipwayDataQualityCritical", "credit"),
        ("ShipwayModelPerformanceDrop", "credit"),
        ("ShipwayFairnessParity", "credit"),
    }
    seen: set[tuple[str, str]] = set()

    def all_fired() -> bool:
        seen.clear()
        seen.update(firing())
        return expected <= seen

    wait_until(all_fired, "the monitoring alerts to fire", message=lambda: f"firing: {seen}")
    assert not {a for a in firing() if a[0].startswith(("ShipwayHigh", "ShipwayMonitoring"))}
    rules = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules

    # Every dashboard query runs against the real Prometheus; the monitoring ones find data.
    dashboard = grafana_dashboard()
    answered = {
        q: query(prometheus, q.replace("$__rate_interval", "1m").replace("$model", ".*"))
        for q in dashboard_queries(dashboard)
    }
    assert answered['shipway_monitor_drifted_columns_ratio{model=~"$model"}']
    assert answered['shipway_monitor_fairness_parity_ratio{model=~"$model"}']
    # What Grafana asks for the model variable's label_values(SELECTOR, model).
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "model")
    selector = variable["query"].removeprefix("label_values(").removesuffix(", model)")
    r = httpx.get(f"{prometheus}/api/v1/label/model/values", params={"match[]": selector})
    assert r.json()["data"] == ["(files)", "credit"]
