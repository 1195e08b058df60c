"""Data quality of a current window against a reference profile.

:func:`quality` returns per-column measurements (missing rate and its change,
the share of numeric values outside the reference's ``[min, max]``, values the
reference never held) and a list of :class:`Finding` objects, each with a
severity: ``critical`` when the window cannot be trusted as model input (no rows,
a missing column, a changed column kind, a column that became entirely missing),
``warning`` when it deserves a look (new columns, a dtype change, new
categories, a missing-rate increase or out-of-range share above the thresholds),
``info`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import pandas as pd
from pydantic import BaseModel, ConfigDict

from shipway.monitoring.profile import (
    ColumnProfile,
    Profile,
    column_names,
    count_categories,
    is_numeric_series,
    numeric_values,
)

__all__ = ["ColumnQuality", "Finding", "QualityReport", "QualityThresholds", "Severity", "quality"]

Severity: TypeAlias = Literal["info", "warning", "critical"]
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
    """Share of non-missing numeric values outside the reference's ``[min, max]``."""
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


def _check_column(
    ref: ColumnProfile, series: pd.Series, t: QualityThresholds
) -> tuple[ColumnQuality, list[Finding]]:
    findings: list[Finding] = []

    def add(severity: Severity, check: str, message: str) -> None:
        findings.append(Finding(severity=severity, check=check, column=ref.name, message=message))

    numeric_now = is_numeric_series(series)
    values = numeric_values(series) if numeric_now else None
    n_present = int(values.size) if values is not None else int(series.notna().sum())
    missing_rate = 1 - n_present / len(series)
    change = missing_rate - ref.missing_rate
    all_missing = n_present == 0
    if ref.numeric != numeric_now and not all_missing:
        was, now = ("numeric", "non-numeric") if ref.numeric else ("non-numeric", "numeric")
        add(
            "critical",
            "kind_change",
            f"Column '{ref.name}' was {was} ({ref.dtype}) and is {now} ({series.dtype}) now.",
        )
    elif str(series.dtype) != ref.dtype and not all_missing:
        add(
            "warning",
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
    if (
        ref.numeric
        and values is not None
        and values.size
        and ref.min is not None
        and ref.max is not None
    ):
        outside = int(((values < ref.min) | (values > ref.max)).sum())
        out_share = outside / values.size
        if out_share >= t.out_of_range_warning:
            severity = "critical" if out_share >= t.out_of_range_critical else "warning"
            add(
                severity,
                "out_of_range",
                f"{out_share:.1%} of '{ref.name}' lies outside the "
                f"reference range [{ref.min:g}, {ref.max:g}].",
            )
    new: dict[str, int] = {}
    if ref.categories_complete and not all_missing and ref.numeric == numeric_now:
        new = count_categories(ref, series).unseen
        if new and not ref.numeric:
            shown = sorted(new, key=lambda k: -new[k])[:_SHOWN_CATEGORIES]
            add(
                "warning",
                "new_categories",
                f"Column '{ref.name}' holds {len(new)} value(s) "
                f"the reference never held, e.g. {', '.join(map(repr, shown))}.",
            )
    shown_new = sorted(new, key=lambda k: -new[k])[:_SHOWN_CATEGORIES] if not ref.numeric else []
    col = ColumnQuality(
        column=ref.name,
        missing_rate=missing_rate,
        reference_missing_rate=ref.missing_rate,
        missing_rate_change=change,
        out_of_range_share=out_share,
        new_categories=shown_new,
        new_category_count=len(new) if not ref.numeric else 0,
    )
    return col, findings
