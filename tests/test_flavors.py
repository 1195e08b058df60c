"""Behavioural tests for saving and loading models: scikit-learn via skops, and python functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import flavor_helpers
import shipway
from shipway import InvalidInputError, UntrustedModelError
from shipway.artifacts import ArtifactStore
from shipway.client import get_client
from shipway.flavors import load_from_manifest, save_to_store

TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"

# =============================================================================
# Helpers
# =============================================================================


@pytest.fixture
def store(shipway_home: Path) -> ArtifactStore:
    return get_client().artifacts


def _credit_frame(n: int = 60) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "income": rng.normal(3000.0, 800.0, n),
            "age": rng.integers(18, 80, n).astype("int64"),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], n)),
        }
    )
    y = ((X["income"] > 3000) ^ (X["region"] == "east")).astype(int).to_numpy()
    return X, y


def _pipeline() -> tuple[Pipeline, pd.DataFrame]:
    X, y = _credit_frame()
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("region", OneHotEncoder(handle_unknown="ignore"), ["region"])],
                    remainder="passthrough",
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    return pipe.fit(X, y), X


def _hgb() -> tuple[HistGradientBoostingClassifier, pd.DataFrame]:
    X, y = _credit_frame()
    X = X.drop(columns="region")
    return HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y), X


def _tampered(store: ArtifactStore, digest: str, **changes: Any) -> str:
    """Store a copy of a model manifest with `changes` applied to its top level or config."""
    manifest = json.loads(store.get_bytes(digest))
    for key, value in changes.items():
        if key == "files":
            manifest["files"] = {**manifest["files"], **value}
        else:
            manifest["config"][key] = value
    return store.put_bytes(json.dumps(manifest, sort_keys=True).encode())


# =============================================================================
# scikit-learn
# =============================================================================


def test_pipeline_with_categorical_round_trip(shipway_home: Path) -> None:
    pipe, X = _pipeline()
    with shipway.start_run(experiment="credit") as run:
        run.log_model(pipe, input_example=X.head(10))
    version = shipway.register_model(run, "credit")

    loaded = shipway.load_model(version.uri)

    assert loaded.flavor == "sklearn"
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    assert loaded.has_proba
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert loaded.signature is not None
    region = next(c for c in loaded.signature.inputs if c.name == "region")
    assert (region.dtype, region.categories) == ("category", ["east", "north", "south"])
    assert loaded.signature.output is not None
    assert loaded.signature.output.classes == [0, 1]


def test_loaded_model_accepts_records(shipway_home: Path, store: ArtifactStore) -> None:
    model, X = _hgb()
    loaded = load_from_manifest(store, save_to_store(store, model).manifest_digest)

    records = X.head(5).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(records), model.predict(X.head(5)))
    with pytest.raises(InvalidInputError, match="DataFrame"):
        loaded.predict("not a table")


def test_hist_gradient_boosting_round_trip_trusts_recorded_tree_predictor(
    shipway_home: Path, store: ArtifactStore
) -> None:
    model, X = _hgb()
    logged = save_to_store(store, model, input_example=X.head())

    manifest = json.loads(store.get_bytes(logged.manifest_digest))
    assert manifest["config"]["trusted_types"] == [TREE_PREDICTOR]
    loaded = load_from_manifest(store, logged.manifest_digest)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_hist_gradient_boosting_refused_when_tree_predictor_not_recorded(
    shipway_home: Path, store: ArtifactStore
) -> None:
    model, _ = _hgb()
    digest = _tampered(store, save_to_store(store, model).manifest_digest, trusted_types=[])

    with pytest.raises(UntrustedModelError, match=TREE_PREDICTOR):
        load_from_manifest(store, digest)


def test_file_that_is_not_skops_is_refused(shipway_home: Path, store: ArtifactStore) -> None:
    model, _ = _hgb()
    logged = save_to_store(store, model)
    garbage = store.put_bytes(b"\x00 definitely not a zip archive \xff" * 10)
    digest = _tampered(store, logged.manifest_digest, files={"model.skops": garbage})

    with pytest.raises(UntrustedModelError) as excinfo:
        load_from_manifest(store, digest)
    assert "model.skops is not a valid skops model file" in str(excinfo.value)


def test_manifest_that_is_not_json_is_refused(shipway_home: Path, store: ArtifactStore) -> None:
    digest = store.put_bytes(b"\x89PNG not a manifest")
    with pytest.raises(UntrustedModelError, match="not valid JSON"):
        load_from_manifest(store, digest)


@pytest.fixture
def custom_scaler_digest(store: ArtifactStore) -> str:
    X = np.arange(12.0).reshape(-1, 2)
    logged = save_to_store(store, flavor_helpers.CustomScaler().fit(X))
    flavor_helpers.SETSTATE_CALLS.clear()
    return logged.manifest_digest


def test_untrusted_custom_type_recorded_at_save_is_still_refused(
    store: ArtifactStore, custom_scaler_digest: str
) -> None:
    manifest = json.loads(store.get_bytes(custom_scaler_digest))
    assert manifest["flavor"] == "sklearn"
    assert manifest["config"]["trusted_types"] == ["flavor_helpers.CustomScaler"]

    with pytest.raises(UntrustedModelError) as excinfo:
        load_from_manifest(store, custom_scaler_digest)
    assert "flavor_helpers.CustomScaler" in str(excinfo.value)
    assert "refusing to load" in str(excinfo.value)
    assert flavor_helpers.SETSTATE_CALLS == []  # nothing of it was rebuilt


def test_untrusted_custom_type_refused_when_recorded_types_omit_it(
    store: ArtifactStore, custom_scaler_digest: str
) -> None:
    digest = _tampered(store, custom_scaler_digest, trusted_types=[])

    with pytest.raises(UntrustedModelError, match=r"flavor_helpers\.CustomScaler"):
        load_from_manifest(store, digest)
    assert flavor_helpers.SETSTATE_CALLS == []


# =============================================================================
# Python functions
# =============================================================================


def test_python_model_round_trip_through_registry(shipway_home: Path, tmp_path: Path) -> None:
    offset = tmp_path / "offset.txt"
    offset.write_text("10")
    model = flavor_helpers.ThresholdModel(factor=2.0, threshold=15)
    data = pd.DataFrame({"x": [1.0, 2.0, 2.5, 3.0, 4.0]})
    with shipway.start_run(experiment="rules") as run:
        run.log_model(model, artifacts={"offset": offset}, requirements=["pandas"])
    offset.write_text("0")  # the stored copy of the artefact is what counts
    version = shipway.register_model(f"runs:/{run.id}/model", "rules")

    loaded = shipway.load_model(version.uri)

    assert loaded.flavor == "python"
    # x * 2 + 10 against 15: 12, 14, 15, 16, 18
    assert loaded.predict(data) == ["low", "low", "high", "high", "high"]
    assert loaded.impl.params == {"factor": 2.0, "threshold": 15}
    assert type(loaded.impl).__module__ != "flavor_helpers"  # rebuilt from the stored source
    assert loaded.manifest["config"]["class"] == "ThresholdModel"
    assert "pandas" in loaded.manifest["requirements"]
    assert not loaded.has_proba
    with pytest.raises(InvalidInputError, match="probabilities"):
        loaded.predict_proba(data)


def test_python_model_from_main_is_refused(shipway_home: Path, store: ArtifactStore) -> None:
    scripted = type("Scripted", (flavor_helpers.ThresholdModel,), {"__module__": "__main__"})

    with pytest.raises(InvalidInputError, match="__main__"):
        save_to_store(store, scripted(factor=1.0, threshold=0.0))


@pytest.mark.parametrize("bad", [{1, 2}, object(), b"bytes", np.float32(1.5)])
def test_python_model_non_json_params_are_refused(store: ArtifactStore, bad: object) -> None:
    model = flavor_helpers.ThresholdModel(factor=bad, threshold=0.0)
    with pytest.raises(InvalidInputError, match="JSON"):
        save_to_store(store, model)


@pytest.mark.parametrize(
    "obj", [{"coef": [1, 2]}, [1, 2, 3], "model", flavor_helpers.ThresholdModel]
)
def test_unsupported_object_is_refused(store: ArtifactStore, obj: object) -> None:
    with pytest.raises(InvalidInputError, match="Cannot save"):
        save_to_store(store, obj)


def test_unsupported_object_message_names_its_type(store: ArtifactStore) -> None:
    with pytest.raises(InvalidInputError, match=r"builtins\.dict"):
        save_to_store(store, {"coef": [1, 2]})


def test_an_explicit_signature_is_stored_instead_of_inferred(shipway_home: Path) -> None:
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(x, [0, 1, 0, 1])
    signature = shipway.infer_signature(x, model).allow_missing("a")
    with shipway.start_run("explicit") as run:
        logged = run.log_model(model, input_example=x, signature=signature)
    assert logged.signature == signature.to_dict()
    version = shipway.register_model(run, "explicit")
    loaded = shipway.load_model(version.uri)
    assert loaded.signature == signature
    assert loaded.signature is not None and loaded.signature.inputs[0].nullable
