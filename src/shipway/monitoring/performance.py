"""Model metrics over a window of predictions joined with their labels.

:func:`performance` scores the rows holding both a label and a prediction with
``sklearn.metrics``: for the whole window, per time bucket, per segment value, and on
an optional reference window for comparison. Rows whose label has not arrived yet
(missing target) count in ``rows`` but not in the metrics.

Classification (``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``, ``log_loss``):

- Binary: precision, recall and F1 of the positive label. It defaults to 1 (``True``)
  when the labels are a subset of {0, 1}, else to the greater of the two sorted labels
  ("yes" over "no"). A ``positive_label`` given as text matches the label with that
  text ("1" picks 1).
- Multiclass: the unweighted mean over the classes present in the labels and
  predictions (``average="macro"``); a class never predicted counts as precision 0, as
  in sklearn's default.
- ``roc_auc`` (one-vs-rest macro for multiclass) and ``log_loss`` need probability
  scores. Binary: one column, P(positive), or one column per class. Multiclass: one
  column per class. Columns per class follow the sorted classes, which are the distinct
  values of target and prediction in the current and reference frames.

Regression: ``mae`` and ``rmse``.

A metric is None, never NaN, when it is undefined; ``notes`` say why.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import sklearn.metrics as skm
from pydantic import BaseModel, ConfigDict

from shipway.errors import InvalidInputError
from shipway.monitoring._windows import (
    MISSING,
    buckets,
    default_positive,
    is_zero_one,
    labels,
    match_label,
    select,
    utc_times,
)
from shipway.monitoring.profile import column_names, is_numeric_series

__all__ = [
    "CLASSIFICATION_METRICS",
    "MAX_SEGMENT_VALUES",
    "REGRESSION_METRICS",
    "MetricPoint",
    "PerformanceReport",
    "SegmentMetrics",
    "Task",
    "performance",
]

Task: TypeAlias = Literal["classification", "regression"]
Metrics: TypeAlias = dict[str, float | None]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse")
MAX_SEGMENT_VALUES = 20
_REGRESSION_DISTINCT = 20
_UNDEFINED_BINARY = {
    "precision": "nothing was predicted positive",
    "recall": "no label is positive",
    "f1": "no label or prediction is positive",
}


class MetricPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime
    rows: int
    labelled: int
    metrics: Metrics


class SegmentMetrics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    value: str
    rows: int
    labelled: int
    metrics: Metrics


class PerformanceReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task: Task
    target: str
    prediction: str
    scores: list[str]
    positive_label: str | None
    rows: int
    labelled: int
    metrics: Metrics
    reference_metrics: Metrics | None
    over_time: list[MetricPoint]
    segments: list[SegmentMetrics]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class _Setup:
    task: Task
    target: str
    prediction: str
    scores: tuple[str, ...]
    classes: tuple[object, ...]
    positive: object | None
    """The positive label for binary classification; None for multiclass and regression."""


def performance(
    current: pd.DataFrame,
    *,
    target: str,
    prediction: str,
    scores: Sequence[str] = (),
    task: Task | None = None,
    positive_label: object | None = None,
    time: str | None = None,
    freq: str | None = None,
    segments: Sequence[str] = (),
    reference: pd.DataFrame | None = None,
) -> PerformanceReport:
    """Metrics of ``current`` (see the module docstring).

    ``task=None`` infers regression for float predictions that are not all whole numbers
    or hold more than 20 distinct values, classification otherwise. ``time`` and ``freq``
    give ``over_time`` (see :func:`shipway.monitoring._windows.buckets`); ``segments``
    give metrics per value of each column, its 20 most frequent values at most.
    """
    if task not in (None, "classification", "regression"):
        raise InvalidInputError(f"Unknown task {task!r}.", "Use 'classification' or 'regression'.")
    wanted = [target, prediction, *scores, *([time] if time else []), *segments]
    frame = select(current, wanted, "current window")
    notes: list[str] = []
    ref = _reference_frame(reference, target, prediction, list(scores), notes)
    if task is None:
        task = _infer_task(frame[prediction])
        notes.append(f"Task inferred as {task} from the predictions; pass task= to set it.")
    setup = _setup(frame, ref, task, target, prediction, tuple(scores), positive_label, notes)
    metrics, found = _evaluate(frame, setup)
    notes += found
    reference_metrics = None
    if ref is not None:
        ref_setup = replace(setup, scores=tuple(c for c in setup.scores if c in ref.columns))
        reference_metrics, found = _evaluate(ref, ref_setup)
        notes += [f"Reference: {note}" for note in found]
    return PerformanceReport(
        task=task,
        target=target,
        prediction=prediction,
        scores=list(setup.scores),
        positive_label=None if setup.positive is None else str(setup.positive),
        rows=len(frame),
        labelled=int(frame[target].notna().sum()),
        metrics=metrics,
        reference_metrics=reference_metrics,
        over_time=_over_time(frame, setup, time, freq, notes) if time else [],
        segments=_segments(frame, setup, segments, notes),
        notes=notes,
    )


def _reference_frame(
    reference: pd.DataFrame | None,
    target: str,
    prediction: str,
    scores: list[str],
    notes: list[str],
) -> pd.DataFrame | None:
    if reference is None:
        return None
    names = column_names(reference, "reference")
    absent = [c for c in (target, prediction) if c not in names]
    if absent:
        notes.append(f"The reference lacks {', '.join(map(repr, absent))}: no reference metrics.")
        return None
    if any(c not in names for c in scores):
        notes.append("The reference lacks some score columns: its roc_auc and log_loss are None.")
        return select(reference, [target, prediction], "reference")
    return select(reference, [target, prediction, *scores], "reference")


def _infer_task(predictions: pd.Series) -> Task:
    if pd.api.types.is_float_dtype(predictions.dtype):
        values = predictions.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if (values != np.round(values)).any() or np.unique(values).size > _REGRESSION_DISTINCT:
            return "regression"
    return "classification"


def _setup(
    frame: pd.DataFrame,
    ref: pd.DataFrame | None,
    task: Task,
    target: str,
    prediction: str,
    scores: tuple[str, ...],
    positive_label: object | None,
    notes: list[str],
) -> _Setup:
    frames = [f for f in (frame, ref) if f is not None]
    hint = "Pass task='classification' for a classifier."
    if task == "regression":
        if positive_label is not None:
            raise InvalidInputError("positive_label applies to classification only.", hint)
        for f in frames:
            for col in (target, prediction):
                if not is_numeric_series(f[col]):
                    raise InvalidInputError(
                        f"Regression needs numbers in '{col}', which holds {f[col].dtype}.", hint
                    )
        if scores:
            notes.append("Score columns are not used for regression.")
        return _Setup(task, target, prediction, (), (), None)
    for f in frames:
        for col in (c for c in scores if c in f.columns):
            if not is_numeric_series(f[col]):
                raise InvalidInputError(
                    f"Score column '{col}' holds {f[col].dtype}, not probabilities."
                )
    classes = labels(*(f[c] for f in frames for c in (prediction, target)))
    if positive_label is not None:
        positive_label = match_label(positive_label, classes)
        classes = labels(pd.Series([*classes, positive_label], dtype=object))
    if positive_label is not None and len(classes) > 2:
        shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
        raise InvalidInputError(
            f"positive_label {positive_label!r} is for binary classification, but the "
            f"labels, predictions and positive_label hold {len(classes)} classes: {shown}.",
            "Leave positive_label out for macro-averaged multiclass metrics.",
        )
    positive = positive_label
    if positive is None and 0 < len(classes) <= 2:
        positive = default_positive(classes)
        if len(classes) == 1 and not is_zero_one(classes):
            notes.append(
                f"Only the label {classes[0]!r} occurs, so it is taken as the positive label; "
                "pass positive_label to choose another."
            )
    return _Setup(task, target, prediction, scores, tuple(classes), positive)


def _evaluate(frame: pd.DataFrame, s: _Setup) -> tuple[Metrics, list[str]]:
    """Metrics over the rows of ``frame`` holding a label and a prediction, with notes."""
    keys = CLASSIFICATION_METRICS if s.task == "classification" else REGRESSION_METRICS
    metrics: Metrics = dict.fromkeys(keys)
    if frame.empty:
        return metrics, ["The window has no rows."]
    labelled = frame[s.target].notna()
    if not labelled.any():
        return metrics, ["No labels yet: the target is missing in every row."]
    usable = labelled & frame[s.prediction].notna()
    notes: list[str] = []
    if skipped := int((labelled & ~usable).sum()):
        notes.append(f"{skipped} labelled row(s) without a prediction are left out.")
    rows = frame[usable]
    if rows.empty:
        return metrics, notes
    if s.task == "regression":
        y = rows[s.target].to_numpy(dtype=np.float64)
        p = rows[s.prediction].to_numpy(dtype=np.float64)
        metrics["mae"] = _safe("mae", notes, partial(skm.mean_absolute_error, y, p))
        metrics["rmse"] = _safe("rmse", notes, partial(skm.root_mean_squared_error, y, p))
    else:
        metrics.update(_label_metrics(rows, s, notes))
        metrics.update(_score_metrics(rows, s, notes))
    return metrics, notes


def _label_metrics(rows: pd.DataFrame, s: _Setup, notes: list[str]) -> Metrics:
    y = rows[s.target].infer_objects().to_numpy()
    p = rows[s.prediction].infer_objects().to_numpy()
    out: Metrics = {"accuracy": _safe("accuracy", notes, partial(skm.accuracy_score, y, p))}
    fns = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    for name, fn in fns.items():
        if s.positive is None:
            compute = partial(fn, y, p, average="macro", zero_division=0.0)
            out[name] = _safe(name, notes, compute)
        else:
            compute = partial(fn, y == s.positive, p == s.positive, zero_division=np.nan)
            out[name] = _safe(name, notes, compute, why=_UNDEFINED_BINARY[name])
    return out


def _score_metrics(rows: pd.DataFrame, s: _Setup, notes: list[str]) -> Metrics:
    out: Metrics = {"roc_auc": None, "log_loss": None}
    if not s.scores:
        notes.append("roc_auc and log_loss need probability scores: pass scores=[...].")
        return out
    scores = rows[list(s.scores)].to_numpy(dtype=np.float64, na_value=np.nan)
    scored = np.isfinite(scores).all(axis=1)
    if not scored.all():
        notes.append(f"{int((~scored).sum())} row(s) without scores are left out of roc_auc.")
    y = rows[s.target].infer_objects().to_numpy()[scored]
    scores = scores[scored]
    if not len(y):
        return out
    if s.positive is not None:
        prob = _positive_scores(scores, s, notes)
        if prob is None:
            return out
        yb = y == s.positive
        if yb.all() or not yb.any():
            notes.append("roc_auc is undefined: the labels hold only one class.")
        else:
            out["roc_auc"] = _safe("roc_auc", notes, partial(skm.roc_auc_score, yb, prob))
        compute = partial(skm.log_loss, yb, prob, labels=[False, True])
        out["log_loss"] = _safe("log_loss", notes, compute)
        return out
    classes = list(s.classes)
    if scores.shape[1] != len(classes):
        notes.append(
            f"roc_auc and log_loss need one score column per class, in sorted class order; "
            f"got {scores.shape[1]} for {len(classes)} classes."
        )
        return out
    absent = [c for c in classes if not (y == c).any()]
    if absent:
        notes.append(f"roc_auc is undefined: no label is {', '.join(map(repr, absent))}.")
    else:
        compute = partial(skm.roc_auc_score, y, scores, multi_class="ovr", labels=classes)
        out["roc_auc"] = _safe("roc_auc", notes, compute)
    out["log_loss"] = _safe("log_loss", notes, partial(skm.log_loss, y, scores, labels=classes))
    return out


def _positive_scores(
    scores: npt.NDArray[np.float64], s: _Setup, notes: list[str]
) -> npt.NDArray[np.float64] | None:
    """P(positive): the only score column, or the positive class's column of two."""
    if scores.shape[1] == 1:
        return scores[:, 0]
    pair = sorted({*s.classes, s.positive, *((0, 1) if is_zero_one(s.classes) else ())})
    if scores.shape[1] == 2 and len(pair) == 2:
        return scores[:, pair.index(s.positive)]
    notes.append(
        "Binary roc_auc and log_loss take one score column, P(positive), or one per class "
        f"in sorted class order; got {scores.shape[1]} for the classes {pair}."
    )
    return None


def _safe(
    name: str, notes: list[str], compute: Callable[[], Any], why: str = "sklearn returned NaN"
) -> float | None:
    """``compute()`` as a float; None with a note if sklearn rejects the input or gives NaN.

    Warnings sklearn raises become notes too.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(compute())
        except ValueError as exc:
            notes.append(f"{name} could not be computed: {exc}")
            return None
    notes.extend(f"{name}: {w.message}" for w in caught)
    if math.isfinite(value):
        return value
    notes.append(f"{name} is undefined: {why}.")
    return None


def _over_time(
    frame: pd.DataFrame, s: _Setup, time: str, freq: str | None, notes: list[str]
) -> list[MetricPoint]:
    times = utc_times(frame[time], time)
    if untimed := int(times.isna().sum()):
        notes.append(f"{untimed} row(s) without a time are left out of over_time.")
    points = []
    for bucket in buckets(times, freq):
        part = frame.iloc[bucket.rows]
        metrics, _ = _evaluate(part, s)
        labelled = int(part[s.target].notna().sum())
        points.append(
            MetricPoint(
                start=bucket.start,
                end=bucket.end,
                rows=len(part),
                labelled=labelled,
                metrics=metrics,
            )
        )
    return points


def _segments(
    frame: pd.DataFrame, s: _Setup, columns: Sequence[str], notes: list[str]
) -> list[SegmentMetrics]:
    out = []
    for column in columns:
        values = frame[column]
        counts = values.value_counts(dropna=False)
        if len(counts) > MAX_SEGMENT_VALUES:
            notes.append(
                f"Segment column '{column}' holds {len(counts)} values; only the "
                f"{MAX_SEGMENT_VALUES} most frequent are reported."
            )
        for value in counts.index[:MAX_SEGMENT_VALUES]:
            missing = bool(pd.isna(value))
            part = frame[values.isna() if missing else values == value]
            metrics, _ = _evaluate(part, s)
            out.append(
                SegmentMetrics(
                    column=column,
                    value=MISSING if missing else str(value),
                    rows=len(part),
                    labelled=int(part[s.target].notna().sum()),
                    metrics=metrics,
                )
            )
    return out
