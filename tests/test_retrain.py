"""Retraining that publishes candidates, on a throwaway copy of examples/credit.

The slow tests are real from end to end: the example's own generate.py and train.py, a real
`production` deployment (agent, replicas, gateway) with traffic on it for the canary, and a real
`shipway monitor watch` whose alert hook starts `shipway retrain`. The champion is trained on a
few hundred old rows and the candidate on thousands of new (drifted) ones, so "better" is
decided by the data, not by a fake.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

import shipway
from deploy_helpers import bring_down
from serving_helpers import free_port, run_cli, serve_env
from shipway.deploy import control, records
from shipway.errors import ApprovalRequiredError, InvalidInputError, NotFoundError
from shipway.governance.approvals import list_approvals, set_policy
from shipway.monitoring.history import list_results
from shipway.pipeline.records import get_pipeline_run, list_pipeline_runs
from shipway.pipeline.retrain import data_hash, newest_data, resume, retrain, training_command
from shipway.pipeline.retrain_spec import parse_retrain_spec
from shipway.pipeline.scheduler import due, run_scheduler

PYTHON = shlex.quote(sys.executable)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "credit"
FEATURES = [
    "age", "income", "debt_ratio", "credit_lines", "months_employed", "loan_amount",
    "loan_term_months", "savings", "late_payments_12m", "credit_utilization", "inquiries_6m",
    "years_at_address", "dependents", "open_accounts", "has_cosigner", "employment", "housing",
    "purpose", "region",
]  # fmt: skip


# -- a project ----------------------------------------------------------------------------------


def _config(project: Path, **retrain: Any) -> None:
    """shipway.yaml with the example's train stage and a `retrain:` section."""
    section: dict[str, Any] = {"data": "data/*.parquet", "label": "default", **retrain}
    doc = {
        "pipeline": {
            "model": "credit",
            "stages": [
                {"name": "train", "uses": "train", "with": {"command": PYTHON + " train.py"}}
            ],
        },
        "retrain": section,
    }
    (project / "shipway.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path, shipway_home: Path) -> Path:
    folder = tmp_path / "credit"
    (folder / "data").mkdir(parents=True)
    for name in ("generate.py", "train.py"):
        shutil.copy(EXAMPLE / name, folder / name)
    _config(folder)
    return folder


@pytest.fixture
def client(shipway_home: Path) -> Iterator[shipway.Client]:
    c = shipway.Client()
    try:
        yield c
    finally:
        c.store.close()


def _py(project: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, *args], cwd=project, env=serve_env(Path(os.environ["SHIPWAY_HOME"])),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _data(project: Path, name: str, rows: int, seed: int, drift: bool = False) -> Path:
    out = project / "data" / name
    _py(project, "generate.py", "--rows", str(rows), "--seed", str(seed),
        "--out", str(out), *(["--drift"] if drift else []))  # fmt: skip
    return out


def _champion(project: Path, rows: int = 600) -> shipway.ModelVersionInfo:
    """A champion trained on ``rows`` old rows, under the alias `champion`."""
    _data(project, "old.parquet", rows, seed=3)
    _py(project, "train.py", "--data", "data/old.parquet")
    newest = shipway.list_versions("credit")[-1]
    return shipway.set_alias(newest.uri, "champion")


def _alias(alias: str) -> int:
    return shipway.get_model_version(f"models:/credit@{alias}").version


# -- a production deployment with traffic -------------------------------------------------------


@pytest.fixture
def production(shipway_home: Path) -> Iterator[list[str]]:
    """Brings `production` down after the test, whatever happened."""
    started: list[str] = []
    yield started
    bring_down(started)


def _deploy(uri: str, started: list[str]) -> str:
    set_policy("production", "none")
    started.append("production")
    return control.deploy(uri, "production", port=free_port()).url


class Traffic:
    """Applicants posted to ``url`` from a few threads until stopped (the canary needs
    requests to judge)."""

    def __init__(self, url: str, rows: pd.DataFrame, workers: int = 3) -> None:
        frame = rows[FEATURES].head(200).astype(object)
        self.rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                     for r in frame.to_dict(orient="records")]  # fmt: skip
        self.url, self.workers = url, workers
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _run(self, offset: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = offset
            while not self._stop.is_set():
                row = self.rows[i % len(self.rows)]
                try:
                    code = http.post(f"{self.url}/predict", json=[row]).status_code
                except httpx.HTTPError:
                    code = 0
                with self._lock:
                    self.statuses[code] = self.statuses.get(code, 0) + 1
                i += self.workers
                time.sleep(0.01)

    def __enter__(self) -> Traffic:
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


# The canary of these tests: two short steps, judged against an absolute p99 bound rather than
# against stable's (a replica that just started is slower on its first requests).
CANARY = {"steps": "50,100", "interval": "2s", "max_p99_ms": 3000, "environment": "production"}


# -- (1) a better candidate under an automatic policy is promoted by canary ---------------------


@pytest.mark.slow
def test_a_better_candidate_is_promoted_by_canary_and_becomes_champion(
    project: Path, client: shipway.Client, production: list[str]
) -> None:
    # The example's drifted population widens the gaps by gender somewhat: bound them loosely.
    _config(project, policy={**CANARY, "sensitive": "gender", "max_fairness_regression": 0.15})
    champion = _champion(project)
    url = _deploy(champion.uri, production)
    set_policy("production", "automatic", [{"metric": "roc_auc", "at_least": 0.7}])
    new = _data(project, "new.parquet", 5000, seed=9, drift=True)
    lines: list[str] = []
    with Traffic(url, pd.read_parquet(new)) as traffic:
        result = retrain("credit", directory=project, client=client, say=lines.append)
    assert result.decision == "promoted", (result.summary, lines)
    assert traffic.statuses.get(200, 0) > 0 and set(traffic.statuses) == {200}, traffic.statuses
    candidate = shipway.get_model_version(result.candidate or "")
    assert candidate.version == champion.version + 1
    assert result.data == str(new)  # the newest data file
    # the production alias moved with the canary's promotion, the champion alias with it
    assert records.get_deployment("production").live_version == candidate.version
    assert _alias("production") == candidate.version
    assert _alias("champion") == candidate.version
    with pytest.raises(NotFoundError):
        shipway.get_model_version("models:/credit@challenger")
    # the automatic policy's rules decided, with their evidence
    approval = next(a for a in list_approvals("production") if a.id == result.approval)
    assert approval.status == "approved" and approval.decided_by == "policy:production"
    # both evaluated on the same rows; the comparison is stored with the run
    comparison = result.comparison or {}
    assert comparison["candidate"]["rows"] == comparison["champion"]["rows"] == 1250
    assert {c["name"] for c in comparison["checks"]} == {
        "schema", "roc_auc", "fairness.demographic_parity_difference",
        "fairness.equalized_odds_difference",
    }  # fmt: skip
    run = get_pipeline_run(result.run_id)
    assert run.trigger == "retrain:manual" and run.status == "succeeded"
    assert [s.name for s in run.stages] == ["train", "compare", "approval", "promote", "report"]
    assert run.context["comparison"] == comparison and run.context["decision"] == "promoted"
    html = Path(result.report or "").read_text()
    assert "promoted" in html and candidate.uri in html and champion.uri in html
    actions = [e.action for e in shipway.audit_log()]
    assert {"pipeline.start", "pipeline.succeeded", "approval.approve", "alias.set"} <= set(actions)


# -- (2) a worse candidate waits for a person, and the report says why ---------------------------


@pytest.mark.slow
def test_a_worse_candidate_is_not_promoted_and_waits_for_a_person(
    project: Path, client: shipway.Client
) -> None:
    # a training command that stops after three boosting rounds learns too little
    _config(project, command=f"{PYTHON} train.py --max-iter 3")
    champion = _champion(project, rows=5000)  # production's policy is manual by default
    _data(project, "new.parquet", 5000, seed=9)
    result = retrain("credit", directory=project, client=client)
    assert result.decision == "waiting", result.summary
    candidate = shipway.get_model_version("models:/credit@challenger")
    assert result.candidate == candidate.uri and candidate.version == champion.version + 1
    assert _alias("champion") == champion.version
    pending = list_approvals("production", status="pending")
    assert [(a.version, a.id) for a in pending] == [(candidate.version, result.approval)]
    assert "did not promote it" in (pending[0].comment or "")
    # why: the metric's improvement is below the margin, said with the numbers
    assert any("is below the margin 0.005" in r for r in result.reasons), result.reasons
    html = Path(result.report or "").read_text()
    assert "is below the margin" in html and "waiting" in html
    assert f"shipway approvals approve {result.approval}" in result.summary
    assert get_pipeline_run(result.run_id).status == "waiting"
    # it continues only once a person approves
    with pytest.raises(ApprovalRequiredError):
        resume(result.run_id, directory=project, client=client)


# -- (3) the test: a drift alert triggers a retraining promoted by the policy ------------


@pytest.mark.slow
def test_a_drift_alert_from_monitor_watch_triggers_a_retraining_that_is_promoted(
    project: Path, client: shipway.Client, production: list[str], shipway_home: Path
) -> None:
    _config(project, policy=CANARY, triggers={"drift": True})
    champion = _champion(project)
    url = _deploy(champion.uri, production)  # production's policy: none
    new = _data(project, "new.parquet", 5000, seed=9, drift=True)
    hook = shlex.join([sys.executable, "-m", "shipway.cli", "retrain", "credit",
                       "--trigger", "drift", "--detach", "--dir", str(project)])  # fmt: skip
    with Traffic(url, pd.read_parquet(new)):
        watched = run_cli(
            shipway_home, "monitor", "watch", "models:/credit@champion", "--current", str(new),
            "--every", "1h", "--runs", "1", "--command", hook,
        )  # fmt: skip
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert "Hooks fired on 1 run(s)" in watched.stdout
        run = _finished_retraining(shipway_home)
    assert run.trigger == "retrain:drift" and run.status == "succeeded", (run.summary, _logs())
    assert run.context["decision"] == "promoted"
    alert = list_results("credit", limit=1)[0]
    assert alert.drift.drifted and run.context["alert"] == alert.id
    version = shipway.get_model_version(str(run.context["uri"])).version
    assert version == champion.version + 1
    assert records.get_deployment("production").live_version == version
    assert _alias("champion") == version


def _finished_retraining(home: Path, within_s: float = 240) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        runs = [r for r in list_pipeline_runs(model="credit") if r.trigger.startswith("retrain:")]
        if runs and runs[0].status != "running":
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no retraining finished within {within_s} s: {_logs()}")


def _logs() -> str:
    folder = Path(os.environ["SHIPWAY_HOME"]) / "retrain"
    return "\n".join(p.read_text()[-3000:] for p in sorted(folder.glob("*.log")))


# -- (4) the data trigger: only when the data's hash changed -------------------------------------


@pytest.mark.slow
def test_the_scheduler_retrains_only_when_the_data_changed(
    project: Path, client: shipway.Client, shipway_home: Path
) -> None:
    _config(project, triggers={"data": "data/*.parquet"})
    _champion(project)
    first = run_scheduler(project, client=client, once=True)  # never retrained on this data
    assert [r.trigger for r in first] == ["data"]
    assert run_scheduler(project, client=client, once=True) == []  # nothing changed
    again = run_cli(shipway_home, "scheduler", "run", "--once", "--dir", str(project))
    assert again.returncode == 0 and "no trigger fired" in again.stdout, again.stdout
    assert len(shipway.list_versions("credit")) == 2
    new = _data(project, "new.parquet", 2000, seed=9, drift=True)
    second = run_scheduler(project, client=client, once=True)
    assert [(r.trigger, r.data) for r in second] == [("data", str(new))]
    run = get_pipeline_run(second[0].run_id)
    assert run.trigger == "retrain:data"
    assert run.context["data_hash"] == data_hash("data/*.parquet", project)
    assert "the data changed" in str(run.context["trigger_reason"])
    assert len(shipway.list_versions("credit")) == 3


# -- (5) the spec: clear errors, cron included ---------------------------------------------------


def _parse(text: str) -> Any:
    return parse_retrain_spec(text, Path("/p/shipway.yaml"))


BASE = (
    "pipeline:\n  model: credit\n  stages:\n"
    "    - {name: train, uses: train, with: {command: python train.py}}\n"
)


def test_a_bad_cron_schedule_names_the_line_the_field_and_the_fix() -> None:
    text = BASE + "retrain:\n  data: d.parquet\n  label: y\n  triggers:\n    schedule: '0 3 * *'\n"
    with pytest.raises(InvalidInputError) as err:
        _parse(text)
    message = str(err.value)
    assert "/p/shipway.yaml, line 9: retrain.triggers.schedule:" in message
    assert "'0 3 * *' is not a cron expression" in message and "'0 3 * * *'" in message


@pytest.mark.parametrize(
    ("retrain", "expected"),
    [
        ("{data: d, label: y, policy: {min_improvment: 0.1}}",
         "retrain.policy.min_improvment: unknown field"),
        ("{data: d, label: y, policy: {steps: '50,10'}}", "retrain.policy.steps: Step 10"),
        ("{data: d, label: y, policy: {interval: soon}}", "retrain.policy.interval: Cannot read"),
        ("{data: d}", "retrain.label: this field is required"),
    ],
)  # fmt: skip
def test_spec_errors_name_the_field(retrain: str, expected: str) -> None:
    with pytest.raises(InvalidInputError, match=expected.replace(".", r"\.")):
        _parse(BASE + f"retrain: {retrain}\n")


def test_the_spec_takes_model_and_command_from_the_pipeline() -> None:
    spec = _parse(BASE + "retrain: {data: 'data/*.parquet', label: default}\n")
    assert (spec.model, spec.command, spec.dataset) == ("credit", "python train.py", "evaluation")
    assert spec.policy.metric == "roc_auc" and spec.policy.min_improvement == 0.005
    assert spec.data_pattern == "data/*.parquet"
    with pytest.raises(InvalidInputError) as err:
        _parse("retrain: {data: d, label: y}\n")
    assert "retrain.model: this field is required" in str(err.value)
    assert "train" in (err.value.hint or "")


def test_the_training_command_gets_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data" / "new.parquet"
    assert training_command("python train.py", data, tmp_path) == (
        "python train.py --data data/new.parquet"
    )
    assert training_command("python t.py --in {data} -q", data, tmp_path) == (
        "python t.py --in data/new.parquet -q"
    )


def test_newest_data_and_the_hash_of_what_a_glob_matches(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    old, new = tmp_path / "data" / "b.parquet", tmp_path / "data" / "a.parquet"
    old.write_bytes(b"old")
    os.utime(old, (1, 1))
    assert data_hash("data/*.parquet", tmp_path) is not None
    before = data_hash("data/*.parquet", tmp_path)
    new.write_bytes(b"new")
    assert newest_data("data/*.parquet", tmp_path) == new
    assert data_hash("data/*.parquet", tmp_path) != before
    assert data_hash("nothing/*.csv", tmp_path) is None
    with pytest.raises(NotFoundError, match="No training data matches"):
        newest_data("nothing/*.csv", tmp_path)


def test_the_cron_trigger_fires_once_a_time_has_passed(
    shipway_home: Path, client: shipway.Client
) -> None:
    spec = _parse(BASE + "retrain: {data: d, label: y, triggers: {schedule: '0 3 * * *'}}\n")
    start = datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    assert due(spec, client=client, now=start.replace(minute=59), since=start)[0] is None
    trigger, why = due(spec, client=client, now=start.replace(hour=3, minute=1), since=start)
    assert trigger == "schedule" and "2030-01-01 03:00" in why


def test_a_one_shot_scheduler_run_fails_with_the_retrainings_error(
    tmp_path: Path, shipway_home: Path
) -> None:
    (tmp_path / "shipway.yaml").write_text(
        "retrain:\n  model: credit\n  command: python train.py\n  data: data/*.parquet\n"
        "  label: default\n  triggers: {schedule: '* * * * *'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "scheduler", "run", "--once", "--dir",
         str(tmp_path)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No training data matches 'data/*.parquet'" in result.stderr
    assert "Traceback" not in result.stderr
