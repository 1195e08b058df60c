"""Behavioural tests for the model registry: versions, aliases, URIs, archiving, cards, lineage."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from shipway import (
    ConflictError,
    InvalidInputError,
    LoggedModel,
    ModelVersionInfo,
    NotFoundError,
    Run,
)
from shipway.registry.registry import CARD_FIELDS

# =============================================================================
# Helpers
# =============================================================================


def _data() -> tuple[pd.DataFrame, np.ndarray]:  # type: ignore[type-arg]
    X = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "debt": [3.0, 1, 2, 0, 1, 0]})
    return X, np.array([0, 0, 0, 1, 1, 1])


def _model(C: float = 1.0) -> LogisticRegression:
    X, y = _data()
    return LogisticRegression(C=C).fit(X, y)


def _logged_run(experiment: str = "credit", C: float = 1.0) -> tuple[Run, LoggedModel]:
    X, y = _data()
    with shipway.start_run(experiment=experiment) as run:
        run.log_params({"C": C})
        run.log_dataset(X.assign(label=y), name=f"{experiment}-train")
        run.log_metric("auc", 0.9)
        logged = run.log_model(_model(C), input_example=X)
    return run, logged


def _register(name: str = "credit", count: int = 1) -> list[ModelVersionInfo]:
    return [shipway.register_model(_model(C=i + 1.0), name) for i in range(count)]


# =============================================================================
# Versions and sources
# =============================================================================


def test_versions_are_numbered_1_2_3_per_model(shipway_home: Path) -> None:
    versions = _register("credit", 3)
    churn = _register("churn", 1)

    assert [v.version for v in versions] == [1, 2, 3]
    assert [v.uri for v in versions] == [f"models:/credit/{i}" for i in (1, 2, 3)]
    assert churn[0].version == 1
    assert [v.version for v in shipway.list_versions("credit")] == [1, 2, 3]


def test_versions_are_immutable_and_numbers_never_reused(shipway_home: Path) -> None:
    first, _, third = _register("credit", 3)
    shipway.archive_version(third.uri)
    fourth = shipway.register_model(_model(C=9.0), "credit")

    assert fourth.version == 4
    again = shipway.get_model_version("models:/credit/1")
    assert again.manifest_digest == first.manifest_digest
    assert again.created_at == first.created_at
    assert len({v.manifest_digest for v in shipway.list_versions("credit")}) == 4


def test_register_from_run(shipway_home: Path) -> None:
    run, logged = _logged_run()
    version = shipway.register_model(run, "credit", description="Credit default model")

    assert version.version == 1
    assert version.run_id == run.id
    assert version.manifest_digest == logged.manifest_digest
    assert version.flavor == "sklearn"
    assert version.signature is not None
    assert version.created_by == run.client.actor
    assert shipway.list_models()[0].description == "Credit default model"


def test_register_from_logged_model(shipway_home: Path) -> None:
    run, logged = _logged_run()
    version = shipway.register_model(logged, "credit")

    assert (version.run_id, version.manifest_digest) == (run.id, logged.manifest_digest)
    assert version.signature == logged.signature


def test_register_from_runs_uri(shipway_home: Path) -> None:
    run, logged = _logged_run()
    version = shipway.register_model(f"runs:/{run.id}/model", "credit")
    by_default_name = shipway.register_model(f"runs:/{run.id}", "credit")

    assert (version.run_id, version.manifest_digest) == (run.id, logged.manifest_digest)
    assert by_default_name.manifest_digest == logged.manifest_digest
    assert by_default_name.version == 2


def test_register_from_runs_uri_unknown_model_name(shipway_home: Path) -> None:
    run, _ = _logged_run()
    with pytest.raises(NotFoundError, match="'challenger'"):
        shipway.register_model(f"runs:/{run.id}/challenger", "credit")


def test_register_run_without_model_is_refused(shipway_home: Path) -> None:
    with shipway.start_run(experiment="credit") as run:
        run.log_metric("auc", 0.5)
    with pytest.raises(InvalidInputError, match="no model"):
        shipway.register_model(run, "credit")
    assert shipway.list_models() == []


def test_register_raw_model_with_input_example(shipway_home: Path) -> None:
    X, _ = _data()
    model = _model()
    version = shipway.register_model(model, "credit", input_example=X.head(3))

    assert version.run_id is None
    assert version.flavor == "sklearn"
    assert version.signature is not None
    assert [c["name"] for c in version.signature["inputs"]] == ["income", "debt"]
    assert version.signature["output"]["classes"] == [0, 1]
    loaded = shipway.load_model(version.uri)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_register_raw_model_without_input_example_has_no_signature(shipway_home: Path) -> None:
    assert shipway.register_model(_model(), "credit").signature is None


# =============================================================================
# Aliases and resolution
# =============================================================================


def test_alias_set_move_delete_and_resolution(shipway_home: Path) -> None:
    v1, v2, _ = _register("credit", 3)

    shipway.set_alias(v1.uri, "champion")
    assert shipway.get_model_version("models:/credit@champion").version == 1
    assert shipway.get_model_version(v1.uri).aliases == ["champion"]

    moved = shipway.set_alias("models:/credit/2", "champion")
    assert moved.version == 2 and moved.aliases == ["champion"]
    assert shipway.get_model_version("models:/credit@champion").version == 2
    assert shipway.get_model_version(v1.uri).aliases == []
    assert shipway.list_models()[0].aliases == {"champion": 2}

    shipway.set_alias(v2.uri, "staging")
    assert shipway.get_model_version(v2.uri).aliases == ["champion", "staging"]

    shipway.delete_alias("credit", "champion")
    with pytest.raises(NotFoundError):
        shipway.get_model_version("models:/credit@champion")
    assert shipway.get_model_version(v2.uri).aliases == ["staging"]


def test_aliased_model_loads_the_aliased_version(shipway_home: Path) -> None:
    X, _ = _data()
    weak, strong = _model(C=0.001), _model(C=100.0)
    shipway.register_model(weak, "credit")
    shipway.register_model(strong, "credit")
    shipway.set_alias("models:/credit/1", "champion")

    loaded = shipway.load_model("models:/credit@champion")
    np.testing.assert_allclose(loaded.predict_proba(X), weak.predict_proba(X))
    assert not np.allclose(loaded.predict_proba(X), strong.predict_proba(X))


def test_uri_forms_resolve(shipway_home: Path) -> None:
    _register("credit", 3)
    shipway.set_alias("models:/credit/1", "champion")

    assert shipway.get_model_version("models:/credit@champion").version == 1
    assert shipway.get_model_version("models:/credit/2").version == 2
    assert shipway.get_model_version("models:/credit").version == 3
    assert shipway.get_model_version("credit/2").version == 2  # prefix optional


def test_latest_skips_archived_versions(shipway_home: Path) -> None:
    _register("credit", 3)
    shipway.archive_version("models:/credit/3")

    assert shipway.get_model_version("models:/credit").version == 2
    archived = shipway.get_model_version("models:/credit/3")  # still readable by number
    assert archived.archived is True
    assert shipway.load_model("models:/credit/3").flavor == "sklearn"

    shipway.archive_version("models:/credit/2")
    shipway.archive_version("models:/credit/1")
    with pytest.raises(NotFoundError, match="no live versions"):
        shipway.get_model_version("models:/credit")


def test_archive_refuses_aliased_version(shipway_home: Path) -> None:
    _register("credit", 2)
    shipway.set_alias("models:/credit/2", "champion")

    with pytest.raises(ConflictError, match="champion"):
        shipway.archive_version("models:/credit/2")
    assert shipway.get_model_version("models:/credit/2").archived is False
    assert shipway.get_model_version("models:/credit").version == 2


def test_archive_by_alias_uri_is_refused_too(shipway_home: Path) -> None:
    _register("credit", 1)
    shipway.set_alias("models:/credit/1", "champion")
    with pytest.raises(ConflictError):
        shipway.archive_version("models:/credit@champion")


def test_alias_cannot_point_at_archived_version(shipway_home: Path) -> None:
    _register("credit", 2)
    shipway.set_alias("models:/credit/2", "champion")
    shipway.archive_version("models:/credit/1")

    with pytest.raises(ConflictError, match="archived"):
        shipway.set_alias("models:/credit/1", "champion")
    with pytest.raises(ConflictError, match="archived"):
        shipway.set_alias("models:/credit/1", "rollback")
    assert shipway.get_model_version("models:/credit@champion").version == 2
    assert shipway.list_models()[0].aliases == {"champion": 2}


def test_archive_is_idempotent(shipway_home: Path) -> None:
    _register("credit", 2)
    assert shipway.archive_version("models:/credit/1").archived is True
    assert shipway.archive_version("models:/credit/1").archived is True


# =============================================================================
# Model cards
# =============================================================================


def test_model_card_defaults_from_run(shipway_home: Path) -> None:
    run, _ = _logged_run()
    dataset = shipway.get_run(run.id).datasets[0]
    card = shipway.register_model(run, "credit", description="Scores applicants").card

    assert card["description"] == "Scores applicants"
    assert all(card[f] is None for f in CARD_FIELDS if f != "description")
    assert card["metrics"] == {"auc": 0.9}
    assert card["datasets"] == [
        {
            "name": "credit-train",
            "content_hash": dataset.content_hash,
            "rows": 6,
            "role": "training",
        }
    ]


def test_model_card_of_raw_model_is_empty(shipway_home: Path) -> None:
    card = _register("credit", 1)[0].card
    assert card["metrics"] == {} and card["datasets"] == [] and card["description"] is None


def test_update_model_card(shipway_home: Path) -> None:
    run, _ = _logged_run()
    shipway.register_model(run, "credit")
    shipway.register_model(run, "credit")

    updated = shipway.update_model_card(
        "models:/credit/1", intended_use="Pre-screening only", limitations="EU applicants"
    )

    assert updated.card["intended_use"] == "Pre-screening only"
    assert updated.card["limitations"] == "EU applicants"
    assert updated.card["metrics"] == {"auc": 0.9}  # the rest of the card is kept
    assert shipway.get_model_version("models:/credit/1").card == updated.card
    assert shipway.get_model_version("models:/credit/2").card["intended_use"] is None


def test_update_model_card_unknown_field_refused(shipway_home: Path) -> None:
    _register("credit", 1)
    with pytest.raises(TypeError, match="metrics"):
        shipway.update_model_card("models:/credit/1", metrics="auc=1.0")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="colour"):
        shipway.update_model_card("models:/credit/1", colour="blue")  # type: ignore[call-arg]
    assert shipway.get_model_version("models:/credit/1").card["metrics"] == {}


# =============================================================================
# Errors
# =============================================================================


def test_unknown_model_lists_existing_closest_first(shipway_home: Path) -> None:
    _register("credit", 1)
    _register("churn", 1)

    with pytest.raises(NotFoundError) as excinfo:
        shipway.get_model_version("models:/credt/1")
    message = str(excinfo.value)
    assert "'credt' not found" in message
    assert "credit" in message and "churn" in message
    assert message.index("credit") < message.index("churn")

    with pytest.raises(NotFoundError, match="credit"):
        shipway.list_versions("credt")
    with pytest.raises(NotFoundError, match="credit"):
        shipway.load_model("models:/credt")


def test_unknown_model_in_empty_registry(shipway_home: Path) -> None:
    with pytest.raises(NotFoundError, match="'credit' not found"):
        shipway.get_model_version("models:/credit")


def test_unknown_version(shipway_home: Path) -> None:
    _register("credit", 2)
    with pytest.raises(NotFoundError) as excinfo:
        shipway.get_model_version("models:/credit/7")
    message = str(excinfo.value)
    assert "'7'" in message and "credit" in message
    assert re.search(r"Existing: (1, 2|2, 1)\.", message)


def test_unknown_alias(shipway_home: Path) -> None:
    _register("credit", 1)
    shipway.set_alias("models:/credit/1", "champion")

    with pytest.raises(NotFoundError) as excinfo:
        shipway.get_model_version("models:/credit@challenger")
    assert "'challenger'" in str(excinfo.value)
    assert "champion" in str(excinfo.value)
    with pytest.raises(NotFoundError, match="'challenger'"):
        shipway.delete_alias("credit", "challenger")


@pytest.mark.parametrize(
    "uri",
    [
        "models:/",
        "models:/credit/0",
        "models:/credit/-1",
        "models:/credit/v2",
        "models:/credit/1/2",
        "models:/credit/²",
        "models:/credit@Champion",
        "models:/credit@1st",
        "models:/credit@",
        "models:/cre dit",
        "models:/_credit",
        "models:/credit\n",
        "models:/credit@champion\n",
    ],
)
def test_invalid_uri_is_refused(shipway_home: Path, uri: str) -> None:
    _register("credit", 1)
    with pytest.raises(InvalidInputError):
        shipway.get_model_version(uri)


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("s3://bucket/credit/1", "'s3://bucket/credit/1' is not a registered model's URI."),
        ("file:///tmp/model", "'file:///tmp/model' is not a registered model's URI."),
        ("runs:/0a1b2c/model", "(a run's model: register it first, with register_model)"),
    ],
)
def test_a_uri_of_another_kind_is_named_as_such(shipway_home: Path, uri: str, said: str) -> None:
    _register("credit", 1)
    for call in (shipway.get_model_version, shipway.load_model):
        with pytest.raises(InvalidInputError) as refused:
            call(uri)
        assert said in str(refused.value)
        assert "models:/NAME/VERSION" in str(refused.value)


@pytest.mark.parametrize("name", ["", "bad name", "bad/name", "-credit", "x" * 201, "credit\n"])
def test_invalid_model_name_is_refused(shipway_home: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="not a valid model name"):
        shipway.register_model(_model(), name)
    assert shipway.list_models() == []


@pytest.mark.parametrize("alias", ["Champion", "1st", "", "has space", "x" * 101, "prod\n"])
def test_invalid_alias_is_refused(shipway_home: Path, alias: str) -> None:
    _register("credit", 1)
    with pytest.raises(InvalidInputError, match="not a valid alias"):
        shipway.set_alias("models:/credit/1", alias)
    with pytest.raises(InvalidInputError, match="not a valid alias"):
        shipway.delete_alias("credit", alias)
    assert shipway.list_models()[0].aliases == {}


def test_register_from_unsupported_uri_is_refused(shipway_home: Path) -> None:
    _register("credit", 1)
    with pytest.raises(InvalidInputError, match="runs:/"):
        shipway.register_model("models:/credit/1", "copy")


# =============================================================================
# Lineage
# =============================================================================


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
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "tester@example.com")
    _git(repo, "config", "user.name", "Tester")
    (repo / "train.py").write_text("print('train')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "initial")
    monkeypatch.chdir(repo)
    return repo


def test_lineage_of_a_version(
    shipway_home: Path, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWAY_ACTOR", "alice")
    run, _ = _logged_run()
    dataset = shipway.get_run(run.id).datasets[0]
    shipway.register_model(run, "credit")
    shipway.register_model(run, "credit")
    _register("churn", 1)
    shipway.set_alias("models:/credit/1", "champion")
    shipway.set_alias("models:/churn/1", "champion")  # another model's history stays out
    monkeypatch.setenv("SHIPWAY_ACTOR", "bob")
    shipway.set_alias("models:/credit/2", "champion")
    shipway.delete_alias("credit", "champion")

    lin = shipway.lineage("models:/credit/2")

    assert lin["model"]["name"] == "credit" and lin["model"]["version"] == 2
    assert lin["run"]["id"] == run.id
    assert lin["run"]["params"] == {"C": "1.0"}
    assert lin["run"]["metrics"] == {"auc": 0.9}
    assert lin["code"]["commit"] == _git(git_repo, "rev-parse", "HEAD")
    assert lin["code"]["dirty"] is False
    assert [(d["name"], d["content_hash"], d["num_rows"]) for d in lin["datasets"]] == [
        ("credit-train", dataset.content_hash, 6)
    ]
    env = lin["environment"]
    assert env["python"] == platform.python_version()
    assert env["platform"] == platform.platform()
    assert env["packages"]["lock_digest"] == run.info().environment["packages"]["lock_digest"]
    assert [
        (h["action"], h["subject"], h["actor"], h["from"], h["to"]) for h in lin["alias_history"]
    ] == [
        ("alias.set", "credit@champion", "alice", None, 1),
        ("alias.set", "credit@champion", "bob", 1, 2),
        ("alias.delete", "credit@champion", "bob", 2, None),
    ]
    assert all(h["time"] for h in lin["alias_history"])


def test_lineage_by_alias_and_of_a_model_without_run(shipway_home: Path) -> None:
    _register("credit", 1)
    shipway.set_alias("models:/credit/1", "champion")

    lin = shipway.lineage("models:/credit@champion")

    assert lin["model"]["version"] == 1
    assert lin["model"]["aliases"] == ["champion"]
    assert lin["run"] is None
    assert lin["code"] is None
    assert lin["datasets"] == []
    assert [h["to"] for h in lin["alias_history"]] == [1]


def test_lineage_of_unknown_model(shipway_home: Path) -> None:
    with pytest.raises(NotFoundError):
        shipway.lineage("models:/credit/1")
