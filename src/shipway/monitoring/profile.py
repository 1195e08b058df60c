"""Reference profiles: everything drift and quality checks need, without the raw data.

A :class:`Profile` is computed once from a reference dataset (usually a model
version's training data) and stored as JSON. Per column it keeps summary
statistics (missing rate, min/max, mean/std, quantiles, a histogram), exact
category frequencies (bounded to the top :data:`MAX_CATEGORIES` plus an "other"
count) and a bounded uniform random sample of raw non-missing values, so that
later windows can be compared without reloading the reference.

Column kinds: ``numeric`` (integer or float dtypes), ``categorical`` (strings,
categoricals, booleans, objects), ``binary`` (either of those with exactly two
distinct non-missing values) and ``datetime`` (``datetime64``, with or without a
time zone: only the missing rate, the distinct count and the earliest and latest
time are kept). Infinite floats are counted as missing: they have no place in a
mean, a quantile or a distance. Numeric columns keep category frequencies too
when they have at most :data:`MAX_CATEGORIES` distinct values, so low-cardinality
numeric columns can be tested like categorical ones.

Numeric columns are sorted once; every order statistic (quantiles, deciles,
histogram counts, distinct values) is read from that one sorted copy, with the
same values numpy's own functions give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from shipway.errors import InvalidInputError

__all__ = ["MAX_CATEGORIES", "QUANTILE_LEVELS", "ColumnProfile", "Profile", "profile"]

Kind: TypeAlias = Literal["numeric", "categorical", "binary", "datetime"]
FloatArray: TypeAlias = np.ndarray[Any, np.dtype[np.float64]]
IntArray: TypeAlias = np.ndarray[Any, np.dtype[np.int64]]

MAX_CATEGORIES = 200
"""Category frequencies kept per column; the rest are summed into ``other_count``."""

QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, *(i / 20 for i in range(1, 20)), 0.99, 1.0)
"""Stored quantile levels: 0, 1, 5, 10, ..., 95, 99 and 100 percent."""

HISTOGRAM_BINS = 20
_DECILES = tuple(i / 10 for i in range(1, 10))
_DECILE_AT = [QUANTILE_LEVELS.index(d) for d in _DECILES]  # the deciles are stored levels


class ColumnProfile(BaseModel):
    """Summary of one reference column (the statistics fields are ``None`` when absent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Kind
    numeric: bool
    """Whether the column holds numbers (``binary`` columns can be either)."""
    dtype: str
    row_count: int
    missing_count: int
    missing_rate: float
    distinct_count: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    """Population standard deviation (``ddof=0``)."""
    quantiles: list[float] | None = None
    """Values at :data:`QUANTILE_LEVELS`."""
    histogram_edges: list[float] | None = None
    histogram_counts: list[int] | None = None
    decile_edges: list[float] | None = None
    """Distinct inner decile edges; bin ``i`` holds ``edges[i-1] <= x < edges[i]``."""
    decile_counts: list[int] | None = None
    categories: list[str] | None = None
    """Most frequent values (as strings, floats via ``repr``), most frequent first."""
    category_counts: list[int] | None = None
    other_count: int = 0
    """Non-missing values outside ``categories`` (0 when the list is complete)."""
    sample: list[float] | None = None
    """Uniform random sample of non-missing values (all of them when few enough)."""
    earliest: datetime | None = None
    """Earliest time of a datetime column (floored to the microsecond)."""
    latest: datetime | None = None
    """Latest time of a datetime column (rounded up to the microsecond)."""

    @property
    def count(self) -> int:
        """Number of non-missing values."""
        return self.row_count - self.missing_count

    @property
    def categories_complete(self) -> bool:
        """Whether ``categories`` lists every value the reference holds."""
        return self.categories is not None and self.other_count == 0


class Profile(BaseModel):
    """A reference dataset's profile: one :class:`ColumnProfile` per column, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    row_count: int
    sample_rows: int
    seed: int
    columns: list[ColumnProfile]

    def column(self, name: str) -> ColumnProfile:
        for col in self.columns:
            if col.name == name:
                return col
        raise InvalidInputError(
            f"Column '{name}' is not in the reference profile.",
            f"Profiled columns: {', '.join(c.name for c in self.columns)}.",
        )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able representation (the stored form)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild from :meth:`to_dict` output."""
        return cls.model_validate(dict(data))


def profile(df: pd.DataFrame, *, sample_rows: int = 5000, seed: int = 0) -> Profile:
    """Profile every column of ``df``; see the module docstring for what is kept.

    >>> p = profile(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    >>> [c.kind for c in p.columns]
    ['numeric', 'binary']
    """
    names = column_names(df, "reference")
    if sample_rows < 1:
        raise InvalidInputError(f"sample_rows must be at least 1, got {sample_rows}.")
    rng = np.random.default_rng(seed)
    columns = [
        _profile_column(name, df.iloc[:, i], sample_rows, rng) for i, name in enumerate(names)
    ]
    return Profile(row_count=len(df), sample_rows=sample_rows, seed=seed, columns=columns)


def column_names(df: object, what: str) -> list[str]:
    """The column names of ``df`` as strings; a clear error if it is no usable DataFrame."""
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"The {what} must be a pandas DataFrame, not {type(df).__name__}.")
    names = [str(c) for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInputError(
            f"The {what} has duplicate column names: {dupes}.", "Rename them first."
        )
    return names


def is_numeric_series(series: pd.Series) -> bool:
    dtype = series.dtype
    types = pd.api.types
    return bool(types.is_numeric_dtype(dtype) and not types.is_bool_dtype(dtype))


def is_datetime_series(series: pd.Series) -> bool:
    return bool(pd.api.types.is_datetime64_any_dtype(series.dtype))


def numeric_values(series: pd.Series) -> FloatArray:
    """Finite float values of a numeric series (missing and infinite values dropped).

    The result may be a read-only view of the series' own data: never write to it.
    """
    values: FloatArray = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


def num_key(value: float) -> str:
    return repr(float(value))


def sorted_quantiles(ordered: FloatArray, levels: Sequence[float]) -> FloatArray:
    """``np.quantile(ordered, levels)`` for an already sorted array, bit for bit.

    numpy's default ("linear") method partitions its input first, which costs a
    pass over a million values per call even when they are sorted; here the two
    neighbours of each virtual index are read directly and interpolated with the
    same operations as numpy's ``_lerp``.
    """
    n = ordered.size
    virtual = (n - 1) * np.asarray(levels, dtype=np.float64)
    below = np.floor(virtual)
    gamma = virtual - below
    lo = np.where(virtual >= n - 1, n - 1, below).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    a, b = ordered[lo], ordered[hi]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def sorted_histogram(ordered: FloatArray, bins: int) -> tuple[IntArray, FloatArray]:
    """``np.histogram(ordered, bins)`` for an already sorted array, without a pass over it.

    The edges are numpy's own (they depend only on the minimum and maximum); bin
    ``i`` holds ``edges[i] <= x < edges[i + 1]``, the last bin its right edge too,
    which is how ``np.histogram`` assigns values after its rounding corrections.
    When the range is too narrow for numpy to split (a few ulps, or one value
    above 2**53), there is a single bin from the minimum to the maximum.
    """
    try:
        edges: FloatArray = np.histogram_bin_edges(ordered[[0, -1]], bins=bins)
    except ValueError:
        return np.array([ordered.size]), ordered[[0, -1]].copy()
    starts = ordered.searchsorted(edges[1:-1], side="left")
    counts: IntArray = np.diff(starts, prepend=0, append=ordered.size)
    return counts, edges


def _profile_column(
    name: str, series: pd.Series, sample_rows: int, rng: np.random.Generator
) -> ColumnProfile:
    dtype = series.dtype
    if is_datetime_series(series):
        return _profile_datetime(name, series)
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise InvalidInputError(
            f"Column '{name}' has dtype {dtype}, which monitoring does not profile yet.",
            "Drop it or convert it to numbers (for example seconds).",
        )
    if is_numeric_series(series):
        return _profile_numeric(name, series, sample_rows, rng)
    return _profile_categorical(name, series)


def _missing(series: pd.Series, present: int) -> dict[str, Any]:
    rows = len(series)
    return {
        "row_count": rows,
        "missing_count": rows - present,
        "missing_rate": (rows - present) / rows if rows else 0.0,
    }


def _profile_numeric(
    name: str, series: pd.Series, sample_rows: int, rng: np.random.Generator
) -> ColumnProfile:
    values = numeric_values(series)
    n = int(values.size)
    base: dict[str, Any] = {
        "name": name,
        "numeric": True,
        "dtype": str(series.dtype),
        **_missing(series, n),
    }
    if n == 0:
        return ColumnProfile(kind="numeric", distinct_count=0, **base)
    ordered = np.sort(values)
    change = ordered[1:] != ordered[:-1]
    distinct = int(np.count_nonzero(change)) + 1
    quantiles = sorted_quantiles(ordered, QUANTILE_LEVELS)
    inner = np.unique(quantiles[_DECILE_AT])
    decile_counts = np.diff(ordered.searchsorted(inner, side="left"), prepend=0, append=n)
    hist_counts, hist_edges = sorted_histogram(ordered, HISTOGRAM_BINS)
    categories: list[str] | None = None
    category_counts: list[int] | None = None
    if distinct <= MAX_CATEGORIES:
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        counts = np.diff(starts, append=n)
        order = np.argsort(-counts, kind="stable")
        categories = [num_key(v) for v in ordered[starts][order]]
        category_counts = [int(c) for c in counts[order]]
    if n > sample_rows:
        picked = np.sort(rng.choice(n, size=sample_rows, replace=False))
        sample = values[picked]
    else:
        sample = values
    return ColumnProfile(
        kind="binary" if distinct == 2 else "numeric",
        distinct_count=distinct,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        mean=float(values.mean()),
        std=float(values.std()),
        quantiles=quantiles.tolist(),
        histogram_edges=hist_edges.tolist(),
        histogram_counts=hist_counts.tolist(),
        decile_edges=inner.tolist(),
        decile_counts=decile_counts.tolist(),
        categories=categories,
        category_counts=category_counts,
        sample=sample.tolist(),
        **base,
    )


def _profile_datetime(name: str, series: pd.Series) -> ColumnProfile:
    present = series.dropna()
    base: dict[str, Any] = {"name": name, "kind": "datetime", "numeric": False}
    base |= {"dtype": str(series.dtype), **_missing(series, len(present))}
    if len(present) == 0:
        return ColumnProfile(distinct_count=0, **base)
    return ColumnProfile(
        distinct_count=int(present.nunique()),
        earliest=present.min().floor("us").to_pydatetime(),
        latest=present.max().ceil("us").to_pydatetime(),
        **base,
    )


def string_counts(series: pd.Series) -> dict[str, int]:
    """Counts of the non-missing values of a series, keyed by their string form."""
    counts: dict[str, int] = {}
    try:
        value_counts = series.value_counts(dropna=True, sort=False)
    except TypeError as exc:
        raise InvalidInputError(
            f"Column '{series.name}' holds values that cannot be counted ({exc}).",
            "Convert it to strings or numbers first.",
        ) from exc
    for key, count in zip(value_counts.index, value_counts.to_numpy(), strict=True):
        if count > 0:
            text = str(key)
            counts[text] = counts.get(text, 0) + int(count)
    return counts


def _profile_categorical(name: str, series: pd.Series) -> ColumnProfile:
    counts = string_counts(series)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:MAX_CATEGORIES]
    n = sum(counts.values())
    return ColumnProfile(
        name=name,
        kind="binary" if len(counts) == 2 else "categorical",
        numeric=False,
        dtype=str(series.dtype),
        **_missing(series, n),
        distinct_count=len(counts),
        categories=[k for k, _ in kept],
        category_counts=[c for _, c in kept],
        other_count=n - sum(c for _, c in kept),
    )


@dataclass(frozen=True)
class CategoryCounts:
    """A window's counts aligned to a reference column's category cells."""

    known: IntArray
    """Counts per reference category, in ``ColumnProfile.categories`` order."""
    other: int
    """Values not in the list that may be among the reference's tail (``other_count > 0``)."""
    unseen: dict[str, int]
    """Values the reference certainly never held (its list is complete)."""

    @property
    def total(self) -> int:
        return int(self.known.sum()) + self.other + sum(self.unseen.values())


def count_categories(
    ref: ColumnProfile, series: pd.Series, values: FloatArray | None = None
) -> CategoryCounts:
    """Count a window's values into the reference's category cells.

    Values not among the reference's listed categories go to ``other`` when the
    reference had a tail of unlisted categories (they may belong there) and to
    ``unseen`` otherwise. ``values`` are the series' :func:`numeric_values` when
    the caller has them already.
    """
    if ref.categories is None:
        raise InvalidInputError(
            f"Column '{ref.name}' has {ref.distinct_count} distinct values in the reference; "
            "category frequencies were not kept.",
            "Use a numeric method (ks, wasserstein or psi) for it.",
        )
    if ref.numeric:
        if not is_numeric_series(series):
            raise InvalidInputError(
                f"Column '{ref.name}' is numeric in the reference but {series.dtype} now."
            )
        if values is None:
            values = numeric_values(series)
        uniq, cnt = np.unique(values, return_counts=True)
        counts = {num_key(u): int(c) for u, c in zip(uniq, cnt, strict=True)}
    else:
        counts = string_counts(series)
    index = {c: i for i, c in enumerate(ref.categories)}
    known = np.zeros(len(ref.categories), dtype=np.int64)
    other = 0
    unseen: dict[str, int] = {}
    for key, count in counts.items():
        i = index.get(key)
        if i is not None:
            known[i] += count
        elif ref.other_count > 0:
            other += count
        else:
            unseen[key] = count
    return CategoryCounts(known=known, other=other, unseen=unseen)
