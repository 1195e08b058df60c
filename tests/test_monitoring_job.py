"""Monitoring jobs end to end: plain files, a served model's prediction log, the CLI, the store,
schedules and alert hooks (a real webhook server and a real command)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import shipway
from serving_helpers import credit_frame, live_server, records, run_cli, train_credit
from shipway.errors import InvalidInputError
from shipway.monitoring.history import get_result, latest_results, list_results
from shipway.monitoring.job import MonitorSpec, run_job
from shipway.monitoring.monitor import Roles
from shipway.monitoring.watch import Hooks, Schedule, fire_hooks, watch
from shipway.serving import create_app


def _files(tmp_path: Path, shift: float = 1.0) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.choice(["x", "y", "z"], 3000)})
    cur = pd.DataFrame({"a": rng.normal(shift, 1, 2000), "b": rng.choice(["x", "y", "z"], 2000)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    return tmp_path / "ref.parquet", tmp_path / "cur.csv"


def test_files_job_is_stored_and_listed(shipway_home: Path, tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    result = run_job(MonitorSpec(reference=ref, current=cur))
    assert result.model is None and result.drift.drifted_columns == ["a"]
    assert result.reference.kind == "file" and result.current.rows == 2000
    assert get_result(result.id) == result
    assert get_result(result.id[:10]) == result
    assert [r.id for r in list_results()] == [result.id]
    assert [r.id for r in latest_results()] == [result.id]
    audit = shipway.audit_log()
    assert audit[-1].action == "monitor.run" and audit[-1].subject == "monitor:(files)"


def test_cli_run_on_files_writes_json_and_exits_by_severity(
    shipway_home: Path, tmp_path: Path
) -> None:
    ref, cur = _files(tmp_path)
    out = tmp_path / "result.json"
    done = run_cli(
        shipway_home, "monitor", "run", "--reference", str(ref), "--current", str(cur),
        "--json", str(out), "--share", "0.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "DRIFT" in done.stdout and "a" in done.stdout
    data = json.loads(out.read_text())
    assert data["drift"]["drifted"] is True and data["drift"]["n_drifted"] == 1
    failing = run_cli(
        shipway_home, "monitor", "run", "--reference", str(ref), "--current", str(cur),
        "--fail-on", "critical",
    )  # fmt: skip
    assert failing.returncode == 1
    listed = run_cli(shipway_home, "monitor", "list", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)][1] == data["id"]


def test_cli_bad_input_is_one_line_and_stores_nothing(shipway_home: Path, tmp_path: Path) -> None:
    ref, _ = _files(tmp_path)
    (tmp_path / "cur.xlsx").write_text("not a table")
    cases = [
        (["--reference", str(ref), "--current", str(tmp_path / "missing.csv")], "No current file"),
        (["--reference", str(ref), "--current", str(tmp_path / "cur.xlsx")], "unknown format"),
        (["--reference", str(ref)], "Nothing to monitor"),
        (["models:/nope@champion"], "not found"),
        (["--reference", str(ref), "--current", str(ref), "--window", "soon"], "window"),
    ]
    for args, message in cases:
        done = run_cli(shipway_home, "monitor", "run", *args)
        assert done.returncode != 0, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert list_results() == []


@pytest.fixture
def served_credit(shipway_home: Path) -> Iterator[tuple[str, pd.DataFrame]]:
    version, _model, _features = train_credit()
    yield version.uri, credit_frame(400, seed=11)


def _send(url: str, frame: pd.DataFrame, labels: pd.Series | None) -> None:
    body = httpx.post(f"{url}/predict", json={"records": records(frame)}, timeout=30).json()
    assert len(body["predictions"]) == len(frame)
    if labels is not None:
        pairs = [
            {"prediction_id": pid, "label": int(label)}
            for pid, label in zip(body["ids"], labels, strict=False)  # the first len(labels)
        ]
        r = httpx.post(f"{url}/feedback", json={"labels": pairs}, timeout=30)
        assert r.status_code == 202


@pytest.mark.slow
def test_model_job_over_the_prediction_log(
    served_credit: tuple[str, pd.DataFrame], shipway_home: Path
) -> None:
    uri, frame = served_credit
    drifted = frame.assign(income=frame["income"] * 3)
    with live_server(create_app([uri])) as url:
        _send(url, drifted[_features()], frame["default"].iloc[:300])
    spec = MonitorSpec(model_uri=uri, window=timedelta(hours=1), roles=Roles(target="default"))
    result = run_job(spec)
    assert result.model == "credit" and result.version == 1
    assert result.current.kind == "predictions" and result.current.rows == 400
    assert result.current.description == "predictions of credit version 1 in the last 1h"
    assert "income" in result.drift.drifted_columns
    assert result.features == _features()
    assert result.performance is not None and result.performance.labelled == 300
    assert result.performance.reference_metrics is not None
    assert result.score_drift[0].column == "prediction"
    # the reference profile was stored once and is reused
    again = run_job(spec)
    assert again.drift == result.drift
    engine = sa.create_engine(f"sqlite:///{shipway_home / 'shipway.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM reference_profiles")).scalar() == 1
    engine.dispose()


@pytest.mark.slow
def test_model_job_with_an_empty_window_says_so(
    served_credit: tuple[str, pd.DataFrame], shipway_home: Path
) -> None:
    uri, _ = served_credit
    with pytest.raises(InvalidInputError, match="No predictions of credit version 1"):
        run_job(MonitorSpec(model_uri=uri, window=timedelta(hours=1)))
    assert list_results() == []


def _features() -> list[str]:
    from serving_helpers import FEATURES

    return FEATURES


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: ClassVar[list[dict[str, Any]]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_watch_calls_the_webhook_and_the_command_on_alerts(
    shipway_home: Path, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    ref, cur = _files(tmp_path)
    out = tmp_path / "alert.json"
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, sys, pathlib\n"
        f"pathlib.Path({str(out)!r}).write_text(sys.stdin.read())\n"
        f"pathlib.Path({str(out) + '.env'!r}).write_text(os.environ['SHIPWAY_MONITOR_SEVERITY'])\n"
    )
    hooks = Hooks(webhook=url, command=f"{sys.executable} {script}")
    seen: list[Any] = []
    fired = watch(
        MonitorSpec(reference=ref, current=cur),
        Schedule(every=timedelta(milliseconds=10)),
        hooks,
        runs=2,
        on_result=lambda r, e: seen.append((r, e)),
        sleep=lambda s: None,
    )
    assert fired == 2 and len(received) == 2 and len(seen) == 2
    assert received[0]["event"] == "shipway.monitor.alert"
    assert received[0]["drifted_columns"] == ["a"]
    assert json.loads(out.read_text())["result_id"] == seen[1][0].id
    assert Path(str(out) + ".env").read_text() == "critical"


def test_watch_stays_quiet_below_the_severity_and_survives_failed_runs(
    shipway_home: Path, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    ref, cur = _files(tmp_path, shift=0.0)
    quiet = run_job(MonitorSpec(reference=ref, current=cur))
    assert quiet.worst is None
    assert fire_hooks(quiet, Hooks(webhook=url)) == []
    errors: list[str | None] = []
    fired = watch(
        MonitorSpec(reference=ref, current=tmp_path / "gone.csv"),
        Schedule(every=timedelta(seconds=1)),
        Hooks(webhook=url),
        runs=2,
        on_result=lambda r, e: errors.append(e),
        sleep=lambda s: None,
    )
    assert fired == 0 and received == []
    assert len(errors) == 2 and all(e and "No current file" in e for e in errors)


def test_schedules_and_hooks_refuse_bad_settings() -> None:
    with pytest.raises(InvalidInputError, match="Give a schedule"):
        Schedule()
    with pytest.raises(InvalidInputError, match="not a cron expression"):
        Schedule(cron="every hour")
    with pytest.raises(InvalidInputError, match="http"):
        Hooks(webhook="ftp://example")
    from datetime import UTC, datetime

    hourly = Schedule(cron="0 * * * *")
    assert hourly.next_after(datetime(2026, 1, 1, 10, 30, tzinfo=UTC)) == datetime(
        2026, 1, 1, 11, 0, tzinfo=UTC
    )


def test_cli_exports_rules_that_promtool_accepts_and_a_dashboard(
    shipway_home: Path, tmp_path: Path
) -> None:
    import subprocess

    rules = tmp_path / "rules.yml"
    done = run_cli(shipway_home, "monitor", "export-rules", "-o", str(rules), "--error-rate", "0.1")
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0.1" in rules.read_text()
    board = run_cli(shipway_home, "monitor", "export-dashboard")
    assert board.returncode == 0
    assert json.loads(board.stdout)["title"] == "Shipway models"


@pytest.mark.slow
def test_cli_serve_metrics_exposes_the_latest_result(shipway_home: Path, tmp_path: Path) -> None:
    import subprocess
    import time

    from serving_helpers import free_port, serve_env

    ref, cur = _files(tmp_path)
    run_job(MonitorSpec(reference=ref, current=cur))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipway.cli", "monitor", "serve-metrics", "--port", str(port)],
        env=serve_env(shipway_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert 'shipway_monitor_column_drifted{column="a",model="(files)"} 1.0' in body
        assert 'shipway_monitor_dataset_drifted{model="(files)"} 1.0' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
