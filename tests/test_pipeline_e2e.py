"""The pipeline end to end on a throwaway git repository holding the example project: the whole
pipeline through a staging deployment on the local target, validation failures that stop it
before anything is built, a manual gate that waits for an approver, and the run records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipway
from serving_helpers import free_port
from shipway.governance.approvals import approve, list_approvals
from shipway.packaging.images import list_images
from shipway.pipeline.records import get_pipeline_run, list_pipeline_runs
from shipway.pipeline.runner import run_pipeline
from shipway.pipeline.spec import load_spec

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "credit"
FILES = ("generate.py", "train.py", "request.py", "ruff.toml", "shipway.yaml", "tests")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def make_project(root: Path, pipeline: str | None = None) -> Path:
    """A git repository holding the example project (its own pipeline, or ``pipeline``)."""
    repo = root / "repo"
    project = repo / "credit"
    project.mkdir(parents=True)
    for name in FILES:
        src = EXAMPLE / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, project / name)
    if pipeline is not None:
        engine = (project / "shipway.yaml").read_text().split("\n# The pipeline")[0]
        (project / "shipway.yaml").write_text(engine + "\n" + pipeline)
    (repo / ".gitignore").write_text("data/\n__pycache__/\nreports/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the example project")
    return project


@pytest.fixture
def python_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages run `python ...`: the interpreter running the tests."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def staging_port(shipway_home: Path) -> Iterator[int]:
    port = free_port()
    yield port
    from shipway.deploy.control import down
    from shipway.deploy.records import find_deployment

    for env in ("staging", "production"):
        if find_deployment(env) is not None:
            down(env)


def test_the_whole_pipeline_runs_through_staging(
    shipway_home: Path, tmp_path: Path, python_on_path: None, staging_port: int
) -> None:
    project = make_project(tmp_path)
    spec_file = project / "shipway.yaml"
    spec_file.write_text(
        spec_file.read_text().replace(
            "with: {environment: staging}", f"with: {{environment: staging, port: {staging_port}}}"
        )
    )
    git(project.parent, "commit", "-qam", "staging port")
    result = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "pipeline", "run", "--to", "smoke"],
        cwd=project, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    runs = list_pipeline_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "succeeded" and run.trigger == "manual" and run.branch == "main"
    assert run.commit == git(project.parent, "rev-parse", "HEAD") and not run.dirty
    names = [s.name for s in run.stages]
    assert names == [
        "test", "lint", "security", "data", "train", "validate", "deploy-staging", "smoke"
    ]  # fmt: skip
    assert all(s.status == "passed" and s.seconds is not None for s in run.stages)
    assert run.context["uri"] == "models:/credit/1"
    validate = run.stages[names.index("validate")]
    checked = {c["name"]: c for c in validate.checks}
    assert checked["roc_auc"]["passed"] and checked["roc_auc"]["value"] >= 0.75
    assert checked["schema"]["passed"] and checked["fairness.demographic_parity_difference"]
    assert checked["champion.roc_auc"]["detail"].startswith("no champion yet")
    data = run.stages[names.index("data")]
    assert list(data.artifacts) == ["data/credit.parquet"]  # the output, content-addressed
    client = shipway.Client()
    stored = client.artifacts.get_bytes(data.artifacts["data/credit.parquet"])
    assert stored == (project / "data" / "credit.parquet").read_bytes()
    log = client.artifacts.get_bytes(str(run.stages[names.index("train")].log)).decode()
    assert "python train.py" in log and "Registered models:/credit/1" in log
    trained = shipway.get_run(str(shipway.get_model_version("models:/credit/1").run_id))
    assert trained.tags["pipeline_run"] == run.id  # the version leads back to this pipeline run
    made = shipway.lineage("models:/credit/1")["pipeline"]
    assert made["id"] == run.id and made["commit"] == run.commit
    assert made["stages"]["validate"] == "passed" and made["status"] == "succeeded"
    from shipway.deploy.records import get_deployment

    staging = get_deployment("staging")
    assert (staging.model, staging.live_version, staging.port) == ("credit", 1, staging_port)

    shown = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "pipeline", "show", run.id[:6]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0 and "roc_auc" in shown.stdout and "smoke" in shown.stdout
    logs = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "pipeline", "logs", run.id, "validate"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "PASS roc_auc" in logs.stdout


FAILING = """\
pipeline:
  model: credit
  stages:
    - name: data
      run: python generate.py --rows 2000
    - name: train
      uses: train
      with: {{command: "python train.py"}}
    - name: validate
      uses: validate
      with:
        label: default
        thresholds: {{{thresholds}}}
        {fairness}
    - name: build
      uses: build
    - name: deploy
      uses: deploy
      with: {{environment: staging}}
"""


def test_a_model_under_its_threshold_stops_at_validate_and_nothing_is_built(
    shipway_home: Path, tmp_path: Path, python_on_path: None
) -> None:
    project = make_project(
        tmp_path, FAILING.format(thresholds='roc_auc: ">= 0.75", accuracy: ">= 0.99"', fairness="")
    )
    run = run_pipeline(load_spec(project))
    assert run.status == "failed"
    assert [(s.name, s.status) for s in run.stages] == [
        ("data", "passed"), ("train", "passed"), ("validate", "failed")
    ]  # fmt: skip
    assert run.summary is not None and run.summary.startswith("validate failed: accuracy = 0.")
    assert "is not >= 0.99" in run.summary
    failed = [c for c in run.stages[-1].checks if not c["passed"]]
    assert [c["name"] for c in failed] == ["accuracy"]
    assert list_images("models:/credit/1") == []  # nothing was built
    from shipway.deploy.records import find_deployment

    assert find_deployment("staging") is None  # nor deployed


def test_a_fairness_regression_stops_at_validate(
    shipway_home: Path, tmp_path: Path, python_on_path: None
) -> None:
    fairness = "fairness: {sensitive: gender, max_demographic_parity_difference: 0.05}"
    project = make_project(tmp_path, FAILING.format(thresholds='roc_auc: ">= 0.7"',
                                                    fairness=fairness))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "pipeline", "run"],
        cwd=project, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    assert "validate failed: demographic_parity_difference by gender = 0." in " ".join(
        result.stdout.split()
    )
    assert "Traceback" not in result.stdout + result.stderr
    run = list_pipeline_runs()[0]
    assert [s.name for s in run.stages] == ["data", "train", "validate"]
    assert list_images("models:/credit/1") == []


GATED = """\
pipeline:
  model: credit
  stages:
    - name: data
      run: python generate.py --rows 2000
    - name: train
      uses: train
      with: {command: "python train.py"}
    - name: gate
      uses: gate
      with: {environment: production, timeout: 5m}
    - name: after
      run: echo "went through the gate with $SHIPWAY_PIPELINE_URI"
"""


def test_a_manual_gate_waits_until_an_approver_approves(
    shipway_home: Path, tmp_path: Path, python_on_path: None
) -> None:
    project = make_project(tmp_path, GATED)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipway.cli", "pipeline", "run"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        pending: list[object] = []
        while not pending and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            pending = list_approvals("production", status="pending")
        assert pending, "the gate should have asked for an approval"
        time.sleep(2)
        assert proc.poll() is None, "the gate must wait for the approver"
        run = list_pipeline_runs()[0]
        assert [(s.name, s.status) for s in run.stages][-1] == ("gate", "running")
        alice = shipway.Client(shipway.Settings(actor="alice"))
        approve(pending[0].id, comment="looks good", client=alice)  # type: ignore[attr-defined]
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    run = get_pipeline_run(list_pipeline_runs()[0].id)
    gate = next(s for s in run.stages if s.name == "gate")
    assert gate.status == "passed" and "approved for production by alice" in str(gate.detail)
    client = shipway.Client()
    log = client.artifacts.get_bytes(str(run.stages[-1].log)).decode()
    assert "went through the gate with models:/credit/1" in log


def test_a_rejection_fails_the_gate_with_the_reason(
    shipway_home: Path, tmp_path: Path, python_on_path: None
) -> None:
    project = make_project(tmp_path, GATED)
    spec = load_spec(project)
    run_pipeline(spec, stop="train")
    from shipway.governance.approvals import reject, request_approval

    asked = request_approval("models:/credit/1", "production")
    bo = shipway.Client(shipway.Settings(actor="bo"))
    reject(asked.id, comment="the data is stale", client=bo)
    run = run_pipeline(spec, start="gate")  # continues the run of this commit
    assert run.status == "failed"
    assert [s.name for s in run.stages] == ["data", "train", "gate"]
    assert "rejected for production by bo" in str(run.summary)
