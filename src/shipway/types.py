"""Model signatures: the wire contract between a trained model and its callers.

A :class:`Signature` records, at logging time, which columns a model was trained
on (name, logical dtype, whether missing values are allowed, the allowed
categories) and what its predictions look like (dtype, shape, class labels,
whether probabilities are available). It is stored next to the model and is the
contract the model server validates every request against later: a request with
a missing column, an unexpected dtype, a null in a non-nullable column or an
unknown category is rejected at the door with a clear message instead of
failing deep inside the model or, worse, producing a silently wrong prediction.

Dtypes are deliberately *logical* (``"int64"``, ``"string"``, ``"category"``,
...) rather than pandas or numpy names, so the contract survives JSON and is
independent of the pandas version that produced it. :func:`infer_signature`
builds a signature from a sample of training data (and optionally the model);
it refuses dtypes it cannot describe rather than guessing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self, TypeAlias

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "ClassLabel",
    "ColumnSpec",
    "DType",
    "OutputSpec",
    "Signature",
    "infer_signature",
]

DType: TypeAlias = Literal["int64", "float64", "bool", "string", "category", "datetime"]
"""Logical column/prediction dtypes understood by Shipway."""

ClassLabel: TypeAlias = str | int | float | bool
"""A class label of a classifier, as a plain JSON-able Python scalar."""

_PREDICT_SAMPLE_ROWS = 20


class ColumnSpec(BaseModel):
    """One input column of a model: its name, logical dtype and constraints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: DType
    nullable: bool = False
    categories: list[str] | None = None
    """Allowed values, only for ``dtype="category"`` (``None``: not recorded)."""

    @model_validator(mode="after")
    def _categories_only_for_category(self) -> Self:
        if self.categories is not None and self.dtype != "category":
            raise ValueError(
                f"column {self.name!r}: categories are only allowed for dtype 'category', "
                f"not {self.dtype!r}"
            )
        return self


class OutputSpec(BaseModel):
    """What a model's ``predict`` returns.

    ``shape`` uses ``-1`` for the row dimension: ``[-1]`` is one value per row,
    ``[-1, k]`` is ``k`` values per row.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: DType
    shape: list[int]
    classes: list[ClassLabel] | None = None
    """Class labels of a classifier, in the model's order, when known."""
    has_proba: bool = False
    """Whether the model offers ``predict_proba``."""

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        if not self.shape or self.shape[0] != -1 or any(d < 1 for d in self.shape[1:]):
            raise ValueError(
                f"output shape must be [-1] or [-1, k, ...] with positive k, got {self.shape}"
            )
        return self


class Signature(BaseModel):
    """Inputs (ordered columns) and, when known, the output of a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[ColumnSpec]
    output: OutputSpec | None = None

    @model_validator(mode="after")
    def _check_inputs(self) -> Self:
        if not self.inputs:
            raise ValueError("a signature needs at least one input column")
        seen: set[str] = set()
        duplicates: list[str] = []
        for col in self.inputs:
            if col.name in seen:
                duplicates.append(col.name)
            seen.add(col.name)
        if duplicates:
            raise ValueError(f"duplicate input column names: {sorted(set(duplicates))}")
        return self

    @property
    def column_names(self) -> list[str]:
        """Input column names, in order."""
        return [col.name for col in self.inputs]

    def allow_missing(self, *names: str) -> Signature:
        """A copy whose columns ``names`` accept missing values (all columns when none named).

        For models that handle missing values themselves (gradient-boosted trees, imputing
        pipelines) when the sample the signature came from happened to have none.
        """
        unknown = sorted(set(names) - set(self.column_names))
        if unknown:
            raise ValueError(f"no input column named {unknown}; inputs: {self.column_names}")
        chosen = set(names or self.column_names)
        inputs = [
            c.model_copy(update={"nullable": True}) if c.name in chosen else c for c in self.inputs
        ]
        return self.model_copy(update={"inputs": inputs})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able representation (the stored/wire form)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Rebuild from :meth:`to_dict` output; raises ``ValueError`` if invalid."""
        return cls.model_validate(dict(data))


def infer_signature(
    sample: pd.DataFrame | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    model: object | None = None,
) -> Signature:
    """Infer a :class:`Signature` from a sample of model inputs (and the model).

    ``sample`` should be a :class:`pandas.DataFrame`; a dict of lists or a list
    of dicts is converted with ``pd.DataFrame`` first. Column dtypes map as:
    any integer (numpy or nullable extension) -> ``int64``, any float ->
    ``float64``, bool/boolean -> ``bool``, str/string/object-of-strings ->
    ``string``, Categorical -> ``category`` (categories kept as strings),
    datetime64 with or without timezone -> ``datetime``. A column is nullable
    when the sample has a missing value in it. Any other dtype (complex,
    timedelta, period, interval, objects that are not strings, ...) raises
    ``ValueError`` naming the column.

    If ``model`` has a callable ``predict``, it is called on the first (up to)
    20 rows and its result described in ``output``; if that call fails or the
    result cannot be described, ``output`` is ``None``.
    """
    df = _as_dataframe(sample)
    if df.shape[1] == 0:
        raise ValueError("cannot infer a signature from a sample with no columns")
    inputs = [_column_spec(name, df[name]) for name in _column_labels(df)]
    output = _infer_output(df, model) if model is not None else None
    return Signature(inputs=inputs, output=output)


def _as_dataframe(sample: object) -> pd.DataFrame:
    if isinstance(sample, pd.DataFrame):
        return sample
    is_dict_of_lists = isinstance(sample, Mapping)
    is_list_of_dicts = (
        isinstance(sample, Sequence)
        and not isinstance(sample, str | bytes)
        and all(isinstance(row, Mapping) for row in sample)
    )
    if is_dict_of_lists or is_list_of_dicts:
        try:
            return pd.DataFrame(sample)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"cannot convert sample to a pandas DataFrame: {exc}") from exc
    raise ValueError(
        f"sample must be a pandas DataFrame (or a dict of lists / list of dicts), "
        f"got {type(sample).__name__}"
    )


def _column_labels(df: pd.DataFrame) -> list[str]:
    labels: list[str] = []
    for label in df.columns:
        if not isinstance(label, str):
            raise ValueError(
                f"column names must be strings, got {label!r} ({type(label).__name__}); "
                "rename the columns before inferring a signature"
            )
        labels.append(label)
    if len(set(labels)) != len(labels):
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"duplicate column names in sample: {dupes}")
    return labels


def _column_spec(name: str, series: pd.Series) -> ColumnSpec:
    dtype = series.dtype
    nullable = bool(series.isna().any())
    types = pd.api.types
    if isinstance(dtype, pd.CategoricalDtype):
        categories = [str(c) for c in dtype.categories]
        return ColumnSpec(name=name, dtype="category", nullable=nullable, categories=categories)
    if types.is_bool_dtype(dtype):
        return ColumnSpec(name=name, dtype="bool", nullable=nullable)
    if types.is_integer_dtype(dtype):
        return ColumnSpec(name=name, dtype="int64", nullable=nullable)
    if types.is_float_dtype(dtype):
        return ColumnSpec(name=name, dtype="float64", nullable=nullable)
    if types.is_datetime64_any_dtype(dtype):
        return ColumnSpec(name=name, dtype="datetime", nullable=nullable)
    if isinstance(dtype, pd.StringDtype):
        return ColumnSpec(name=name, dtype="string", nullable=nullable)
    if types.is_object_dtype(dtype):
        inferred = types.infer_dtype(series, skipna=True)
        if inferred in ("string", "empty"):
            return ColumnSpec(name=name, dtype="string", nullable=nullable)
        raise ValueError(
            f"column {name!r} has dtype object holding {inferred!r} values; only strings are "
            "supported in object columns, convert it to an explicit dtype first"
        )
    raise ValueError(
        f"column {name!r} has unsupported dtype {dtype}; supported: integer, float, bool, "
        "string, category and datetime64"
    )


def _infer_output(df: pd.DataFrame, model: object) -> OutputSpec | None:
    predict = getattr(model, "predict", None)
    if not callable(predict) or len(df) == 0:
        return None
    head = df.head(min(len(df), _PREDICT_SAMPLE_ROWS))
    try:
        raw = predict(head)
        pred = np.asarray(raw)
    except Exception:
        return None
    if pred.ndim not in (1, 2) or pred.shape[0] != len(head):
        return None
    dtype = _prediction_dtype(pred)
    if dtype is None:
        return None
    if pred.ndim == 2 and pred.shape[1] < 1:
        return None
    shape = [-1] if pred.ndim == 1 else [-1, int(pred.shape[1])]
    return OutputSpec(
        dtype=dtype,
        shape=shape,
        classes=_model_classes(model),
        has_proba=_has_proba(model),
    )


def _prediction_dtype(pred: np.ndarray[Any, np.dtype[Any]]) -> DType | None:
    kind = pred.dtype.kind
    if kind in "iu":
        return "int64"
    if kind == "f":
        return "float64"
    if kind == "b":
        return "bool"
    if kind in "US":
        return "string"
    if kind == "M":
        return "datetime"
    if kind == "O":
        inferred = pd.api.types.infer_dtype(pred.ravel(), skipna=True)
        mapping: dict[str, DType] = {
            "string": "string",
            "integer": "int64",
            "floating": "float64",
            "mixed-integer-float": "float64",
            "boolean": "bool",
        }
        return mapping.get(inferred)
    return None


def _model_classes(model: object) -> list[ClassLabel] | None:
    try:
        classes = getattr(model, "classes_", None)
        if classes is None:
            return None
        return [_to_label(c) for c in np.asarray(classes).ravel().tolist()]
    except Exception:
        return None


def _to_label(value: object) -> ClassLabel:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _has_proba(model: object) -> bool:
    try:
        return callable(getattr(model, "predict_proba", None))
    except Exception:
        return False
