"""The Argo AnalysisTemplate's PromQL, run by Prometheus' own engine (`promtool test rules`)
over synthetic series shaped like the model server's metrics: it must judge as
`shipway.deploy.analysis.analyse` does (error rate, p99 absolute or against stable, too little
canary traffic gives no result, too little stable traffic skips the relative check).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipway.deploy.analysis import Checks
from shipway.deploy.kubernetes import RenderOptions
from shipway.deploy.kubernetes.canary import queries
from shipway.serving.metrics import REQUEST_DURATION_BUCKETS

NS = "credit-production"
LABELS = 'model="credit",endpoint="predict"'


def _query(checks: Checks, name: str) -> str:
    """The metric's query as Argo sends it, its `{{args.*}}` filled in."""
    query = queries(RenderOptions("models:/credit/1", Path("unused"), argo=True, checks=checks))
    return (
        query[name]
        .replace("{{args.namespace}}", NS)
        .replace("{{args.canary-hash}}", "c1")
        .replace("{{args.stable-hash}}", "s1")
    )


def _requests(pod_hash: str, status: int, per_scrape: int, ns: str = NS) -> dict[str, str]:
    return {
        "series": f'shipway_requests_total{{namespace="{ns}",rollouts_pod_template_hash='
        f'"{pod_hash}",{LABELS},status="{status}"}}',
        "values": f"0+{per_scrape}x40",
    }


def _latency(pod_hash: str, upper: float, per_scrape: int) -> list[dict[str, str]]:
    """Every request of `pod_hash` takes just under `upper` seconds (a bucket bound)."""
    bounds = [*(f"{b:g}" for b in REQUEST_DURATION_BUCKETS), "+Inf"]
    values = [*REQUEST_DURATION_BUCKETS, float("inf")]
    return [
        {
            "series": "shipway_request_duration_seconds_bucket{"
            f'namespace="{NS}",rollouts_pod_template_hash="{pod_hash}",{LABELS},le="{le}"}}',
            "values": f"0+{per_scrape if value >= upper else 0}x40",
        }
        for le, value in zip(bounds, values, strict=True)
    ]


def _traffic(canary: int, stable: int, canary_s: float, stable_s: float) -> list[dict[str, str]]:
    """Requests per 15 s scrape of each track, all answered 200 in the given time."""
    return [
        _requests("c1", 200, canary),
        _requests("s1", 200, stable),
        *_latency("c1", canary_s, canary),
        *_latency("s1", stable_s, stable),
    ]


def _case(series: list[dict[str, str]], expr: str, value: float | None) -> dict[str, Any]:
    samples = [] if value is None else [{"labels": "{}", "value": value}]
    return {
        "interval": "15s",
        "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": samples}],
    }


def _promtool(tmp_path: Path, cases: list[dict[str, Any]]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run scripts/install-system-deps.sh")
    (tmp_path / "rules.yaml").write_text("groups: []\n")
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_error_rate_matches_the_local_check(tmp_path: Path) -> None:
    err = _query(Checks(), "error-rate")
    ok_only = _traffic(10, 10, 0.01, 0.01)
    failing = [*ok_only, _requests("c1", 500, 1), _requests("c1", 503, 1)]
    elsewhere = [*ok_only, _requests("c1", 500, 5, ns="credit-staging"), _requests("s1", 500, 5)]
    _promtool(tmp_path, [
        _case(failing, err, 2 / 12),  # the canary's own 5xx share
        _case(ok_only, err, 0),  # no 5xx series at all is a rate of 0, not "no data"
        _case(elsewhere, err, 0),  # stable's errors and another namespace's do not count
        _case(_traffic(1, 10, 0.01, 0.01), err, None),  # 4 requests a minute < 20: inconclusive
    ])  # fmt: skip


def test_p99_against_stable_matches_the_local_check(tmp_path: Path) -> None:
    p99 = _query(Checks(), "p99-over-stable")
    # canary p99 ~0.0995 s; stable p99 ~0.0249 s: bound 1.5 x 0.0249 + 0.05 = 0.087 s
    slow = _traffic(10, 10, 0.1, 0.025)
    _promtool(tmp_path, [
        _case(slow, f"({p99}) > bool 0", 1),  # fails
        _case(_traffic(10, 10, 0.025, 0.025), f"({p99}) > bool 0", 0),  # passes
        _case(_traffic(10, 1, 0.1, 0.025), p99, 0),  # stable too quiet: not compared, a pass
        _case(_traffic(1, 10, 0.1, 0.025), p99, None),  # canary too quiet: inconclusive
    ])  # fmt: skip


def test_absolute_p99_bound(tmp_path: Path) -> None:
    p99 = _query(Checks(max_p99_ms=250), "p99-latency")
    _promtool(tmp_path, [
        _case(_traffic(10, 0, 0.1, 0.1), f"({p99}) < bool 0.25", 1),
        _case(_traffic(10, 0, 0.5, 0.1), f"({p99}) < bool 0.25", 0),
        _case(_traffic(1, 0, 0.5, 0.1), p99, None),
    ])  # fmt: skip
