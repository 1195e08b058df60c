"""`shipway pipeline run` through a team server (SHIPWAY_TRACKING_URI and SHIPWAY_TOKEN).

One live server over one store for the module. The pipeline runs as the CLI runs it, in a
throwaway git repository with a home of its own: the run record, stage logs and output files
must end up in the server's store (read back both through the server and from its store
directly), attributed to the token's user, and nothing in the runner's local store.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipway
from server_helpers import Team, module_store, team_server
from serving_helpers import free_port
from shipway.errors import ForbiddenError
from shipway.pipeline.records import get_pipeline_run, list_pipeline_runs
from shipway.pipeline.runner import run_pipeline
from shipway.pipeline.spec import load_spec
from test_remote import _close_connections, remote_client

__all__ = ["_close_connections"]  # the autouse fixture closing each test's connections

MODEL = "remote-pipe"

TRAIN = """\
import numpy as np
import pandas as pd
import shipway
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
df = x.assign(label=((x["a"] + 0.3 * rng.normal(size=400)) > 0).astype(int))
train, test = df.iloc[:300], df.iloc[300:]
with shipway.start_run(experiment="remote-pipe") as run:
    run.log_dataset(train, name="train", role="training")
    run.log_dataset(test, name="holdout", role="evaluation")
    model = LogisticRegression().fit(train[["a", "b"]], train["label"])
    signature = shipway.infer_signature(train[["a", "b"]].head(20), model)
    run.log_model(model, signature=signature)
version = shipway.register_model(run, "remote-pipe")
print(f"Registered {version.uri}")
"""

STAGING_PORT = free_port()
PIPELINE = f"""\
pipeline:
  model: {MODEL}
  stages:
    - name: make
      run: mkdir -p out && echo "made on the runner" > out/report.txt
      outputs: [out/report.txt]
    - name: train
      uses: train
      with: {{command: "{sys.executable} train.py"}}
    - name: validate
      uses: validate
      with:
        dataset: evaluation
        label: label
        thresholds: {{accuracy: ">= 0.7"}}
    - name: gate
      uses: gate
      with: {{environment: production, timeout: 30s}}
    - name: deploy
      uses: deploy
      with: {{environment: staging, port: {STAGING_PORT}}}
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "shipway.yaml").write_text(PIPELINE)
    (project / "train.py").write_text(TRAIN)
    (project / ".gitignore").write_text("out/\n__pycache__/\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "a pipeline")
    return project


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("pipeline-server-home")
    with module_store(home) as client, team_server(client) as team:
        yield team


@pytest.fixture
def runner_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runner's own home: nothing may land in its store."""
    home = tmp_path / "runner-home"
    home.mkdir()
    monkeypatch.setenv("SHIPWAY_HOME", str(home))
    return home


def cli(
    team: Team, role: str, home: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(SHIPWAY_HOME=str(home), SHIPWAY_TRACKING_URI=team.url,
               SHIPWAY_TOKEN=team.tokens[role])  # fmt: skip
    for var in ("SHIPWAY_DATABASE_URL", "SHIPWAY_ARTIFACT_URL", "SHIPWAY_ACTOR"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "shipway.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_a_pipeline_runs_through_the_server_stage_by_stage(
    team: Team, tmp_path: Path, runner_home: Path
) -> None:
    project = make_project(tmp_path)
    commit = git(project, "rev-parse", "HEAD")

    first = cli(team, "developer", runner_home, "pipeline", "run", "--to", "train", cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = [r for r in list_pipeline_runs(model=MODEL, client=team.client) if r.commit == commit]
    assert len(runs) == 1
    run_id = runs[0].id

    # A second invocation of one stage (as an exported CI job runs) continues the same run.
    second = cli(team, "developer", runner_home, "pipeline", "run", "--only", "validate",
                 cwd=project)  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    assert run_id in second.stdout
    assert not (runner_home / "shipway.db").exists()  # nothing in the runner's own store

    run = get_pipeline_run(run_id, client=team.client)  # the server's store itself
    assert run.status == "succeeded" and run.created_by == "dana"
    assert (run.commit, run.branch, run.model) == (commit, "main", MODEL)
    assert [(s.name, s.status) for s in run.stages] == [
        ("make", "passed"), ("train", "passed"), ("validate", "passed")
    ]  # fmt: skip
    assert run.context["uri"] == f"models:/{MODEL}/1"
    make, train, validate = run.stages
    digest = make.artifacts["out/report.txt"]
    assert team.client.artifacts.get_bytes(digest) == b"made on the runner\n"
    train_log = team.client.artifacts.get_bytes(str(train.log)).decode()
    assert f"Registered models:/{MODEL}/1" in train_log
    checks = {c["name"]: c for c in validate.checks}
    assert checks["accuracy"]["passed"] and checks["accuracy"]["value"] >= 0.7
    assert checks["schema"]["passed"]
    assert "dataset holdout" in checks["data"]["detail"]  # the held-out blob, from the server
    trained = shipway.get_run(str(shipway.get_model_version(f"models:/{MODEL}/1",
                                                            client=team.client).run_id),
                              client=team.client)  # fmt: skip
    assert trained.tags["pipeline_run"] == run_id and trained.actor == "dana"
    audit = shipway.audit_log(limit=1000, subject=f"pipeline:{run_id}", client=team.client)
    assert [(e.action, e.actor) for e in audit] == [
        ("pipeline.start", "dana"), ("pipeline.succeeded", "dana"),
        ("pipeline.resume", "dana"), ("pipeline.succeeded", "dana"),
    ]  # fmt: skip

    # Read back through the server, as a viewer: the same record, the log and the output.
    viewer = remote_client(team.url, team.tokens["viewer"])
    assert get_pipeline_run(run_id[:8], client=viewer) == run
    logs = cli(team, "viewer", runner_home, "pipeline", "logs", run_id, "validate")
    assert logs.returncode == 0, logs.stderr
    assert "PASS accuracy" in logs.stdout
    shown = cli(team, "viewer", runner_home, "pipeline", "show", run_id)
    assert shown.returncode == 0 and "out/report.txt" in shown.stdout
    from shipway.blobs import get_blob

    assert get_blob(viewer, digest) == b"made on the runner\n"

    # The gate asks through the server; an approver's approval lets the version through.
    from shipway.governance.approvals import approve, request_approval

    developer = remote_client(team.url, team.tokens["developer"])
    asked = request_approval(f"models:/{MODEL}/1", "production", client=developer)
    approve(asked.id, comment="fine", client=remote_client(team.url, team.tokens["approver"]))
    gated = cli(team, "developer", runner_home, "pipeline", "run", "--only", "gate", cwd=project)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    gate = get_pipeline_run(run_id, client=team.client).stages[-1]
    assert (gate.name, gate.status) == ("gate", "passed")
    assert "already approved by avery" in str(gate.detail)

    # The deploy stage deploys through the server: the environment runs on its machine.
    from shipway.deploy import control
    from shipway.deploy.records import find_deployment

    try:
        deployed = cli(team, "developer", runner_home, "pipeline", "run", "--only", "deploy",
                       cwd=project)  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        staging = find_deployment("staging", client=team.client)
        assert staging is not None and (staging.model, staging.live_version) == (MODEL, 1)
        assert staging.port == STAGING_PORT
    finally:
        if find_deployment("staging", client=team.client) is not None:
            control.down("staging", client=team.client)


@pytest.mark.slow
def test_a_viewer_cannot_start_a_pipeline_run(
    team: Team, tmp_path: Path, runner_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    result = cli(team, "viewer", runner_home, "pipeline", "run", cwd=project)
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    assert "vic (viewer) may not start a pipeline run: needs developer" in out
    assert "Traceback" not in out
    assert not (project / "out").exists()  # refused before any stage ran

    monkeypatch.setenv("SHIPWAY_TRACKING_URI", team.url)
    monkeypatch.setenv("SHIPWAY_TOKEN", team.tokens["viewer"])
    with pytest.raises(ForbiddenError, match="may not start a pipeline run"):
        run_pipeline(load_spec(project))
    with team.http("viewer") as http:
        r = http.post("/api/v1/pipelines", json={"model": MODEL})
    assert r.status_code == 403
    assert r.json()["error"] == "vic (viewer) may not start a pipeline run: needs developer."
    commit = git(project, "rev-parse", "HEAD")
    assert list_pipeline_runs(model=MODEL, commit=commit, client=team.client) == []


@pytest.mark.slow
def test_a_stage_record_must_name_uploaded_blobs_and_its_own_stage(team: Team) -> None:
    with team.http("developer") as http:
        started = http.post("/api/v1/pipelines", json={"model": "blobs", "commit": "c0ffee"})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        assert started.json()["created_by"] == "dana"
        stage = {"name": "make", "kind": "run", "status": "passed", "log": "0" * 64}
        r = http.put(f"/api/v1/pipelines/{run_id}/stages/make", json={"stage": stage})
        assert r.status_code == 409 and "not uploaded yet" in r.json()["error"]
        r = http.put(f"/api/v1/pipelines/{run_id}/stages/other", json={"stage": stage})
        assert r.status_code == 422 and "the path names 'other'" in r.json()["error"]
        r = http.put(f"/api/v1/pipelines/{run_id}/stages/make",
                     json={"stage": stage | {"log": "../etc"}})  # fmt: skip
        assert r.status_code == 422 and "not a SHA-256 digest" in r.json()["error"]
        r = http.post("/api/v1/pipelines", json={"model": "blobs", "actor": "mallory"})
        assert r.status_code == 422  # extra fields are refused
        log = b"the log\n"
        sha = hashlib.sha256(log).hexdigest()
        assert http.put(f"/api/v1/artifacts/{sha}", content=log).status_code == 200
        stage["log"] = sha
        r = http.put(f"/api/v1/pipelines/{run_id}/stages/make",
                     json={"stage": stage, "context": {"k": "v"}})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["stages"][0]["log"] == sha and r.json()["context"] == {"k": "v"}
        found = http.get("/api/v1/pipelines", params={"model": "blobs", "commit": "c0ffee"})
        assert [x["id"] for x in found.json()] == [run_id]
        assert http.get("/api/v1/pipelines", params={"commit": "other"}).json() == []
        ended = http.post(f"/api/v1/pipelines/{run_id}/finish",
                          json={"status": "failed", "summary": "stopped"})  # fmt: skip
        assert ended.json()["status"] == "failed" and ended.json()["ended_at"] is not None
        resumed = http.post(f"/api/v1/pipelines/{run_id}/resume")
        assert resumed.json()["status"] == "running" and resumed.json()["ended_at"] is None
