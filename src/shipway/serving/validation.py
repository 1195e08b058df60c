"""Checking request rows against a model's signature, and turning them into a DataFrame.

Every value is checked before the model sees it: a missing column, a wrong type, an unknown
category or a null where none is allowed is refused with an error naming the column, the row
and what was expected. Safe widening (an int where a float is expected, or a whole-number float
where an int is expected) is accepted; anything lossy is not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from shipway.errors import InvalidInputError
from shipway.types import ColumnSpec, Signature

Columns = dict[str, list[Any]]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ValidationError(InvalidInputError):
    """A value that does not fit the signature; carries where it is, for the JSON error body."""

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        row: int | None = None,
        expected: str | None = None,
    ) -> None:
        super().__init__(message)
        self.column, self.row, self.expected = column, row, expected

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        for key in ("column", "row", "expected"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(spec: ColumnSpec) -> str:
    if spec.dtype == "category" and spec.categories:
        shown = ", ".join(spec.categories[:10]) + (", ..." if len(spec.categories) > 10 else "")
        return f"one of [{shown}]"
    return {
        "int64": "an integer",
        "float64": "a number",
        "bool": "true or false",
        "string": "a string",
        "category": "a string",
        "datetime": "an ISO 8601 date-time string",
    }[spec.dtype]


def _converter(spec: ColumnSpec) -> Callable[[Any], Any]:
    """A function returning the checked value, or raising ValueError if it does not fit."""
    if spec.dtype == "int64":

        def to_int(v: Any) -> Any:
            if type(v) is float and v.is_integer():
                v = int(v)
            if type(v) is int and _INT64_MIN <= v <= _INT64_MAX:
                return v
            raise ValueError

        return to_int
    if spec.dtype == "float64":

        def to_float(v: Any) -> Any:
            if type(v) is float:
                if math.isinf(v) or (math.isnan(v) and not spec.nullable):
                    raise ValueError
                return v
            if type(v) is int:
                return float(v)
            raise ValueError

        return to_float
    if spec.dtype == "bool":

        def to_bool(v: Any) -> Any:
            if type(v) is bool:
                return v
            raise ValueError

        return to_bool
    if spec.dtype == "category" and spec.categories is not None:
        allowed = frozenset(spec.categories)

        def to_category(v: Any) -> Any:
            if type(v) is str and v in allowed:
                return v
            raise ValueError

        return to_category
    if spec.dtype == "datetime":

        def to_datetime(v: Any) -> Any:
            if type(v) is str:
                return datetime.fromisoformat(v)
            raise ValueError

        return to_datetime

    def to_str(v: Any) -> Any:
        if type(v) is str:
            return v
        raise ValueError

    return to_str


class Validator:
    """Checks columns of raw JSON values against one signature; built once per model."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.specs = list(signature.inputs)
        self._convert = {s.name: _converter(s) for s in self.specs}

    def check_column(
        self, spec: ColumnSpec, values: Sequence[Any], first_row: int = 0
    ) -> list[Any]:
        convert = self._convert[spec.name]
        out: list[Any] = []
        for i, v in enumerate(values):
            if v is None:
                if not spec.nullable:
                    raise ValidationError(
                        f"Column '{spec.name}', row {first_row + i}: null is not allowed; "
                        f"expected {_describe(spec)}.",
                        column=spec.name,
                        row=first_row + i,
                        expected=_describe(spec),
                    )
                out.append(None)
                continue
            try:
                out.append(convert(v))
            except (ValueError, TypeError):
                what = "unknown category" if spec.dtype == "category" and type(v) is str else "got"
                raise ValidationError(
                    f"Column '{spec.name}', row {first_row + i}: expected {_describe(spec)}, "
                    f"{what} {_show(v)}.",
                    column=spec.name,
                    row=first_row + i,
                    expected=_describe(spec),
                ) from None
        return out

    def from_records(self, records: Sequence[Any]) -> Columns:
        columns: Columns = {s.name: [] for s in self.specs}
        names = [s.name for s in self.specs]
        for i, row in enumerate(records):
            if not isinstance(row, Mapping):
                raise ValidationError(
                    f"Row {i}: expected an object of column values, got {_show(row)}.", row=i
                )
            for name in names:
                try:
                    columns[name].append(row[name])
                except KeyError:
                    raise ValidationError(
                        f"Row {i}: missing column '{name}'.",
                        column=name,
                        row=i,
                        expected=_describe(self.specs[names.index(name)]),
                    ) from None
        return self.check(columns)

    def from_split(self, column_names: Any, data: Any) -> Columns:
        if not isinstance(column_names, list) or not all(isinstance(c, str) for c in column_names):
            raise ValidationError("'columns' must be a list of column names.")
        if not isinstance(data, list):
            raise ValidationError("'data' must be a list of rows.")
        index = {c: j for j, c in enumerate(column_names)}
        for spec in self.specs:
            if spec.name not in index:
                raise ValidationError(
                    f"Missing column '{spec.name}'.", column=spec.name, expected=_describe(spec)
                )
        width = len(column_names)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                raise ValidationError(
                    f"Row {i}: expected a list of {width} values (one per column), got "
                    f"{_show(row)}.",
                    row=i,
                )
        return self.check({s.name: [row[index[s.name]] for row in data] for s in self.specs})

    def from_positional(self, rows: Sequence[Any]) -> Columns:
        return self.from_split([s.name for s in self.specs], list(rows))

    def check(self, columns: Mapping[str, Sequence[Any]]) -> Columns:
        """Check whole columns (already in signature order or not); all must be as long."""
        out: Columns = {}
        length: int | None = None
        for spec in self.specs:
            if spec.name not in columns:
                raise ValidationError(
                    f"Missing column '{spec.name}'.", column=spec.name, expected=_describe(spec)
                )
            values = columns[spec.name]
            if not isinstance(values, list):
                raise ValidationError(
                    f"Column '{spec.name}': expected a list of values, got {_show(values)}.",
                    column=spec.name,
                    expected="a list of values",
                )
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise ValidationError(
                    f"Column '{spec.name}' has {len(values)} values but the others have {length}.",
                    column=spec.name,
                )
            out[spec.name] = self.check_column(spec, values)
        return out

    def decode(self, body: Any) -> Columns:
        """Any of the native request shapes, into checked columns."""
        if isinstance(body, list):
            if body and isinstance(body[0], list):
                return self.from_positional(body)
            return self.from_records(body)
        if not isinstance(body, dict):
            raise ValidationError(
                "Expected a JSON list of records, or an object with 'columns' and 'data', "
                "or 'instances'."
            )
        if "columns" in body and "data" in body:
            return self.from_split(body["columns"], body["data"])
        split = body.get("dataframe_split")
        if isinstance(split, dict):  # MLflow's format, for users moving over
            return self.from_split(split.get("columns"), split.get("data"))
        for key in ("instances", "dataframe_records", "records"):
            if key in body:
                rows = body[key]
                if not isinstance(rows, list):
                    raise ValidationError(f"'{key}' must be a list.")
                return self.decode(rows)
        if "inputs" in body and isinstance(body["inputs"], dict):
            return self.check(body["inputs"])
        if all(s.name in body for s in self.specs):
            return self.from_records([body])  # a single record
        raise ValidationError(
            "Expected a JSON list of records, or an object with 'columns' and 'data', or "
            "'instances'.",
        )


def sample_value(spec: ColumnSpec) -> Any:
    """A valid value for the column, made from its spec alone."""
    if spec.dtype == "int64":
        return 0
    if spec.dtype == "float64":
        return 0.0
    if spec.dtype == "bool":
        return False
    if spec.dtype == "category" and spec.categories:
        return spec.categories[0]
    if spec.dtype == "datetime":
        return datetime.now(UTC).isoformat()
    return ""


def sample_row(signature: Signature) -> dict[str, Any]:
    """One valid row made from the signature alone, to warm the model up before it is ready."""
    return {spec.name: sample_value(spec) for spec in signature.inputs}


@functools.lru_cache(maxsize=256)
def _category_codes(categories: tuple[str, ...]) -> tuple[pd.CategoricalDtype, dict[str, int]]:
    """A categorical dtype over plain Python strings, and each category's code.

    Plain object categories, not pandas' Arrow-backed strings: models index and compare
    category values row by row, which is several times slower through Arrow. Building from
    codes skips pandas' inference of the categories on every batch.
    """
    dtype = pd.CategoricalDtype(pd.Index(list(categories), dtype=object))
    return dtype, {c: i for i, c in enumerate(categories)}


def to_frame(signature: Signature, columns: Mapping[str, list[Any]]) -> pd.DataFrame:
    """Checked columns as the DataFrame the model was trained on (same dtypes)."""
    return pd.DataFrame(frame_columns(signature, columns), copy=False)


def frame_columns(signature: Signature, columns: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The columns of `to_frame`'s DataFrame, each as an array, before pandas puts them in one
    (a model that takes arrays is spared the DataFrame)."""
    data: dict[str, Any] = {}
    for spec in signature.inputs:
        values = columns[spec.name]
        if spec.dtype == "int64":
            if any(v is None for v in values):
                data[spec.name] = np.array([np.nan if v is None else v for v in values], float)
            else:
                data[spec.name] = np.array(values, dtype=np.int64)
        elif spec.dtype == "float64":
            data[spec.name] = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float64
            )
        elif spec.dtype == "bool":
            # With nulls, 1.0/0.0/NaN like an int column with nulls: pandas' nullable boolean
            # holds pd.NA, which scikit-learn refuses (a 500 for a null the signature allows).
            data[spec.name] = (
                np.array([np.nan if v is None else float(v) for v in values])
                if None in values
                else np.array(values, bool)
            )
        elif spec.dtype == "category" and spec.categories is not None:
            dtype, codes = _category_codes(tuple(spec.categories))
            data[spec.name] = pd.Categorical.from_codes(
                np.fromiter((codes.get(v, -1) for v in values), np.int64, len(values)),
                dtype=dtype,
            )
        elif spec.dtype == "category":
            data[spec.name] = pd.Categorical(values)
        elif spec.dtype == "datetime":
            data[spec.name] = pd.to_datetime(values)
        else:
            data[spec.name] = np.array(values, dtype=object)
    return data
