"""Pipelines that pick columns by name take arrays when serving, with exactly the same answers;
anything the rewrite cannot reproduce keeps the original pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from serving_helpers import CATEGORICAL, NUMERIC, credit_frame, records
from shipway.flavors import LoadedModel
from shipway.serving.positional import ArrayModel, array_model
from shipway.serving.runtime import ServedModel
from shipway.serving.validation import Validator, frame_columns, to_frame
from shipway.types import Signature, infer_signature

FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = credit_frame(400, seed=5)
    df["note"] = np.where(df["age"] > 40, "long standing client", "new client")
    rng = np.random.default_rng(0)
    df.loc[rng.random(len(df)) < 0.1, "income"] = np.nan  # nulls the trees must route
    return df


def quickstart_like(frame: pd.DataFrame) -> Pipeline:
    """The quickstart's shape: numbers passed through, categories one-hot, boosted trees."""
    features = ColumnTransformer(
        [
            ("num", "passthrough", NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
        ]
    )
    clf = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    return Pipeline([("features", features), ("clf", clf)]).fit(frame[FEATURES], frame["default"])


def checked(signature: Signature, rows: pd.DataFrame) -> dict[str, list[Any]]:
    """Rows as the server holds them once checked (NaN sent as null)."""
    return Validator(signature).from_records(
        [{k: (None if v != v else v) for k, v in r.items()} for r in records(rows)]
    )


def both_ways(model: Any, fast: ArrayModel, signature: Signature, rows: pd.DataFrame) -> None:
    """The rewrite answers the served rows exactly as the original answers their DataFrame."""
    columns = checked(signature, rows)
    original = to_frame(signature, columns)
    data = frame_columns(signature, columns)
    np.testing.assert_array_equal(fast.predict_proba(data), model.predict_proba(original))
    np.testing.assert_array_equal(fast.predict(data), model.predict(original))


@pytest.fixture(scope="module")
def quickstart(frame: pd.DataFrame) -> tuple[Pipeline, Signature]:
    model = quickstart_like(frame)
    return model, infer_signature(frame[FEATURES], model)


def test_a_quickstart_like_pipeline_takes_arrays_with_the_same_answers(
    frame: pd.DataFrame, quickstart: tuple[Pipeline, Signature]
) -> None:
    model, signature = quickstart
    fast = array_model(model, signature)
    assert fast is not None
    assert fast.columns == tuple(FEATURES)
    both_ways(model, fast, signature, frame[FEATURES])
    # the original is untouched: it still takes DataFrames (and only DataFrames)
    assert model.steps[0][1].transformers_[0][2] == NUMERIC
    assert hasattr(model.named_steps["features"].named_transformers_["cat"], "feature_names_in_")
    # ... and the fitted trees are shared, not copied: no second model in memory
    assert fast.model.steps[-1][1] is model.steps[-1][1]
    with pytest.raises(ValueError, match="strings is only supported for dataframes"):
        model.predict(frame[FEATURES].to_numpy(dtype=object))


def test_every_way_of_naming_columns_is_rewritten(frame: pd.DataFrame) -> None:
    """A scalar name (a 1-D column for a text vectoriser), a label slice, a boolean mask, and
    the remainder, over columns in another order than the signature's."""
    ordered = ["note", "employment", *NUMERIC, "housing"]
    mask = [name in ("housing",) for name in ordered]
    features = ColumnTransformer(
        [
            ("text", CountVectorizer(), "note"),
            ("first", StandardScaler(), slice("age", "debt_ratio")),
            ("mask", OneHotEncoder(handle_unknown="ignore"), mask),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["employment"]),
        ],
        remainder=StandardScaler(),
    )
    rows = frame[ordered].assign(income=frame["income"].fillna(0.0))
    model = Pipeline([("features", features), ("clf", LogisticRegression(max_iter=300))])
    model.fit(rows, frame["default"])
    signature = infer_signature(rows[[*FEATURES, "note"]], model)
    fast = array_model(model, signature)
    assert fast is not None
    assert fast.columns == tuple(ordered)
    both_ways(model, fast, signature, rows)


def _swap_columns(x: Any) -> Any:
    # answers differently for a DataFrame and for an array: the check must catch it
    return x.iloc[:, ::-1] if isinstance(x, pd.DataFrame) else x


def _needs_pandas(x: Any) -> Any:
    return x.assign(income=x["income"].fillna(0.0))


def _refuses_a_missing_income(x: Any) -> Any:
    # the original fails on a null income; the copy, given an array, would not: refused too
    if isinstance(x, pd.DataFrame) and x["income"].isna().any():
        raise ValueError("income is required")
    return x


@pytest.mark.parametrize("function", [_swap_columns, _needs_pandas, _refuses_a_missing_income])
def test_a_pipeline_that_answers_otherwise_on_arrays_keeps_the_original(
    frame: pd.DataFrame, function: Any
) -> None:
    features = ColumnTransformer([("num", FunctionTransformer(function), NUMERIC)])
    model = Pipeline([("features", features), ("clf", HistGradientBoostingClassifier())])
    model.fit(frame[NUMERIC].fillna(0.0), frame["default"])
    assert array_model(model, infer_signature(frame[NUMERIC])) is None


def test_other_models_are_left_alone(frame: pd.DataFrame) -> None:
    trees = HistGradientBoostingClassifier(max_iter=5).fit(frame[NUMERIC], frame["default"])
    scaled = Pipeline([("s", StandardScaler()), ("clf", LogisticRegression())])
    scaled.fit(frame[NUMERIC].fillna(0), frame["default"])
    on_arrays = Pipeline(
        [("f", ColumnTransformer([("n", "passthrough", [0, 1])])), ("clf", LogisticRegression())]
    ).fit(frame[NUMERIC].fillna(0).to_numpy(), frame["default"])
    signature = infer_signature(frame[NUMERIC])
    for model in (trees, scaled, on_arrays):
        assert array_model(model, signature) is None
    # a signature without every column the pipeline was fitted on
    assert array_model(quickstart_like(frame), infer_signature(frame[NUMERIC])) is None


def served(model: Any, signature: Signature) -> ServedModel:
    manifest = {"flavor": "sklearn", "signature": signature.to_dict()}
    loaded = LoadedModel("sklearn", model, manifest, workdir=None)
    return ServedModel("credit", 1, None, loaded, signature, 0.0)  # type: ignore[arg-type]


def test_the_server_predicts_through_arrays_and_falls_back_to_the_original(
    frame: pd.DataFrame, quickstart: tuple[Pipeline, Signature]
) -> None:
    model, signature = quickstart
    server = served(model, signature)
    assert server.array_model is not None
    rows = frame[FEATURES].head(40)
    columns = checked(signature, rows)
    want = model.predict_proba(rows).tolist()
    assert server.predict_columns(columns, len(rows))["probabilities"] == want

    class Broken:
        def predict_proba(self, x: Any) -> Any:
            raise RuntimeError("the array route broke")

    # an array route that fails (say, on input the check never met) hands over to the
    # original, whose answer (or error) the caller gets
    server.array_model = ArrayModel(Broken(), server.array_model.columns)
    assert server.predict_columns(columns, len(rows))["probabilities"] == want


def test_a_null_in_a_nullable_bool_column_reaches_the_model_as_nan(frame: pd.DataFrame) -> None:
    """pandas' nullable boolean holds pd.NA, which scikit-learn refuses: a null the signature
    allows must not become a server error."""
    cols = ["age", "has_cosigner"]
    rows = frame[cols].assign(has_cosigner=frame["has_cosigner"].astype(bool))
    model = Pipeline(
        [
            ("f", ColumnTransformer([("n", "passthrough", cols)])),
            ("clf", HistGradientBoostingClassifier(max_iter=5)),
        ]
    ).fit(rows, frame["default"])
    signature = infer_signature(rows, model)
    nullable = signature.model_copy(
        update={"inputs": [s.model_copy(update={"nullable": True}) for s in signature.inputs]}
    )
    columns = Validator(nullable).from_records(
        [{"age": 30, "has_cosigner": None}, {"age": 50, "has_cosigner": True}]
    )
    data = frame_columns(nullable, columns)
    assert np.isnan(data["has_cosigner"][0]) and data["has_cosigner"][1] == 1.0
    server = served(model, nullable)
    out = server.predict_columns(columns, 2)
    assert len(out["probabilities"]) == 2
    one = pd.DataFrame({"age": [50], "has_cosigner": [True]})
    assert out["probabilities"][1] == model.predict_proba(one).tolist()[0]
