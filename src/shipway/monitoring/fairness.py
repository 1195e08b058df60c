"""Group fairness of a classifier's decisions, with fairlearn's definitions.

For each group of the sensitive column (missing values form the group ``"(missing)"``):

- selection rate: the share of predictions equal to the positive label, over every row
  with a prediction (labels not needed);
- true positive rate: the share predicted positive among labelled rows whose label is
  positive; false positive rate: the same among labelled rows whose label is not.

Across groups, as ``fairlearn.metrics`` computes them (``method="between_groups"``):

- ``demographic_parity_difference``: largest minus smallest selection rate;
- ``demographic_parity_ratio``: smallest over largest selection rate (None when nobody
  is selected); below ``ratio_threshold`` (0.8, the four-fifths rule) is a violation;
- ``equalized_odds_difference``: the larger of the TPR gap and the FPR gap between
  groups with labels (``agg="worst_case"``). A group with no positive (or no negative)
  labels has an undefined rate, reported as None; like fairlearn, the gap counts it as 0.

The positive label defaults to 1 (``True``) when the labels are a subset of {0, 1} (also
when there are none), else to the greater of two sorted labels; with more labels, pass it.
Given as text, it matches the label with that text ("1" picks 1).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from shipway.errors import InvalidInputError
from shipway.monitoring._windows import (
    MISSING,
    buckets,
    default_positive,
    labels,
    match_label,
    select,
    utc_times,
)

__all__ = ["FairnessPoint", "FairnessReport", "GroupRates", "fairness"]


class GroupRates(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str
    count: int
    labelled: int
    selection_rate: float | None
    true_positive_rate: float | None
    false_positive_rate: float | None


class FairnessPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime
    rows: int
    demographic_parity_difference: float | None
    demographic_parity_ratio: float | None
    equalized_odds_difference: float | None


class FairnessReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sensitive: str
    positive_label: str
    groups: list[GroupRates]
    demographic_parity_difference: float | None
    demographic_parity_ratio: float | None
    equalized_odds_difference: float | None
    ratio_threshold: float
    four_fifths_violated: bool
    over_time: list[FairnessPoint]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def fairness(
    df: pd.DataFrame,
    *,
    sensitive: str,
    prediction: str,
    target: str | None = None,
    positive_label: object | None = None,
    ratio_threshold: float = 0.8,
    time: str | None = None,
    freq: str | None = None,
) -> FairnessReport:
    """Rates per group of ``sensitive`` and the gaps between them (see the module docstring).

    Without ``target`` only selection rates and demographic parity are reported.
    """
    if not 0 < ratio_threshold <= 1:
        raise InvalidInputError(f"ratio_threshold must be in (0, 1], got {ratio_threshold}.")
    optional = [c for c in (target, time) if c]
    frame = select(df, [sensitive, prediction, *optional], "frame")
    notes: list[str] = []
    positive = _positive(frame, prediction, target, positive_label)
    if frame.empty:
        notes.append("The frame has no rows.")
    if unpredicted := int(frame[prediction].isna().sum()):
        notes.append(f"{unpredicted} row(s) without a prediction are left out of the rates.")
    if target is None:
        notes.append("No target column: true and false positive rates need labels.")
    elif not frame.empty and not frame[target].notna().any():
        notes.append("No labels yet: the target is missing in every row.")
    groups = _group_rates(frame, sensitive, prediction, target, positive)
    notes += _group_notes(groups)
    dpd, dpr, eod = _gaps(groups)
    if dpr is None and dpd is not None:
        notes.append("demographic_parity_ratio is undefined: no group has a positive prediction.")
    over_time = _over_time(frame, sensitive, prediction, target, positive, time, freq, notes)
    return FairnessReport(
        sensitive=sensitive,
        positive_label=str(positive),
        groups=groups,
        demographic_parity_difference=dpd,
        demographic_parity_ratio=dpr,
        equalized_odds_difference=eod,
        ratio_threshold=ratio_threshold,
        four_fifths_violated=dpr is not None and dpr < ratio_threshold,
        over_time=over_time,
        notes=notes,
    )


def _positive(
    frame: pd.DataFrame, prediction: str, target: str | None, positive_label: object | None
) -> object:
    seen = labels(frame[prediction], *([frame[target]] if target else []))
    if positive_label is not None:
        return match_label(positive_label, seen)
    positive = default_positive(seen)
    if positive is None:
        raise InvalidInputError(
            f"The predictions and labels hold {len(seen)} values, so the positive one is unclear.",
            "Pass positive_label.",
        )
    return positive


def _group_rates(
    frame: pd.DataFrame, sensitive: str, prediction: str, target: str | None, positive: object
) -> list[GroupRates]:
    predicted = frame[prediction].notna()
    selected = predicted & (frame[prediction] == positive)
    labelled = predicted & (frame[target].notna() if target else False)
    actual = labelled & (frame[target] == positive if target else False)
    negative = labelled & ~actual
    counts = pd.DataFrame(
        {
            "group": frame[sensitive].map(lambda v: MISSING if pd.isna(v) else str(v)),
            "count": 1,
            "predicted": predicted,
            "selected": selected,
            "labelled": labelled,
            "positive": actual,
            "negative": negative,
            "tp": actual & selected,
            "fp": negative & selected,
        }
    )
    totals = counts.groupby("group").sum()
    order = sorted(totals.index, key=lambda g: (g == MISSING, g))
    return [_rates(str(g), totals.loc[g]) for g in order]


def _rates(group: str, t: pd.Series) -> GroupRates:
    def share(part: str, whole: str) -> float | None:
        return float(t[part] / t[whole]) if t[whole] else None

    return GroupRates(
        group=group,
        count=int(t["count"]),
        labelled=int(t["labelled"]),
        selection_rate=share("selected", "predicted"),
        true_positive_rate=share("tp", "positive"),
        false_positive_rate=share("fp", "negative"),
    )


def _group_notes(groups: list[GroupRates]) -> list[str]:
    labelled = [g for g in groups if g.labelled]
    no_pos = [g.group for g in labelled if g.true_positive_rate is None]
    no_neg = [g.group for g in labelled if g.false_positive_rate is None]
    unlabelled = [g.group for g in groups if not g.labelled]
    notes = []
    if no_pos:
        notes.append(
            f"No positive label in group(s) {', '.join(map(repr, no_pos))}: true positive rate "
            "undefined (None); like fairlearn, equalized_odds_difference counts it as 0."
        )
    if no_neg:
        notes.append(
            f"No negative label in group(s) {', '.join(map(repr, no_neg))}: false positive rate "
            "undefined (None); like fairlearn, equalized_odds_difference counts it as 0."
        )
    if labelled and unlabelled:
        notes.append(
            f"Group(s) {', '.join(map(repr, unlabelled))} have no labels and are left out "
            "of equalized_odds_difference."
        )
    return notes


def _gaps(groups: list[GroupRates]) -> tuple[float | None, float | None, float | None]:
    """Demographic parity difference and ratio, equalized odds difference."""
    rates = [g.selection_rate for g in groups if g.selection_rate is not None]
    dpd = max(rates) - min(rates) if rates else None
    dpr = min(rates) / max(rates) if rates and max(rates) > 0 else None
    labelled = [g for g in groups if g.labelled]
    if not labelled:
        return dpd, dpr, None
    tpr = [g.true_positive_rate or 0.0 for g in labelled]
    fpr = [g.false_positive_rate or 0.0 for g in labelled]
    return dpd, dpr, max(max(tpr) - min(tpr), max(fpr) - min(fpr))


def _over_time(
    frame: pd.DataFrame,
    sensitive: str,
    prediction: str,
    target: str | None,
    positive: object,
    time: str | None,
    freq: str | None,
    notes: list[str],
) -> list[FairnessPoint]:
    if time is None:
        return []
    times = utc_times(frame[time], time)
    if untimed := int(times.isna().sum()):
        notes.append(f"{untimed} row(s) without a time are left out of over_time.")
    points = []
    for bucket in buckets(times, freq):
        part = frame.iloc[bucket.rows]
        dpd, dpr, eod = _gaps(_group_rates(part, sensitive, prediction, target, positive))
        points.append(
            FairnessPoint(
                start=bucket.start,
                end=bucket.end,
                rows=len(part),
                demographic_parity_difference=dpd,
                demographic_parity_ratio=dpr,
                equalized_odds_difference=eod,
            )
        )
    return points
