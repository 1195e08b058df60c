"""Data quality of a current window against a reference profile.

:func:`quality` returns per-column measurements (missing rate and its change,
the share of numeric values or times outside the reference's range, values the
reference never held) and a list of :class:`Finding` objects, each with a
severity: ``critical`` when the window cannot be trusted as model input (no rows,
a missing column, a changed column kind, a column that became entirely missing),
``warning`` when it deserves a look (new columns, a dtype change, new
categories, a missing-rate increase or out-of-range share above the thresholds),
``info`` otherwise. Times after a datetime column's reference range are ``info``
(time moves on); times before it are checked like numeric values. A datetime
column's change of unit (``ns`` to ``us``) is no finding; a change of time zone is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from pandas.api.types import pandas_dtype
from pydantic import BaseModel, ConfigDict

from shipway.monitoring.profile import (
    ColumnProfile,
    FloatArray,
    Profile,
    column_names,
    count_categories,
    is_datetime_series,
    is_numeric_series,
    numeric_values,
)

__all__ = ["ColumnQuality", "Finding", "QualityReport", "QualityThresholds", "Severity", "quality"]

Severity: TypeAlias = Literal["info", "warning", "critical"]
_Add: TypeAlias = Callable[[Severity, str, str], None]
_SHOWN_CATEGORIES = 10


@dataclass(frozen=True)
class QualityThresholds:
    """Absolute increases of a rate that raise a warning, then a critical finding."""

    missing_warning: float = 0.05
    missing_critical: float = 0.2
    out_of_range_warning: float = 0.01
    out_of_range_critical: float = 0.1


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Severity
    check: str
    """``row_count``, ``missing_column``, ``new_column``, ``kind_change``, ``dtype_change``,
    ``missing_rate``, ``out_of_range`` or ``new_categories``."""
    column: str | None
    message: str


class ColumnQuality(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    missing_rate: float
    reference_missing_rate: float
    missing_rate_change: float
    out_of_range_share: float | None = None
    """Share of non-missing values outside the reference's ``[min, max]`` (numeric
    columns) or ``[earliest, latest]`` (datetime columns)."""
    new_categories: list[str] = []
    new_category_count: int = 0


class QualityReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    row_count: int
    reference_row_count: int
    columns: list[ColumnQuality]
    findings: list[Finding]

    @property
    def worst(self) -> Severity | None:
        order: list[Severity] = ["critical", "warning", "info"]
        return next((s for s in order if any(f.severity == s for f in self.findings)), None)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def quality(
    profile: Profile, current_df: pd.DataFrame, *, thresholds: QualityThresholds | None = None
) -> QualityReport:
    """Check ``current_df`` against ``profile`` (see the module docstring)."""
    present = column_names(current_df, "current window")
    t = thresholds or QualityThresholds()
    n = len(current_df)
    findings: list[Finding] = []
    if n == 0:
        findings.append(
            Finding(
                severity="critical",
                check="row_count",
                column=None,
                message="The current window has no rows.",
            )
        )
    else:
        findings.append(
            Finding(
                severity="info",
                check="row_count",
                column=None,
                message=f"{n} rows in the current window (reference: {profile.row_count}).",
            )
        )
    for name in profile.column_names:
        if name not in present:
            findings.append(
                Finding(
                    severity="critical",
                    check="missing_column",
                    column=name,
                    message=f"Column '{name}' is missing from the window.",
                )
            )
    known = set(profile.column_names)
    for name in present:
        if name not in known:
            findings.append(
                Finding(
                    severity="warning",
                    check="new_column",
                    column=name,
                    message=f"Column '{name}' is not in the reference.",
                )
            )
    columns: list[ColumnQuality] = []
    for ref in profile.columns:
        if ref.name in present and n > 0:
            col, found = _check_column(ref, current_df.iloc[:, present.index(ref.name)], t)
            columns.append(col)
            findings.extend(found)
    return QualityReport(
        row_count=n, reference_row_count=profile.row_count, columns=columns, findings=findings
    )


def _family(series: pd.Series) -> str:
    if is_datetime_series(series):
        return "datetime"
    return "numeric" if is_numeric_series(series) else "non-numeric"


def _reference_family(ref: ColumnProfile) -> str:
    if ref.kind == "datetime":
        return "datetime"
    return "numeric" if ref.numeric else "non-numeric"


def _time_zone(dtype: object) -> str:
    tz = getattr(pandas_dtype(dtype), "tz", None)
    return "none" if tz is None else str(tz)


def _check_column(
    ref: ColumnProfile, series: pd.Series, t: QualityThresholds
) -> tuple[ColumnQuality, list[Finding]]:
    findings: list[Finding] = []

    def add(severity: Severity, check: str, message: str) -> None:
        findings.append(Finding(severity=severity, check=check, column=ref.name, message=message))

    was, now = _reference_family(ref), _family(series)
    values = numeric_values(series) if now == "numeric" else None
    n_present = int(values.size) if values is not None else int(series.notna().sum())
    missing_rate = 1 - n_present / len(series)
    change = missing_rate - ref.missing_rate
    all_missing = n_present == 0
    if was != now and not all_missing:
        add(
            "critical",
            "kind_change",
            f"Column '{ref.name}' was {was} ({ref.dtype}) and is {now} ({series.dtype}) now.",
        )
    elif now == "datetime" and not all_missing:
        # Units (ns, us, ms) vary with the reader and mean nothing here; a time zone does.
        if _time_zone(ref.dtype) != _time_zone(series.dtype):
            add(
                "warning",
                "dtype_change",
                f"Column '{ref.name}' changed time zone from {_time_zone(ref.dtype)} "
                f"to {_time_zone(series.dtype)} ({ref.dtype} to {series.dtype}).",
            )
    elif _dtype_family(str(series.dtype)) != _dtype_family(ref.dtype) and not all_missing:
        # Within a family (category, object and str; int64 and Int64) the storage differs
        # with the reader, not the data; integers turning into floats is usually missing
        # values arriving, which the missing-rate check reports.
        numbers = {_dtype_family(str(series.dtype)), _dtype_family(ref.dtype)} == {
            "integer",
            "float",
        }
        add(
            "info" if numbers else "warning",
            "dtype_change",
            f"Column '{ref.name}' changed dtype from {ref.dtype} to {series.dtype}.",
        )
    if all_missing and ref.count > 0:
        add(
            "critical",
            "missing_rate",
            f"Column '{ref.name}' is entirely missing (reference: {ref.missing_rate:.1%} missing).",
        )
    elif change >= t.missing_warning:
        severity: Severity = "critical" if change >= t.missing_critical else "warning"
        add(
            severity,
            "missing_rate",
            f"Column '{ref.name}' is {missing_rate:.1%} missing, up from {ref.missing_rate:.1%}.",
        )
    out_share: float | None = None
    if was == "numeric" and values is not None and values.size:
        out_share = _numeric_range(ref, values, t, add)
    elif was == now == "datetime" and not all_missing:
        out_share = _time_range(ref, series, n_present, t, add)
    new: dict[str, int] = {}
    if ref.categories_complete and not all_missing and was == now == "non-numeric":
        new = count_categories(ref, series).unseen
        if new:
            shown = sorted(new, key=lambda k: -new[k])[:_SHOWN_CATEGORIES]
            add(
                "warning",
                "new_categories",
                f"Column '{ref.name}' holds {len(new)} value(s) "
                f"the reference never held, e.g. {', '.join(map(repr, shown))}.",
            )
    col = ColumnQuality(
        column=ref.name,
        missing_rate=missing_rate,
        reference_missing_rate=ref.missing_rate,
        missing_rate_change=change,
        out_of_range_share=out_share,
        new_categories=sorted(new, key=lambda k: -new[k])[:_SHOWN_CATEGORIES],
        new_category_count=len(new),
    )
    return col, findings


def _numeric_range(
    ref: ColumnProfile, values: FloatArray, t: QualityThresholds, add: _Add
) -> float | None:
    if ref.min is None or ref.max is None:
        return None
    outside = int(np.count_nonzero(values < ref.min) + np.count_nonzero(values > ref.max))
    share = outside / values.size
    if share >= t.out_of_range_warning:
        add(
            "critical" if share >= t.out_of_range_critical else "warning",
            "out_of_range",
            f"{share:.1%} of '{ref.name}' lies outside the "
            f"reference range [{ref.min:g}, {ref.max:g}].",
        )
    return share


def _time_range(
    ref: ColumnProfile, series: pd.Series, n_present: int, t: QualityThresholds, add: _Add
) -> float | None:
    """Share of times outside the reference's; only those before it are a problem.

    Times after the reference's latest are what a time column does as the world
    moves on (an event or a signup date), so they make an ``info`` finding.
    """
    if ref.earliest is None or ref.latest is None:
        return None
    if (_time_zone(series.dtype) == "none") != (ref.earliest.tzinfo is None):
        return None  # naive against aware times cannot be compared; dtype_change says so
    before = int((series < ref.earliest).sum()) / n_present
    after = int((series > ref.latest).sum()) / n_present
    if before >= t.out_of_range_warning:
        add(
            "critical" if before >= t.out_of_range_critical else "warning",
            "out_of_range",
            f"{before:.1%} of '{ref.name}' is before the reference's earliest time "
            f"{ref.earliest.isoformat()}.",
        )
    if after > 0:
        add(
            "info",
            "out_of_range",
            f"{after:.1%} of '{ref.name}' is after the reference's latest time "
            f"{ref.latest.isoformat()} (expected as time moves on).",
        )
    return before + after


def _dtype_family(dtype: str) -> str:
    """A dtype's kind of data: integer, float, bool, text or the dtype itself."""
    name = dtype.lower()
    if name.startswith(("int", "uint")):
        return "integer"
    if name.startswith("float"):
        return "float"
    if name in ("bool", "boolean"):
        return "bool"
    if name in ("object", "str", "string", "category") or name.startswith("string"):
        return "text"
    return name
