"""Reproducing, retraining and serving monitoring metrics through the team server.

Each test runs a live server over the test's store (`shipway_home`) and works against it from
a "runner" with a home of its own, as a machine with `SHIPWAY_TRACKING_URI` and a token does:
the training scripts, `shipway retrain` and `shipway monitor serve-metrics` run as processes
with the runner's environment. The runner's home never holds a store (no database, no
artefacts): what it makes goes to the server, where the server's own client reads it back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import shipway
from server_helpers import Team, team_server
from serving_helpers import free_port, run_cli
from shipway.governance.approvals import list_approvals
from shipway.monitoring.history import save_result
from shipway.monitoring.monitor import monitor
from shipway.pipeline.records import get_pipeline_run
from test_monitoring_prometheus import ROLES, frame, stop, value, wait_until
from test_remote import _close_connections, remote_client
from test_reproduce import _checks, _worktrees, credit, workspace
from test_retrain import _config, project

__all__ = ["_close_connections", "credit", "project", "workspace"]  # fixtures used here


@pytest.fixture
def team(shipway_home: Path) -> Iterator[Team]:
    """A live team server over the store in `shipway_home`."""
    local = shipway.Client()
    try:
        with team_server(local) as served:
            yield served
    finally:
        local.store.close()


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    """The home of the machine working through the server."""
    home = tmp_path / "runner-home"
    home.mkdir()
    return home


def _runner_env(team: Team, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPWAY_")}
    return env | {
        "SHIPWAY_HOME": str(home),
        "SHIPWAY_TRACKING_URI": team.url,
        "SHIPWAY_TOKEN": team.tokens["developer"],
        "PYTHONUNBUFFERED": "1",
    }


def _python(team: Team, home: Path, cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_runner_env(team, home),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _no_store(home: Path) -> None:
    """Nothing of a store in the runner's home: no database, no artefacts."""
    assert not (home / "shipway.db").exists()
    assert not (home / "artifacts").exists()


# =============================================================================
# (1) `shipway runs reproduce` through the server
# =============================================================================


@pytest.mark.slow
def test_a_run_trained_through_the_server_is_reproduced_through_it(
    credit: Path, team: Team, runner: Path
) -> None:
    out = _python(team, runner, credit / "credit", "train.py", "--max-iter", "20")
    match = re.search(r"from run ([0-9a-f]{12})", out)
    assert match, out
    run_id = shipway.get_run(match.group(1), client=team.client).id  # on the server
    recorded = shipway.get_run(run_id, client=team.client)
    client = remote_client(team.url, team.tokens["developer"], home=runner)

    report = shipway.reproduce(run_id, client=client)

    assert report.reproduced, (report.differences, report.output)
    assert report.exit_code == 0 and report.causes == []
    assert report.restored == ["credit/data/credit.parquet"]  # downloaded from the server
    by_kind = _checks(report)
    for metric, number in recorded.metrics.items():
        check = by_kind[("metric", metric)]
        assert (check.recorded, check.new, check.difference) == (number, number, 0.0)
    for name in ("credit", "credit-train", "credit-test"):
        assert by_kind[("dataset", name)].verdict == "same"
    (output,) = [c for c in report.checks if c.kind == "output"]
    assert output.name.startswith("model on 'credit-test'") and output.verdict == "same"
    packages = by_kind[("environment", "packages")]  # the lock was read from the server
    assert packages.verdict == "same" and packages.difference == 0
    # the reproduction ran against the server: its run is there, tagged, and it is the only one
    new = shipway.get_run(str(report.new_run_id), client=team.client)
    assert new.id != run_id and new.status == "finished"
    assert new.tags["reproduces"] == run_id
    assert new.environment["git"]["commit"] == recorded.environment["git"]["commit"]
    tagged = [r for r in shipway.list_runs(client=team.client) if r.tags.get("reproduces")]
    assert [r.id for r in tagged] == [new.id]
    assert len(_worktrees(credit)) == 1
    _no_store(runner)

    again = shipway.reproduce(run_id, client=client)  # a second one finds its own run
    assert again.reproduced and again.new_run_id not in (None, new.id)
    _no_store(runner)


# =============================================================================
# (2) `shipway retrain` through the server
# =============================================================================


@pytest.mark.slow
def test_a_retraining_through_the_server_registers_a_challenger_and_records_its_run(
    project: Path, team: Team, runner: Path
) -> None:
    # staging is a fresh environment: its policy is `none`, so nobody is asked and nothing ships
    _config(project, command=f"{sys.executable} train.py --max-iter 3",
            policy={"environment": "staging"},
            triggers={"data": "data/*.parquet", "drift": True})  # fmt: skip
    for name, seed in (("old.parquet", 3), ("new.parquet", 9)):
        _python(team, runner, project, "generate.py", "--rows", "3000", "--seed", str(seed),
                "--out", str(project / "data" / name))  # fmt: skip
    old = project / "data" / "old.parquet"
    os.utime(old, ns=(1, 1))  # the newest data is new.parquet
    _python(team, runner, project, "train.py", "--data", str(old))
    champion = shipway.list_versions("credit", client=team.client)[-1]
    shipway.set_alias(champion.uri, "champion", client=team.client)

    env = _runner_env(team, runner)
    done = run_cli(runner, "retrain", "credit", "--dir", str(project), "--json",
                   env=env, timeout=300)  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["decision"] == "kept", result["summary"]
    assert result["data"] == str(project / "data" / "new.parquet")
    # the candidate was registered on the server and is the challenger there
    challenger = shipway.get_model_version("models:/credit@challenger", client=team.client)
    assert result["candidate"] == challenger.uri
    assert challenger.version == champion.version + 1
    assert shipway.get_model_version("models:/credit@champion", client=team.client).version == (
        champion.version
    )
    # compared with the champion loaded through the server, on the held-out rows it logged
    comparison = result["comparison"]
    assert comparison["champion"]["uri"] == champion.uri and comparison["candidate"]["metrics"]
    assert "roc_auc" in comparison["champion"]["metrics"]
    assert any("is below the margin" in r for r in result["reasons"]), result["reasons"]
    assert list_approvals("staging", client=team.client) == []
    # its pipeline run is on the server, every stage with its log or report blob there
    run = get_pipeline_run(result["run_id"], client=team.client)
    assert run.trigger == "retrain:manual" and run.status == "succeeded"
    assert run.context["decision"] == "kept" and run.context["uri"] == challenger.uri
    stages = {s.name: s for s in run.stages}
    assert list(stages) == ["train", "compare", "approval", "report"]
    assert stages["approval"].detail == "not requested (none policy)"
    train_log = team.client.artifacts.get_bytes(str(stages["train"].log)).decode()
    assert "train.py" in train_log
    html = team.client.artifacts.get_bytes(stages["report"].artifacts["retrain.html"]).decode()
    assert "is below the margin" in html
    # the scheduler finds that retraining (and its data's hash) on the server, and no drift
    # result there: nothing is due
    checked = run_cli(runner, "scheduler", "run", "--once", "--dir", str(project), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no trigger fired" in checked.stdout
    _no_store(runner)


# =============================================================================
# (3) `shipway monitor serve-metrics` through the server
# =============================================================================


@pytest.mark.slow
def test_serve_metrics_through_the_server_exposes_the_results_stored_there(
    team: Team, runner: Path, tmp_path: Path
) -> None:
    reference = frame()
    calm = monitor(reference, frame(seed=2), roles=ROLES, model="credit", version=2)
    calm = calm.model_copy(update={"created_at": calm.created_at - timedelta(days=1)})
    save_result(calm, client=team.client)
    files = monitor(frame(n=300, seed=4)[["income"]], frame(n=300, seed=5, shift=5)[["income"]])
    save_result(files, client=team.client)
    port = free_port()
    log_path = tmp_path / "serve-metrics.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipway.cli", "monitor", "serve-metrics", "--port", str(port)],
            env=_runner_env(team, runner), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, log_path.read_text()
            return httpx.get(f"{url}/-/healthy").status_code == 200

        wait_until(healthy, "serve-metrics")
        text = httpx.get(f"{url}/metrics", timeout=60).text
        assert value(text, "store_up") == 1, text
        assert value(text, "model_version", model="credit") == 2
        assert value(text, "rows", model="credit", source="current") == 1500
        assert value(text, "tested_columns", model="(files)") == 1
        assert value(text, "last_run_timestamp_seconds", model="credit") == pytest.approx(
            calm.created_at.timestamp()
        )

        drifted = monitor(reference, frame(seed=3, shift=20), roles=ROLES, model="credit",
                          version=3)  # fmt: skip
        save_result(drifted, client=team.client)  # stored on the server: the next scrape
        text = httpx.get(f"{url}/metrics", timeout=60).text
        assert value(text, "model_version", model="credit") == 3
        assert value(text, "dataset_drifted", model="credit") == 1
        assert value(text, "column_drifted", model="credit", column="income") == 1
    finally:
        stop(process)
    _no_store(runner)
