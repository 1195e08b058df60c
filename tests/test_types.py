"""Behavioural tests for shipway.types: signature inference and its wire form."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LinearRegression, LogisticRegression

from shipway.types import ColumnSpec, OutputSpec, Signature, infer_signature


def _spec(sig: Signature, name: str) -> ColumnSpec:
    return next(c for c in sig.inputs if c.name == name)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (np.array([1, 2, 3], dtype="int8"), "int64"),
        (np.array([1, 2, 3], dtype="int32"), "int64"),
        (np.array([1, 2, 3], dtype="int64"), "int64"),
        (np.array([1, 2, 3], dtype="uint16"), "int64"),
        (np.array([1, 2, 3], dtype="uint64"), "int64"),
        (pd.array([1, 2, 3], dtype="Int64"), "int64"),
        (pd.array([1, 2, 3], dtype="UInt8"), "int64"),
        (np.array([1.5, 2.0, 3.0], dtype="float32"), "float64"),
        (np.array([1.5, 2.0, 3.0], dtype="float64"), "float64"),
        (pd.array([1.5, 2.0, 3.0], dtype="Float64"), "float64"),
        (np.array([True, False, True]), "bool"),
        (pd.array([True, False, True], dtype="boolean"), "bool"),
        (pd.Series(["a", "b", "c"]), "string"),
        (pd.Series(["a", "b", "c"], dtype=object), "string"),
        (pd.array(["a", "b", "c"], dtype="string"), "string"),
        (pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]), "datetime"),
        (
            pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).tz_localize("Europe/Paris"),
            "datetime",
        ),
    ],
)
def test_dtype_mapping(values: object, dtype: str) -> None:
    sig = infer_signature(pd.DataFrame({"x": values}))
    assert sig.inputs == [ColumnSpec(name="x", dtype=dtype, nullable=False)]  # type: ignore[arg-type]
    assert sig.output is None


def test_categorical_maps_to_category_with_string_categories() -> None:
    df = pd.DataFrame(
        {
            "color": pd.Categorical(["red", "blue", "red"], categories=["red", "green", "blue"]),
            "level": pd.Categorical([1, 2, 1]),
        }
    )
    sig = infer_signature(df)
    color, level = sig.inputs
    assert color.dtype == "category"
    assert color.categories == ["red", "green", "blue"]  # all declared categories, in order
    assert level.dtype == "category"
    assert level.categories == ["1", "2"]


def test_nullability_follows_missing_values_in_sample() -> None:
    df = pd.DataFrame(
        {
            "int_nulls": pd.array([1, None, 3], dtype="Int64"),
            "int_full": pd.array([1, 2, 3], dtype="Int64"),
            "plain_int": [1, 2, 3],
            "float_nan": [1.0, np.nan, 3.0],
            "bool_na": pd.array([True, None, False], dtype="boolean"),
            "text_none": pd.Series(["a", None, "c"], dtype=object),
            "text_na": pd.array(["a", pd.NA, "c"], dtype="string"),
            "cat_nan": pd.Categorical(["a", None, "b"]),
            "when": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        }
    )
    sig = infer_signature(df)
    nullable = {c.name: c.nullable for c in sig.inputs}
    assert nullable == {
        "int_nulls": True,
        "int_full": False,
        "plain_int": False,
        "float_nan": True,
        "bool_na": True,
        "text_none": True,
        "text_na": True,
        "cat_nan": True,
        "when": True,
    }
    assert _spec(sig, "int_nulls").dtype == "int64"
    assert _spec(sig, "cat_nan").categories == ["a", "b"]


def test_column_order_is_preserved() -> None:
    sig = infer_signature(pd.DataFrame({"b": [1], "a": [2.0], "c": ["x"]}))
    assert sig.column_names == ["b", "a", "c"]


def test_dict_of_lists_and_list_of_dicts_are_accepted() -> None:
    from_dict = infer_signature({"n": [1, 2], "s": ["a", "b"]})
    from_rows = infer_signature([{"n": 1, "s": "a"}, {"n": 2, "s": "b"}])
    assert from_dict == from_rows
    assert [(c.name, c.dtype) for c in from_dict.inputs] == [("n", "int64"), ("s", "string")]


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), [1, 2, 3], "a,b\n1,2", 42, None])
def test_non_tabular_sample_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match=r"pandas DataFrame.*got " + type(bad).__name__):
        infer_signature(bad)


@pytest.mark.parametrize(
    ("values", "dtype_text"),
    [
        (np.array([1 + 2j, 3 + 0j]), "complex"),
        (pd.to_timedelta(["1D", "2h"]), "timedelta"),
        (pd.period_range("2024-01", periods=2, freq="M"), "period"),
    ],
)
def test_unsupported_dtype_names_column_and_dtype(values: object, dtype_text: str) -> None:
    df = pd.DataFrame({"ok": [1, 2], "weird": values})
    with pytest.raises(ValueError, match="weird") as info:
        infer_signature(df)
    assert dtype_text in str(info.value)


def test_object_column_with_non_strings_is_rejected() -> None:
    df = pd.DataFrame({"blob": pd.Series([{"a": 1}, {"b": 2}], dtype=object)})
    with pytest.raises(ValueError, match=r"'blob'.*object"):
        infer_signature(df)


def test_non_string_column_names_and_empty_frames_are_rejected() -> None:
    with pytest.raises(ValueError, match="column names must be strings"):
        infer_signature(pd.DataFrame({0: [1, 2]}))
    with pytest.raises(ValueError, match="no columns"):
        infer_signature(pd.DataFrame())


def test_round_trip_through_json() -> None:
    df = pd.DataFrame(
        {
            "age": pd.array([30, None], dtype="Int64"),
            "income": [1.0, 2.0],
            "city": pd.Categorical(["paris", "rome"]),
        }
    )
    y = [0, 1]
    model = LogisticRegression().fit(df[["income"]], y)
    sig = infer_signature(df[["income"]], model)
    full = Signature(inputs=infer_signature(df).inputs, output=sig.output)

    wire = json.dumps(full.to_dict())  # must be plain JSON
    back = Signature.from_dict(json.loads(wire))
    assert back == full
    assert back.to_dict() == full.to_dict()
    assert back.output is not None
    assert back.output.classes == [0, 1]
    assert all(type(c) is int for c in back.output.classes)


def test_round_trip_keeps_label_types() -> None:
    out = OutputSpec(dtype="string", shape=[-1], classes=["no", True, 2, 0.5], has_proba=True)
    sig = Signature(inputs=[ColumnSpec(name="x", dtype="float64")], output=out)
    back = Signature.from_dict(json.loads(json.dumps(sig.to_dict())))
    assert back.output is not None
    assert [type(c) for c in back.output.classes or []] == [str, bool, int, float]


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValidationError, match="categories"):
        ColumnSpec(name="x", dtype="string", categories=["a"])
    with pytest.raises(ValidationError):
        ColumnSpec(name="x", dtype="complex")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="duplicate"):
        Signature(inputs=[ColumnSpec(name="x", dtype="bool")] * 2)
    with pytest.raises(ValidationError, match="shape"):
        OutputSpec(dtype="float64", shape=[3])
    with pytest.raises(ValueError, match="extra"):
        Signature.from_dict({"inputs": [{"name": "x", "dtype": "bool", "typo": 1}]})


def test_column_spec_is_frozen() -> None:
    spec = ColumnSpec(name="x", dtype="int64")
    with pytest.raises(ValidationError):
        spec.name = "y"


def test_classifier_output_has_classes_and_proba() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = np.where(X["a"] + X["b"] > 0, "yes", "no")
    model = LogisticRegression().fit(X, y)

    sig = infer_signature(X, model)

    assert sig.output == OutputSpec(
        dtype="string", shape=[-1], classes=["no", "yes"], has_proba=True
    )


def test_integer_classifier_labels_become_python_ints() -> None:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    y = np.array([3, 3, 7, 7, 9, 9], dtype="int32")
    sig = infer_signature(X, LogisticRegression().fit(X, y))
    assert sig.output is not None
    assert sig.output.dtype == "int64"
    assert sig.output.classes == [3, 7, 9]
    assert all(type(c) is int for c in sig.output.classes)


def test_regressor_output_without_classes() -> None:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    sig = infer_signature(X, LinearRegression().fit(X, [0.0, 2.0, 4.0, 6.0]))
    assert sig.output == OutputSpec(dtype="float64", shape=[-1], classes=None, has_proba=False)


def test_two_dimensional_output_and_predict_sample_size() -> None:
    seen: list[int] = []

    class MultiOutput:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            seen.append(len(frame))
            return np.zeros((len(frame), 3), dtype="float32")

    sig = infer_signature(pd.DataFrame({"a": range(100)}), MultiOutput())
    assert sig.output == OutputSpec(dtype="float64", shape=[-1, 3])
    assert seen == [20]  # only a small head of the sample is sent to the model

    infer_signature(pd.DataFrame({"a": range(5)}), MultiOutput())
    assert seen[-1] == 5


def test_failing_or_missing_predict_gives_no_output() -> None:
    class Broken:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("boom")

    df = pd.DataFrame({"a": [1.0, 2.0]})
    assert infer_signature(df, Broken()).output is None
    assert infer_signature(df, object()).output is None
    assert infer_signature(df, LogisticRegression()).output is None  # not fitted


def test_allow_missing_makes_named_columns_nullable_only() -> None:
    sig = infer_signature(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    assert [c.nullable for c in sig.inputs] == [False, False]
    assert [c.nullable for c in sig.allow_missing("a").inputs] == [True, False]
    assert [c.nullable for c in sig.allow_missing().inputs] == [True, True]
    assert sig.inputs[0].nullable is False  # the original is unchanged
    with pytest.raises(ValueError, match="no input column named"):
        sig.allow_missing("c")
