"""Helpers shared by the performance and fairness reports: columns, labels, time buckets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.tseries.frequencies import to_offset

from shipway.errors import InvalidInputError
from shipway.monitoring.profile import column_names

MISSING = "(missing)"
"""The name of the segment or group of rows whose value is missing."""
AUTO_FREQS = ("1min", "5min", "15min", "1h", "6h", "1D", "7D")
MAX_AUTO_BUCKETS = 24


def select(df: pd.DataFrame, wanted: Sequence[str], what: str) -> pd.DataFrame:
    """The ``wanted`` columns of ``df`` with a fresh 0..n-1 index.

    Raises :class:`InvalidInputError` naming the first absent column and the columns
    that exist.
    """
    names = column_names(df, what)
    for name in wanted:
        if name not in names:
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            raise InvalidInputError(
                f"Column '{name}' is not in the {what}.", f"Columns: {shown or '(none)'}."
            )
    unique = list(dict.fromkeys(wanted))
    out = df.iloc[:, [names.index(n) for n in unique]].set_axis(unique, axis=1)
    return out.reset_index(drop=True)


def labels(*columns: pd.Series) -> list[Any]:
    """Sorted distinct non-missing values of ``columns``; equal values (1, 1.0, True) count once."""
    seen: dict[Any, None] = {}
    for column in columns:
        for value in pd.unique(column.dropna()):
            seen.setdefault(value, None)
    try:
        return sorted(seen)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in seen})
        raise InvalidInputError(
            f"The labels mix values of different types ({', '.join(kinds)}).",
            "Make the target, prediction and positive_label the same type.",
        ) from None


def match_label(label: object, seen: Sequence[object]) -> object:
    """``label``, or the one seen label whose text it is ("1" for 1, "True" for True)."""
    if any(label == v for v in seen):
        return label
    same_text = [v for v in seen if str(v) == str(label)]
    return same_text[0] if len(same_text) == 1 else label


def is_zero_one(values: Sequence[object]) -> bool:
    """Whether every value is a number or boolean equal to 0 or 1."""
    return all(isinstance(v, int | float | np.number | np.bool_) and v in (0, 1) for v in values)


def default_positive(values: Sequence[object]) -> object | None:
    """The positive label when the caller names none.

    1 (``True`` for booleans) when the labels are a subset of {0, 1}, as in sklearn and
    fairlearn; otherwise the greater of at most two sorted labels ("yes" over "no");
    None for three or more labels.
    """
    if is_zero_one(values):
        booleans = bool(values) and all(isinstance(v, bool | np.bool_) for v in values)
        return next((v for v in values if v == 1), True if booleans else 1)
    return values[-1] if len(values) <= 2 else None


def utc_times(series: pd.Series, name: str) -> pd.Series:
    """``series`` as tz-aware UTC times; naive times are taken to be UTC, text must be ISO 8601."""
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise InvalidInputError(
            f"Time column '{name}' holds numbers, not times.",
            "Convert it first, e.g. pd.to_datetime(df[col], unit='s', utc=True).",
        )
    text = not pd.api.types.is_datetime64_any_dtype(series.dtype)
    try:
        return pd.to_datetime(series, utc=True, format="ISO8601" if text else None)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"Time column '{name}' does not hold times: {exc}") from None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime
    rows: npt.NDArray[np.intp]
    """Positions of the bucket's rows in the frame."""


def buckets(times: pd.Series, freq: str | None) -> Iterator[Bucket]:
    """The non-empty buckets ``[start, start + freq)`` of ``times`` (UTC, 0..n-1 index), in order.

    Starts are ``times`` floored to ``freq`` (counted from the Unix epoch, so "7D" buckets
    start on Thursdays). With ``freq=None`` the smallest of :data:`AUTO_FREQS` giving at most
    :data:`MAX_AUTO_BUCKETS` buckets is used (7D when none does). Missing times are skipped.
    """
    present = times.dropna()
    if present.empty:
        return
    step = _offset(freq) if freq else _auto_offset(present.min(), present.max())
    starts = present.dt.floor(step)
    for start, group in starts.groupby(starts, sort=True):
        yield Bucket(start.to_pydatetime(), (start + step).to_pydatetime(), group.index.to_numpy())


def _offset(freq: str) -> pd.Timedelta:
    try:
        step = pd.Timedelta(to_offset(freq))
    except (ValueError, TypeError):
        step = None
    if step is None or step <= pd.Timedelta(0):
        raise InvalidInputError(
            f"freq {freq!r} is not a fixed positive duration.",
            "Use a pandas offset alias such as '15min', '1h', '1D' or '7D'.",
        )
    return step


def _auto_offset(first: pd.Timestamp, last: pd.Timestamp) -> pd.Timedelta:
    for alias in AUTO_FREQS:
        step = _offset(alias)
        if (last.floor(step) - first.floor(step)) // step + 1 <= MAX_AUTO_BUCKETS:
            return step
    return step
