"""Per-column and dataset drift between a reference profile and a current window.

Automatic test selection (every threshold lives in :class:`DriftThresholds`):

* reference with at most ``small_reference_rows`` (1,000) rows: the two-sample
  Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) for numeric columns with more
  than ``low_cardinality`` (5) distinct values; Pearson's chi-squared for categorical
  and low-cardinality numeric columns; the two-proportion Z-test for binary columns.
  Drift when ``p < 0.05``.
* larger references: the Wasserstein distance (``scipy.stats.wasserstein_distance``)
  divided by the reference standard deviation for numeric columns, the
  Jensen-Shannon distance in base 2 (``scipy.spatial.distance.jensenshannon``) for
  the others. Drift when the distance is ``>= 0.1``.
* ``psi`` on request: the population stability index over the reference's decile
  bins (or its categories); ``>= 0.1`` is drift, ``>= 0.25`` is significant.

Choices worth knowing:

* KS and Wasserstein use the profile's stored random sample of the reference (up
  to ``sample_rows`` values). For references no larger than that the sample *is*
  the reference, so the results equal scipy's on the raw data exactly; above it,
  the sample-based Wasserstein distance errs by about ``std / sqrt(sample_rows)``
  (1.4% of a std for 5,000), far below the 0.1 threshold, whereas the stored
  quantiles would bias it by the interpolation between 23 levels.
* Chi-squared compares current counts with the reference proportions scaled to
  the current total (``scipy.stats.chisquare``). Values the reference never held
  are pooled into one "unseen" cell whose reference count is 0.5 (a continuity
  pseudo-count): an expected count of zero would make the statistic infinite.
  Values outside a reference's top categories go to its "other" cell.
* Z-test: with ``x1/n1`` and ``x2/n2`` the shares of the reference's first
  category in reference and current, ``p = (x1 + x2) / (n1 + n2)``,
  ``z = (x2/n2 - x1/n1) / sqrt(p (1 - p) (1/n1 + 1/n2))`` and the two-sided
  ``p_value = 2 * norm.sf(|z|)``; when ``p`` is 0 or 1 both windows are identical
  and ``z = 0``. A current window holding a third value falls back to chi-squared.
* PSI: ``sum((q - p) * ln(q / p))`` with bin shares clipped below at
  ``PSI_EPSILON = 1e-4`` so an empty bin gives a large finite term, not infinity.
  The outer decile bins are open-ended, so PSI cannot see values moving beyond the
  reference range within them (a constant column scores 0): ``quality`` reports
  out-of-range values.
* A constant reference (std 0) cannot normalise the Wasserstein distance: an
  unchanged column scores 0, any change scores ``inf`` and is drift.
* Datetime columns are not tested: ``auto`` skips them with a note, and a
  method asked for by name is an error. ``quality`` checks their missing rate
  and range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats
from scipy.spatial import distance

from shipway.errors import InvalidInputError
from shipway.monitoring.profile import (
    CategoryCounts,
    ColumnProfile,
    FloatArray,
    Profile,
    column_names,
    count_categories,
    is_numeric_series,
    numeric_values,
)

DATETIME_NOTE = "datetime column: not tested for drift"

__all__ = [
    "PSI_EPSILON",
    "ColumnDrift",
    "DatasetDrift",
    "DriftThresholds",
    "Method",
    "column_drift",
    "dataset_drift",
]

Method: TypeAlias = Literal[
    "auto", "ks", "chisquare", "ztest", "wasserstein", "jensenshannon", "psi"
]
_METHODS = ("auto", "ks", "chisquare", "ztest", "wasserstein", "jensenshannon", "psi")

PSI_EPSILON = 1e-4
"""Lower clip of a bin share in PSI, so that empty bins give finite terms."""


@dataclass(frozen=True)
class DriftThresholds:
    """Thresholds of every drift test and of the automatic selection."""

    p_value: float = 0.05
    wasserstein: float = 0.1
    jensenshannon: float = 0.1
    psi: float = 0.1
    psi_significant: float = 0.25
    small_reference_rows: int = 1000
    low_cardinality: int = 5


class ColumnDrift(BaseModel):
    """The drift test of one column. ``statistic`` is ``None`` only when skipped."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    column: str
    kind: str
    method: str
    """The test used, or ``"skipped"`` (see ``note``)."""
    statistic: float | None
    p_value: float | None = None
    threshold: float | None = None
    drifted: bool = False
    note: str | None = None


class DatasetDrift(BaseModel):
    """Per-column results and whether the dataset as a whole drifted."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    columns: list[ColumnDrift]
    n_tested: int
    n_drifted: int
    share_drifted: float | None
    """``None`` when no column could be tested."""
    share: float
    drifted: bool
    missing_columns: list[str]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; an infinite statistic stays ``inf`` (``Infinity`` in JSON)."""
        return self.model_dump(mode="json")


def column_drift(
    ref: ColumnProfile,
    current: pd.Series | np.ndarray[Any, Any] | Sequence[Any],
    *,
    method: Method = "auto",
    thresholds: DriftThresholds | None = None,
) -> ColumnDrift:
    """Test one current column against its reference profile (see the module docs)."""
    t = thresholds or DriftThresholds()
    if method not in _METHODS:
        raise InvalidInputError(f"Unknown drift method '{method}'.", f"Use one of {_METHODS}.")
    series = current if isinstance(current, pd.Series) else pd.Series(current)
    if len(series) == 0:
        raise InvalidInputError(
            f"The current window of column '{ref.name}' is empty.", "Pick a wider window."
        )
    if ref.kind == "datetime":
        if method != "auto":
            raise InvalidInputError(
                f"Column '{ref.name}' holds datetimes, which are not tested for drift.",
                "Leave its method to 'auto' (it is skipped) or derive a numeric column from it.",
            )
        return _skipped(ref, DATETIME_NOTE)
    if ref.numeric and not is_numeric_series(series) and series.notna().any():
        raise InvalidInputError(
            f"Column '{ref.name}' is numeric in the reference but {series.dtype} in the "
            "current window.",
            "Fix the upstream type or re-profile the reference.",
        )
    if ref.count == 0:
        return _skipped(ref, "the reference column has no non-missing values")
    values = numeric_values(series) if ref.numeric else None
    n_current = int(values.size) if values is not None else int(series.notna().sum())
    if n_current == 0:
        return _skipped(ref, "the current window has no non-missing values")
    chosen = _auto(ref, t) if method == "auto" else method
    if chosen in ("ks", "wasserstein") and not (values is not None and ref.sample):
        raise InvalidInputError(f"Method '{chosen}' needs a numeric column; '{ref.name}' is not.")
    if chosen == "ks" and values is not None:
        result = stats.ks_2samp(_ref_sample(ref), values)
        return _result(ref, "ks", float(result.statistic), float(result.pvalue), t.p_value)
    if chosen == "wasserstein" and values is not None:
        return _wasserstein(ref, values, t)
    if chosen == "psi":
        return _psi(ref, series, values, t)
    if chosen == "ztest" and ref.kind != "binary":
        raise InvalidInputError(f"Method 'ztest' needs a binary column; '{ref.name}' is not.")
    counts = count_categories(ref, series, values)
    if chosen == "ztest":
        if not counts.unseen and counts.other == 0:
            return _ztest(ref, counts, t)
        chosen = "chisquare"
    ref_cells, cur_cells = _cells(ref, counts)
    if chosen == "chisquare":
        return _chisquare(ref, ref_cells, cur_cells, t)
    q = cur_cells / cur_cells.sum()
    p = ref_cells / ref_cells.sum()
    value = float(distance.jensenshannon(p, q, base=2))
    return _result(ref, "jensenshannon", value, None, t.jensenshannon)


def dataset_drift(
    profile: Profile,
    current_df: pd.DataFrame,
    *,
    share: float = 0.5,
    methods: Mapping[str, Method] | None = None,
    thresholds: DriftThresholds | None = None,
) -> DatasetDrift:
    """Test every profiled column present in ``current_df``.

    The dataset drifted when ``n_drifted / n_tested >= share``. Columns missing from
    the window are listed in ``missing_columns`` (and reported by ``quality``);
    columns new in the window are ignored here.
    """
    if not 0 < share <= 1:
        raise InvalidInputError(f"share must be in (0, 1], got {share}.")
    present = set(column_names(current_df, "current window"))
    if len(current_df) == 0:
        raise InvalidInputError("The current window has no rows.", "Pick a wider window.")
    methods = dict(methods or {})
    unknown = sorted(set(methods) - set(profile.column_names))
    if unknown:
        raise InvalidInputError(f"methods names columns not in the profile: {unknown}.")
    results: list[ColumnDrift] = []
    missing: list[str] = []
    for col in profile.columns:
        if col.name not in present:
            missing.append(col.name)
            continue
        method = methods.get(col.name, "auto")
        results.append(
            column_drift(col, current_df[col.name], method=method, thresholds=thresholds)
        )
    tested = [r for r in results if r.statistic is not None]
    n_drifted = sum(r.drifted for r in tested)
    ratio = n_drifted / len(tested) if tested else None
    return DatasetDrift(
        columns=results,
        n_tested=len(tested),
        n_drifted=n_drifted,
        share_drifted=ratio,
        share=share,
        drifted=ratio is not None and ratio >= share,
        missing_columns=missing,
    )


def _auto(ref: ColumnProfile, t: DriftThresholds) -> Method:
    small = ref.row_count <= t.small_reference_rows
    if ref.kind == "binary":
        return "ztest" if small else "jensenshannon"
    if ref.numeric and ref.distinct_count > t.low_cardinality:
        return "ks" if small else "wasserstein"
    return "chisquare" if small else "jensenshannon"


def _ref_sample(ref: ColumnProfile) -> FloatArray:
    return np.asarray(ref.sample, dtype=np.float64)


def _result(
    ref: ColumnProfile,
    method: str,
    statistic: float,
    p_value: float | None,
    threshold: float,
    note: str | None = None,
) -> ColumnDrift:
    drifted = p_value < threshold if p_value is not None else statistic >= threshold
    return ColumnDrift(
        column=ref.name,
        kind=ref.kind,
        method=method,
        statistic=statistic,
        p_value=p_value,
        threshold=threshold,
        drifted=bool(drifted),
        note=note,
    )


def _skipped(ref: ColumnProfile, why: str) -> ColumnDrift:
    return ColumnDrift(column=ref.name, kind=ref.kind, method="skipped", statistic=None, note=why)


def _wasserstein(ref: ColumnProfile, values: FloatArray, t: DriftThresholds) -> ColumnDrift:
    raw = wasserstein_1d(_ref_sample(ref), values)
    std = ref.std or 0.0
    if std > 0:
        return _result(ref, "wasserstein", raw / std, None, t.wasserstein)
    note = "constant reference (std 0): any change is drift"
    return _result(ref, "wasserstein", math.inf if raw > 0 else 0.0, None, t.wasserstein, note)


def wasserstein_1d(u: FloatArray, v: FloatArray) -> float:
    """``scipy.stats.wasserstein_distance(u, v)``, bit for bit, about 8x faster.

    scipy's unweighted ``_cdf_distance`` with ``p = 1`` is the dot product of
    ``|U - V|`` (the two empirical CDFs just right of each merged sorted value)
    with the steps between those values, each CDF counted by a binary search of
    every merged value. Here the merge is a stable sort of the two sorted inputs
    (one linear pass), the smaller sample's count is a staircase that rises where
    its values start in the merge, and the larger sample's count is the rest of
    the ``k + 1`` values up to position ``k``. That last count is exact wherever
    the step to the next value is nonzero (the end of each run of equal values);
    inside a run the step is 0, so the term is 0 whatever the counts. Every CDF
    value that matters is the same quotient of the same integers as scipy's, so
    the sum is the same, bit for bit. Three arrays of the merged size are
    allocated (plus the merge's buffer), not ten: a million values take about
    20 ms, scipy about 165 ms.
    """
    merged = np.concatenate((u, v))
    merged[: u.size].sort()
    merged[u.size :].sort()
    small = (merged[: u.size] if u.size <= v.size else merged[u.size :]).copy()
    large_size = merged.size - small.size
    merged.sort(kind="stable")  # merges the two sorted runs
    deltas = np.diff(merged)
    stairs = np.diff(merged.searchsorted(small, side="left"), prepend=0, append=deltas.size)
    count = np.repeat(np.arange(small.size + 1.0), stairs)  # small values <= merged[k]
    gap = merged[:-1]  # the merged values are no longer needed: reuse their memory
    gap.fill(1.0)
    np.cumsum(gap, out=gap)  # k + 1, exact in floats
    gap -= count
    gap /= large_size
    count /= small.size
    gap -= count
    np.abs(gap, out=gap)
    return float(np.vecdot(gap, deltas))


def _cells(ref: ColumnProfile, counts: CategoryCounts) -> tuple[FloatArray, FloatArray]:
    """Reference and current counts over the same cells: categories, other, unseen."""
    ref_cells = [float(c) for c in ref.category_counts or []]
    cur_cells = [float(c) for c in counts.known]
    if ref.other_count > 0:
        ref_cells.append(float(ref.other_count))
        cur_cells.append(float(counts.other))
    if counts.unseen:
        ref_cells.append(0.0)
        cur_cells.append(float(sum(counts.unseen.values())))
    return np.asarray(ref_cells), np.asarray(cur_cells)


def _chisquare(
    ref: ColumnProfile, ref_cells: FloatArray, cur_cells: FloatArray, t: DriftThresholds
) -> ColumnDrift:
    note = None
    if ref_cells[-1] == 0:
        ref_cells = ref_cells.copy()
        ref_cells[-1] = 0.5
        note = "values unseen in the reference pooled in one cell with pseudo-count 0.5"
    expected = ref_cells / ref_cells.sum() * cur_cells.sum()
    if expected.size < 2:
        return _result(ref, "chisquare", 0.0, 1.0, t.p_value, "a single category in both")
    result = stats.chisquare(cur_cells, expected)
    return _result(ref, "chisquare", float(result.statistic), float(result.pvalue), t.p_value, note)


def _ztest(ref: ColumnProfile, counts: CategoryCounts, t: DriftThresholds) -> ColumnDrift:
    n1, n2 = ref.count, int(counts.known.sum())
    x1, x2 = (ref.category_counts or [0])[0], int(counts.known[0])
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        z = 0.0
    else:
        z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = float(2 * stats.norm.sf(abs(z)))
    return _result(ref, "ztest", float(z), p_value, t.p_value)


def psi_value(expected: FloatArray, actual: FloatArray) -> float:
    """PSI of two count vectors over the same bins, shares clipped at :data:`PSI_EPSILON`."""
    p = np.clip(expected / expected.sum(), PSI_EPSILON, None)
    q = np.clip(actual / actual.sum(), PSI_EPSILON, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi(
    ref: ColumnProfile, series: pd.Series, values: FloatArray | None, t: DriftThresholds
) -> ColumnDrift:
    if values is not None and ref.decile_edges is not None and ref.decile_counts is not None:
        edges = np.asarray(ref.decile_edges)
        bins = np.searchsorted(edges, values, side="right")
        actual = np.bincount(bins, minlength=edges.size + 1).astype(np.float64)
        expected = np.asarray(ref.decile_counts, dtype=np.float64)
    else:
        expected, actual = _cells(ref, count_categories(ref, series, values))
    value = psi_value(expected, actual)
    level = "significant" if value >= t.psi_significant else "moderate" if value >= t.psi else None
    return _result(ref, "psi", value, None, t.psi, f"{level} shift" if level else None)
