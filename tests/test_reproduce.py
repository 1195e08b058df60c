"""`shipway runs reproduce`: real git repositories, real training scripts, a throwaway store.

The credit example (generate.py and train.py, copied into a fresh repository whose data folder
is ignored, as in this project) is trained once and reproduced from a worktree of its commit,
with its data restored from the logged dataset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

import shipway
from server_helpers import team_server
from shipway import reproduce
from shipway.config import Settings
from shipway.tracking.compare import Check

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "credit"
SHIPWAY = [sys.executable, "-m", "shipway.cli"]

UNSEEDED = """\
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import shipway

rng = np.random.default_rng()  # no seed: every run draws other data
X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
y = (X["a"] + rng.normal(scale=0.5, size=60) > 0).astype(int)
with shipway.start_run("unseeded") as run:
    run.log_dataset(X.assign(y=y), name="train")
    model = LogisticRegression().fit(X, y)
    # A continuous metric: two draws' accuracies (multiples of 1/60) can coincide.
    run.log_metric("log_loss", float(log_loss(y, model.predict_proba(X))))
    run.log_model(model, input_example=X.head())
print(run.id)
"""

FROM_CSV = """\
import sys

import pandas as pd
from sklearn.linear_model import LogisticRegression

import shipway

df = pd.read_csv("points.csv")
with shipway.start_run("csv", seed=int(sys.argv[1])) as run:
    run.log_dataset(df, name="points", path="points.csv")
    model = LogisticRegression().fit(df[["x"]], df["y"])
    run.log_metric("accuracy", float(model.score(df[["x"]], df["y"])))
    run.log_model(model, input_example=df[["x"]].head())
print(run.id)
"""


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _commit_all(repo: Path) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "train")
    return _git(repo, "rev-parse", "HEAD")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHIPWAY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
        timeout=300,
    )


def _python(script: str, *args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def workspace(tmp_path: Path, shipway_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Git that sees no repository above tmp_path and no developer config; temporary
    directories (the reproduction's worktrees) under tmp_path."""
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _repo(workspace: Path, name: str) -> Path:
    repo = workspace / name
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "tester@example.com")
    _git(repo, "config", "user.name", "Tester")
    return repo


@pytest.fixture
def credit(workspace: Path) -> Path:
    """A project holding the credit example in `credit/`, committed, its data generated but
    ignored (so only the logged dataset can bring it back)."""
    repo = _repo(workspace, "project")
    (repo / "credit").mkdir()
    for script in ("generate.py", "train.py"):
        shutil.copy(EXAMPLE / script, repo / "credit" / script)
    (repo / ".gitignore").write_text("credit/data/\n")
    _commit_all(repo)
    _python("generate.py", "--rows", "600", cwd=repo / "credit")
    return repo


def _train_credit(repo: Path) -> str:
    out = _python("train.py", "--max-iter", "20", cwd=repo / "credit")
    match = re.search(r"from run ([0-9a-f]{12})", out)
    assert match, out
    return shipway.get_run(match.group(1)).id


def _checks(report: shipway.ReproduceReport) -> dict[tuple[str, str], Check]:
    return {(c.kind, c.name): c for c in report.checks}


def _worktrees(repo: Path) -> list[str]:
    listed = _git(repo, "worktree", "list", "--porcelain").splitlines()
    return [line for line in listed if line.startswith("worktree ")]


# =============================================================================
# Reproducing
# =============================================================================


@pytest.mark.slow
def test_a_clean_run_reproduces_with_no_difference(credit: Path, workspace: Path) -> None:
    run_id = _train_credit(credit)
    recorded = shipway.get_run(run_id)
    assert "credit/data/credit.parquet" not in _git(credit, "ls-files")

    report = reproduce(run_id)

    assert report.reproduced, report.differences
    assert report.exit_code == 0 and report.causes == []
    assert report.command == ["train.py", "--max-iter", "20"] and report.workdir == "credit"
    assert report.restored == ["credit/data/credit.parquet"]
    by_kind = _checks(report)
    for metric, value in recorded.metrics.items():
        check = by_kind[("metric", metric)]
        assert (check.recorded, check.new, check.verdict) == (value, value, "same")
        assert check.difference == 0.0
    for name in ("credit", "credit-train", "credit-test"):
        assert by_kind[("dataset", name)].verdict == "same"
    (output,) = [c for c in report.checks if c.kind == "output"]
    assert output.name.startswith("model on 'credit-test'")
    assert output.verdict == "same" and output.difference is not None
    assert output.difference <= 1e-6
    assert by_kind[("environment", "seed")].new == 7
    assert by_kind[("environment", "commit")].verdict == "same"

    new = shipway.get_run(str(report.new_run_id))
    assert new.id != run_id and new.status == "finished"
    assert new.tags["reproduces"] == run_id
    assert new.environment["git"]["commit"] == recorded.environment["git"]["commit"]
    assert report.worktree is None
    assert len(_worktrees(credit)) == 1  # the temporary worktree is gone
    assert not list((workspace / "temp").glob("shipway-reproduce-*"))


@pytest.mark.slow
def test_a_dirty_run_that_changed_results_names_the_dirty_tree(credit: Path) -> None:
    train = credit / "credit" / "train.py"
    train.write_text(train.read_text().replace("default=0.05", "default=0.3"))  # uncommitted
    run_id = _train_credit(credit)
    git = shipway.get_run(run_id).environment["git"]
    assert git["dirty"] is True

    result = _cli("runs", "reproduce", run_id[:12], cwd=credit / "credit")

    assert result.returncode == 4, result.stderr
    out = result.stdout
    assert "Not reproduced" in out
    assert "Likely causes:" in out
    causes = out.split("Likely causes:", 1)[1]
    assert f"the tree was dirty when recorded (diff digest {git['diff_digest'][:12]}" in causes
    assert "no seed" not in causes
    assert re.search(r"learning_rate\s+│\s+0\.3\s+│\s+0\.05\s+│.*differs", out)
    assert re.search(r"roc_auc\s+│.*differs", out)


@pytest.mark.slow
def test_a_run_without_a_seed_differs_and_names_the_missing_seed(workspace: Path) -> None:
    repo = _repo(workspace, "unseeded")
    (repo / "train.py").write_text(UNSEEDED)
    commit = _commit_all(repo)
    run_id = _python("train.py", cwd=repo).strip()

    result = _cli("runs", "reproduce", run_id, "--json", "--keep", cwd=repo)

    assert result.returncode == 4, result.stderr
    report = json.loads(result.stdout)
    assert report["reproduced"] is False
    checks = {(c["kind"], c["name"]): c for c in report["checks"]}
    assert checks[("metric", "log_loss")]["verdict"] == "differs"
    assert checks[("dataset", "train")]["verdict"] == "differs"
    output = next(c for c in report["checks"] if c["kind"] == "output")
    assert output["verdict"] == "differs" and output["difference"] > 1e-6
    assert checks[("environment", "seed")]["verdict"] == "unchecked"
    assert report["causes"][0].startswith("no seed was recorded")
    assert not any("dirty" in cause for cause in report["causes"])

    kept = Path(report["worktree"])  # --keep: the worktree is left for inspection
    try:
        assert _git(kept, "rev-parse", "HEAD") == commit
        assert (kept / "train.py").read_text() == UNSEEDED
    finally:
        _git(repo, "worktree", "remove", "--force", str(kept))


@pytest.mark.slow
def test_a_csv_read_from_the_repository_root_is_restored(workspace: Path) -> None:
    repo = _repo(workspace, "csv")
    (repo / "train.py").write_text(FROM_CSV)
    (repo / ".gitignore").write_text("points.csv\n")
    _commit_all(repo)
    rows = "\n".join(f"{x / 10},{int(x > 12)}" for x in range(30))
    (repo / "points.csv").write_text(f"x,y\n{rows}\n")
    run_id = _python("train.py", "3", cwd=repo).strip()

    report = reproduce(run_id)

    assert report.reproduced, (report.differences, report.output)
    assert report.restored == ["points.csv"] and report.workdir == "."
    assert report.command == ["train.py", "3"]
    assert _checks(report)[("dataset", "points")].verdict == "same"


# =============================================================================
# Refusals, through the CLI
# =============================================================================


def _rewrite_history(repo: Path) -> None:
    """Make the current commit unreachable and collect it, as a force-push and gc would."""
    _git(repo, "commit", "-q", "--amend", "-m", "rewritten")
    _git(repo, "reflog", "expire", "--expire=now", "--all")
    _git(repo, "gc", "-q", "--prune=now")


@pytest.mark.parametrize("case", ["unknown run", "no commit", "missing commit", "no script"])
def test_what_cannot_be_reproduced_is_refused_in_one_line(
    case: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, expected = "0123456789ab", "Run '0123456789ab' not found"
    if case != "unknown run":
        repo = _repo(workspace, "repo")
        (repo / "train.py").write_text("print('train')\n")
        commit = _commit_all(repo)
        monkeypatch.chdir(repo if case != "no commit" else workspace)
        with shipway.start_run("refused") as run:  # its command is pytest's
            pass
        run_id = run.id
        if case == "no commit":
            expected = f"Run {run_id[:12]} recorded no git commit"
        elif case == "missing commit":
            _rewrite_history(repo)
            expected = f"Commit {commit[:12]} of run {run_id[:12]} is not in {repo}"
        else:
            expected = f"Run {run_id[:12]} was not started by a Python script in {repo}"

    result = _cli("runs", "reproduce", run_id, cwd=workspace)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert expected in lines[0]
    assert not list((workspace / "temp").glob("shipway-reproduce-*"))  # nothing left behind


# =============================================================================
# What a run records for a reproduction
# =============================================================================


def test_log_dataset_records_the_path_it_was_read_from(workspace: Path) -> None:
    (workspace / "data").mkdir()
    with shipway.start_run("paths") as run:
        run.log_dataset(pd.DataFrame({"a": [1, 2]}), name="raw", path="data/raw.parquet")
        run.log_dataset(pd.DataFrame({"a": [3]}), name="derived")

    tags = shipway.get_run(run.id).tags
    assert tags == {"shipway.dataset_path.raw": str(workspace.resolve() / "data/raw.parquet")}


def test_a_run_started_for_a_reproduction_is_tagged(
    shipway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWAY_REPRODUCES", "abc123")
    with shipway.start_run("tagged", tags={"team": "risk"}) as run:
        pass
    assert shipway.get_run(run.id).tags == {"team": "risk", "reproduces": "abc123"}


def test_a_remote_run_records_the_path_too(workspace: Path) -> None:
    local = shipway.Client()
    with team_server(local) as team:
        remote = shipway.Client(Settings(tracking_uri=team.url, token=team.tokens["developer"]))
        try:
            with shipway.start_run("paths", client=remote) as run:
                run.log_dataset(pd.DataFrame({"a": [1]}), name="raw", path="raw.csv")
        finally:
            assert remote.remote is not None
            remote.remote.close()

    tags = shipway.get_run(run.id, client=local).tags
    assert tags == {"shipway.dataset_path.raw": str(workspace.resolve() / "raw.csv")}
    local.store.close()
