"""Behavioural tests for tracked runs: what a run records, and what it captures by itself."""

from __future__ import annotations

import io
import platform
import random
import re
import subprocess
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select

import shipway
from shipway import InvalidInputError, NotFoundError
from shipway.store import tables as t

# =============================================================================
# Helpers
# =============================================================================


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.array([23, 45, 31, 52], dtype="int64"),
            "income": [1200.5, 3400.0, 2100.25, 5000.0],
            "city": pd.Series(["paris", "lyon", "paris", "nice"], dtype="string"),
            "grade": pd.Categorical(["a", "b", "a", "c"]),
        }
    )


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.fixture
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep git from finding any repository above tmp_path or reading a developer's config."""
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def git_repo(isolated_git: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh repository with one committed file, set as the working directory."""
    repo = isolated_git / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "tester@example.com")
    _git(repo, "config", "user.name", "Tester")
    (repo / "train.py").write_text("print('train v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "initial")
    monkeypatch.chdir(repo)
    return repo


@pytest.fixture
def restore_rng() -> Iterator[None]:
    """Seeding a run changes the global generators; give them back afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)


# =============================================================================
# Params, metrics, tags
# =============================================================================


def test_params_are_recorded_as_strings(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        run.log_param("C", 0.5)
        run.log_params({"penalty": "l2", "max_iter": 100})

    assert shipway.get_run(run.id).params == {"C": "0.5", "penalty": "l2", "max_iter": "100"}


def test_metric_last_step_wins_and_every_step_is_stored(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        for step, loss in enumerate([0.9, 0.6, 0.4]):
            run.log_metric("loss", loss, step=step)
        run.log_metrics({"auc": 0.71, "acc": 0.8})
        run.log_metrics({"auc": 0.74})  # same (default) step again: the later value wins

    info = shipway.get_run(run.id)
    assert info.metrics == {"loss": 0.4, "auc": 0.74, "acc": 0.8}

    with run.client.store.read() as session:
        history = session.execute(
            select(t.Metric.step, t.Metric.value)
            .where(t.Metric.run_id == run.id, t.Metric.key == "loss")
            .order_by(t.Metric.step)
        ).all()
    assert [tuple(row) for row in history] == [(0, 0.9), (1, 0.6), (2, 0.4)]


@pytest.mark.parametrize("bad", [float("nan"), "high", None])
def test_metric_that_is_not_a_number_is_refused(shipway_home: Path, bad: object) -> None:
    with (
        shipway.start_run(experiment="credit") as run,
        pytest.raises(InvalidInputError, match="'auc'"),
    ):
        run.log_metric("auc", bad)  # type: ignore[arg-type]
    assert shipway.get_run(run.id).metrics == {}


def test_tags_from_start_run_and_set_tag(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit", tags={"team": "risk"}) as run:
        run.set_tag("stage", 1)
        run.set_tag("team", "fraud")

    assert shipway.get_run(run.id).tags == {"team": "fraud", "stage": "1"}


# =============================================================================
# Datasets and artefacts
# =============================================================================


def test_log_dataset_stores_parquet_that_reads_back_equal(shipway_home: Path) -> None:
    df = _frame()
    with shipway.start_run(experiment="credit") as run:
        ds = run.log_dataset(df, name="credit-train")

    stored = pd.read_parquet(io.BytesIO(run.client.artifacts.get_bytes(ds.blob_digest)))
    pd.testing.assert_frame_equal(stored, df)
    assert ds.num_rows == 4
    assert ds.role == "training"
    assert ds.schema == [
        {"name": "age", "dtype": "int64"},
        {"name": "income", "dtype": "float64"},
        {"name": "city", "dtype": str(df["city"].dtype)},
        {"name": "grade", "dtype": "category"},
    ]
    assert shipway.get_run(run.id).datasets == [ds]


def test_dataset_hash_is_stable_for_equal_data(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run1:
        first = run1.log_dataset(_frame(), name="train")
    with shipway.start_run(experiment="credit") as run2:
        second = run2.log_dataset(_frame(), name="train", role="evaluation")

    assert first.content_hash == second.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", first.content_hash)
    assert shipway.get_run(run2.id).datasets[0].role == "evaluation"


def test_dataset_hash_changes_with_values_and_dtypes(shipway_home: Path) -> None:
    base = _frame()
    changed_value = base.copy()
    changed_value.loc[2, "income"] = 2100.26
    changed_dtype = base.astype({"age": "float64"})  # same numbers, different schema
    with shipway.start_run(experiment="credit") as run:
        hashes = {
            run.log_dataset(frame, name=f"train-{i}").content_hash
            for i, frame in enumerate([base, changed_value, changed_dtype])
        }

    assert len(hashes) == 3


def test_log_dataset_refuses_non_dataframe(shipway_home: Path) -> None:
    with (
        shipway.start_run(experiment="credit") as run,
        pytest.raises(InvalidInputError, match="DataFrame"),
    ):
        run.log_dataset({"a": [1, 2]}, name="train")


def test_log_artifact_stores_the_file(shipway_home: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("confusion matrix\n")
    with shipway.start_run(experiment="credit") as run:
        digest = run.log_artifact(report)
        renamed = run.log_artifact(report, name="reports/eval.txt")
        with pytest.raises(InvalidInputError, match="No file"):
            run.log_artifact(tmp_path / "missing.txt")

    assert digest == renamed
    assert run.client.artifacts.get_bytes(digest) == b"confusion matrix\n"
    assert shipway.get_run(run.id).artifacts == {"report.txt": digest, "reports/eval.txt": digest}


# =============================================================================
# Captured code version
# =============================================================================


def test_git_commit_recorded_for_clean_tree(shipway_home: Path, git_repo: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        pass

    git = shipway.get_run(run.id).environment["git"]
    assert git["commit"] == _git(git_repo, "rev-parse", "HEAD")
    assert git["dirty"] is False
    assert git["diff_digest"] is None
    assert Path(git["repository"]).resolve() == git_repo.resolve()


def test_git_dirty_tree_records_a_diff_digest_that_follows_the_diff(
    shipway_home: Path, git_repo: Path
) -> None:
    def capture() -> dict[str, object]:
        with shipway.start_run(experiment="credit") as run:
            pass
        return shipway.get_run(run.id).environment["git"]

    (git_repo / "train.py").write_text("print('train v2')\n")
    first = capture()
    again = capture()
    (git_repo / "train.py").write_text("print('train v3')\n")
    changed = capture()

    assert first["commit"] == _git(git_repo, "rev-parse", "HEAD")
    assert first["dirty"] is True
    assert isinstance(first["diff_digest"], str)
    assert re.fullmatch(r"[0-9a-f]{64}", first["diff_digest"])
    assert again["diff_digest"] == first["diff_digest"]
    assert changed["dirty"] is True
    assert changed["diff_digest"] != first["diff_digest"]


def test_untracked_files_make_the_tree_dirty_and_enter_the_digest(
    shipway_home: Path, git_repo: Path
) -> None:
    def capture() -> dict[str, object]:
        with shipway.start_run(experiment="credit") as run:
            pass
        return shipway.get_run(run.id).environment["git"]

    (git_repo / "features.py").write_text("SCALE = 1\n")
    first = capture()
    (git_repo / "features.py").write_text("SCALE = 2\n")
    second = capture()

    assert first["dirty"] is True and first["untracked_files"] == 1
    assert second["diff_digest"] != first["diff_digest"]


def test_outside_git_commit_is_none(
    shipway_home: Path, isolated_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = isolated_git / "not-a-repo"
    plain.mkdir()
    monkeypatch.chdir(plain)
    with shipway.start_run(experiment="credit") as run:
        pass

    info = shipway.get_run(run.id)
    assert info.status == "finished"
    assert info.environment["git"]["commit"] is None
    assert info.environment["git"]["dirty"] is None


# =============================================================================
# Captured environment and seeds
# =============================================================================


def test_environment_records_python_platform_and_package_lock(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        pass

    env = shipway.get_run(run.id).environment
    assert env["runtime"]["python"] == platform.python_version()
    assert env["runtime"]["platform"] == platform.platform()
    lock = run.client.artifacts.get_bytes(env["packages"]["lock_digest"]).decode()
    lines = lock.splitlines()
    assert lines, "the package lock is empty"
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+", line) for line in lines), lines
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in lines
    assert f"pandas=={metadata.version('pandas')}" in lines
    assert env["packages"]["count"] == len(lines)


def test_seed_makes_runs_draw_the_same_numbers(shipway_home: Path, restore_rng: None) -> None:
    def draw(seed: int) -> tuple[str, list[float], list[float]]:
        random.seed(12345)  # whatever state came before must not matter
        np.random.seed(12345)
        with shipway.start_run(experiment="credit", seed=seed) as run:
            py = [random.random() for _ in range(3)]
            nump = np.random.random(3).tolist()
        return run.id, py, nump

    run_a, py_a, np_a = draw(7)
    run_b, py_b, np_b = draw(7)
    _, py_c, np_c = draw(8)

    assert (py_a, np_a) == (py_b, np_b)
    assert py_a != py_c
    assert np_a != np_c
    seeds = shipway.get_run(run_a).environment["seeds"]["set"]
    assert seeds["seed"] == 7
    assert {"python.random", "numpy.random"} <= set(seeds["generators"])
    assert shipway.get_run(run_b).environment["seeds"]["set"]["seed"] == 7


def test_set_seed_inside_a_run_is_recorded(shipway_home: Path, restore_rng: None) -> None:
    with shipway.start_run(experiment="credit") as run:
        run.set_seed(99)
        first = random.random()
    random.seed(99)

    assert random.random() == first
    assert shipway.get_run(run.id).environment["seeds"]["set"]["seed"] == 99


def test_no_seed_means_none_recorded(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        pass
    assert "set" not in shipway.get_run(run.id).environment["seeds"]


def _fitted(model: object) -> object:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model.fit(X, [0, 0, 1, 1])  # type: ignore[attr-defined]
    return model


def test_random_state_of_logged_model_is_recorded_as_found_seed(
    shipway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    with shipway.start_run(experiment="credit") as run:
        run.log_model(_fitted(LogisticRegression(random_state=42)))
        run.log_model(
            _fitted(make_pipeline(StandardScaler(), LogisticRegression(random_state=3))),
            name="pipeline",
        )

    found = shipway.get_run(run.id).environment["seeds"]["found"]
    assert found["random_state"] == 42
    assert found["logisticregression__random_state"] == 3
    assert found["PYTHONHASHSEED"] == "0"  # the environment's own seed is kept too


def test_unseeded_model_records_no_found_seed(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        run.log_model(_fitted(LogisticRegression()))
    assert "random_state" not in shipway.get_run(run.id).environment["seeds"]["found"]


# =============================================================================
# Run lifecycle and lookup
# =============================================================================


def test_exception_marks_run_failed_and_reraises(shipway_home: Path) -> None:
    with (
        pytest.raises(ValueError, match="diverged"),
        shipway.start_run(experiment="credit") as run,
    ):
        run.log_metric("loss", 1.0)
        raise ValueError("loss diverged")

    info = shipway.get_run(run.id)
    assert info.status == "failed"
    assert info.error == "ValueError: loss diverged"
    assert info.end_time is not None
    assert info.metrics == {"loss": 1.0}  # what was logged before the failure is kept


def test_successful_run_is_finished(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit", name="baseline") as run:
        assert shipway.get_run(run.id).status == "running"

    info = shipway.get_run(run.id)
    assert (info.status, info.error, info.name, info.experiment) == (
        "finished",
        None,
        "baseline",
        "credit",
    )
    assert info.end_time is not None and info.end_time >= info.start_time


def test_empty_experiment_name_refused(shipway_home: Path) -> None:
    with pytest.raises(InvalidInputError), shipway.start_run(experiment="  "):
        pass


@pytest.fixture
def shared_prefix_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every uuid4 from now on starts with 'abcd' (all still distinct)."""
    counter = iter(range(1, 1_000_000))
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(f"abcd{next(counter):06x}{'0' * 22}"))


def test_get_run_by_unique_prefix(shipway_home: Path, shared_prefix_ids: None) -> None:
    with shipway.start_run(experiment="credit") as run1:
        pass
    with shipway.start_run(experiment="credit") as run2:
        pass
    assert run1.id.startswith("abcd") and run2.id.startswith("abcd")

    assert shipway.get_run(run1.id).id == run1.id
    assert shipway.get_run(run2.id[:10]).id == run2.id  # unique prefix
    with pytest.raises(NotFoundError):
        shipway.get_run("abcd")  # ambiguous prefix


def test_prefix_shorter_than_four_characters_is_not_accepted(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        pass
    with pytest.raises(NotFoundError):
        shipway.get_run(run.id[:3])
    assert shipway.get_run(run.id[:4]).id == run.id


def test_like_wildcards_in_a_prefix_match_nothing(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        pass
    for pattern in ("____", "%%%%", run.id[:4] + "%"):
        with pytest.raises(NotFoundError):
            shipway.get_run(pattern)


def test_unknown_run_lists_existing(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run1:
        pass
    with shipway.start_run(experiment="credit") as run2:
        pass

    with pytest.raises(NotFoundError) as excinfo:
        shipway.get_run("0000000000000000")
    message = str(excinfo.value)
    assert "'0000000000000000' not found" in message
    assert run1.id in message and run2.id in message


def test_unknown_run_with_no_runs_says_so(shipway_home: Path) -> None:
    with pytest.raises(NotFoundError, match=r"(?i)no runs exist yet"):
        shipway.get_run("deadbeef")


def test_list_runs_filters_by_experiment(shipway_home: Path) -> None:
    ids: dict[str, list[str]] = {"credit": [], "churn": []}
    for experiment in ("credit", "churn", "credit"):
        with shipway.start_run(experiment=experiment) as run:
            pass
        ids[experiment].append(run.id)

    credit = shipway.list_runs("credit")
    assert sorted(r.id for r in credit) == sorted(ids["credit"])
    assert all(r.experiment == "credit" for r in credit)
    assert [r.id for r in shipway.list_runs("churn")] == ids["churn"]
    assert len(shipway.list_runs()) == 3
    assert shipway.list_runs()[0].id == ids["credit"][-1]  # newest first
    assert len(shipway.list_runs(limit=2)) == 2


def test_list_runs_filters_by_tag(shipway_home: Path) -> None:
    ids = []
    for stage in ("trial", "release", "trial"):
        with shipway.start_run(experiment="credit", tags={"stage": stage}) as run:
            pass
        ids.append(run.id)
    assert [r.id for r in shipway.list_runs(tag="stage=trial")] == [ids[2], ids[0]]
    assert [r.id for r in shipway.list_runs("credit", tag="stage=release")] == [ids[1]]
    assert shipway.list_runs(tag="stage=") == [] and shipway.list_runs(tag="owner=x") == []
    with pytest.raises(shipway.InvalidInputError, match="Cannot read the tag filter 'stage'"):
        shipway.list_runs(tag="stage")


def test_list_runs_unknown_experiment_lists_existing(shipway_home: Path) -> None:
    for experiment in ("credit", "churn"):
        with shipway.start_run(experiment=experiment):
            pass

    with pytest.raises(NotFoundError) as excinfo:
        shipway.list_runs("credt")
    assert re.search(r"(?i)experiment 'credt' not found", str(excinfo.value))
    assert "Existing: credit, churn" in str(excinfo.value)
