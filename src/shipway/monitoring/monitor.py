"""One monitoring run over data frames: quality, drift, outputs, performance, fairness, alerts.

:func:`monitor` is what ``shipway monitor run`` calls once it has loaded the reference and the
current window (see :mod:`shipway.monitoring.sources`); use it directly from a notebook or a
job on any pair of frames. The columns are split by role: ``target``, ``prediction``,
``scores`` and ``time`` are the model's inputs and outputs rather than features, so they are
left out of feature drift and data quality; outputs get their own drift (``score_drift``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from shipway.errors import InvalidInputError
from shipway.monitoring.drift import (
    ColumnDrift,
    DatasetDrift,
    DriftThresholds,
    Method,
    column_drift,
    dataset_drift,
)
from shipway.monitoring.fairness import FairnessReport, fairness
from shipway.monitoring.performance import PerformanceReport, Task, performance
from shipway.monitoring.profile import (
    ColumnProfile,
    Profile,
    count_categories,
    is_numeric_series,
    numeric_values,
)
from shipway.monitoring.profile import profile as make_profile
from shipway.monitoring.quality import QualityReport, QualityThresholds, quality
from shipway.monitoring.result import Alert, Distribution, MonitorResult, Source

__all__ = ["AlertPolicy", "Roles", "monitor"]

_HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "roc_auc"}
_SHOWN_CATEGORIES = 20


@dataclass(frozen=True)
class Roles:
    """Which columns are not features: the label, the model's outputs, time and segments."""

    target: str | None = None
    prediction: str | None = None
    scores: Sequence[str] = ()
    time: str | None = None
    sensitive: str | None = None
    segments: Sequence[str] = ()
    task: Task | None = None
    positive_label: object | None = None

    @property
    def outputs(self) -> list[str]:
        return [c for c in (self.prediction, *self.scores) if c is not None]

    @property
    def non_features(self) -> set[str]:
        return {c for c in (self.target, self.time, *self.outputs) if c is not None}


@dataclass(frozen=True)
class AlertPolicy:
    """When a finding becomes an alert; every threshold of the tests lives here too."""

    drift: DriftThresholds = field(default_factory=DriftThresholds)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    share: float = 0.5
    """Dataset drift when this share of tested features drifted."""
    methods: Mapping[str, Method] = field(default_factory=dict)
    performance_drop: float = 0.1
    """Alert when a metric is worse than on the reference by more than this share of it."""
    fairness_ratio: float = 0.8


def monitor(
    reference: pd.DataFrame | Profile,
    current: pd.DataFrame,
    *,
    roles: Roles | None = None,
    policy: AlertPolicy | None = None,
    features: Sequence[str] | None = None,
    model: str | None = None,
    version: int | None = None,
    reference_source: Source | None = None,
    current_source: Source | None = None,
    freq: str | None = None,
    performance_reference: pd.DataFrame | None = None,
) -> MonitorResult:
    """Compare ``current`` with ``reference`` (a frame, or its stored :class:`Profile`).

    ``features`` defaults to every reference column that has no role in ``roles``. Reference
    metrics (for the performance-drop alert) come from ``performance_reference``, else from
    the reference when it is a frame holding the target and the prediction.
    """
    roles = roles or Roles()
    policy = policy or AlertPolicy()
    if len(current) == 0:
        raise InvalidInputError("The current window has no rows.", "Pick a wider window.")
    ref_frame = reference if isinstance(reference, pd.DataFrame) else None
    ref_profile = make_profile(reference) if ref_frame is not None else reference
    assert isinstance(ref_profile, Profile)
    _check_roles(roles, list(map(str, current.columns)))
    names = _features(ref_profile, roles, features)
    feature_profile = _subset(ref_profile, names)
    current_features = current[[c for c in current.columns if c not in roles.non_features]]

    quality_report = quality(feature_profile, current_features, thresholds=policy.quality)
    drift = dataset_drift(
        feature_profile,
        current_features,
        share=policy.share,
        methods={k: v for k, v in policy.methods.items() if k in names},
        thresholds=policy.drift,
    )
    score_drift = [
        column_drift(ref_profile.column(c), current[c], thresholds=policy.drift)
        for c in roles.outputs
        if c in ref_profile.column_names
    ]
    perf = _performance(
        performance_reference if performance_reference is not None else ref_frame,
        current,
        roles,
        freq,
    )
    fair = _fairness(current, roles, policy, freq)
    shown = [*feature_profile.columns, *(ref_profile.column(d.column) for d in score_drift)]
    result = MonitorResult(
        id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        model=model,
        version=version,
        reference=reference_source
        or Source(kind="frame", description="reference frame", rows=ref_profile.row_count),
        current=current_source
        or Source(kind="frame", description="current frame", rows=len(current)),
        features=names,
        quality=quality_report,
        drift=drift,
        score_drift=score_drift,
        performance=perf,
        fairness=fair,
        distributions=[_distribution(c, current[c.name]) for c in shown if c.name in current],
        alerts=_alerts(quality_report, drift, score_drift, perf, fair, policy),
    )
    return result


def _check_roles(roles: Roles, present: list[str]) -> None:
    named = [c for c in (roles.target, roles.time, roles.sensitive) if c is not None]
    named += [*roles.outputs, *roles.segments]
    missing = [c for c in named if c not in present and c != roles.target]
    if missing:
        raise InvalidInputError(
            f"The current data has no column {', '.join(map(repr, missing))}.",
            f"Its columns: {', '.join(present)}.",
        )


def _features(profile: Profile, roles: Roles, features: Sequence[str] | None) -> list[str]:
    if features is None:
        return [c for c in profile.column_names if c not in roles.non_features]
    unknown = [c for c in features if c not in profile.column_names]
    if unknown:
        raise InvalidInputError(
            f"Features not in the reference: {', '.join(unknown)}.",
            f"Reference columns: {', '.join(profile.column_names)}.",
        )
    return list(features)


def _subset(profile: Profile, names: Sequence[str]) -> Profile:
    return profile.model_copy(update={"columns": [profile.column(n) for n in names]})


def _performance(
    reference: pd.DataFrame | None, current: pd.DataFrame, roles: Roles, freq: str | None
) -> PerformanceReport | None:
    if roles.target is None or roles.prediction is None:
        return None
    if roles.target not in current:  # no labels have arrived: metrics say so
        current = current.assign(**{roles.target: pd.Series(np.nan, index=current.index)})
    has_outputs = reference is not None and {roles.target, roles.prediction} <= set(reference)
    return performance(
        current,
        target=roles.target,
        prediction=roles.prediction,
        scores=roles.scores,
        task=roles.task,
        positive_label=roles.positive_label,
        time=roles.time,
        freq=freq,
        segments=roles.segments,
        reference=reference if has_outputs else None,
    )


def _fairness(
    current: pd.DataFrame, roles: Roles, policy: AlertPolicy, freq: str | None
) -> FairnessReport | None:
    if roles.sensitive is None or roles.prediction is None:
        return None
    target = roles.target if roles.target in current else None
    return fairness(
        current,
        sensitive=roles.sensitive,
        prediction=roles.prediction,
        target=target,
        positive_label=roles.positive_label,
        ratio_threshold=policy.fairness_ratio,
        time=roles.time,
        freq=freq,
    )


def _distribution(ref: ColumnProfile, series: pd.Series) -> Distribution:
    if ref.numeric and ref.histogram_edges and ref.histogram_counts is not None:
        edges = np.asarray(ref.histogram_edges, dtype=np.float64)
        values = numeric_values(series) if is_numeric_series(series) else np.empty(0)
        counts, _ = np.histogram(values, bins=edges)
        return Distribution(
            column=ref.name,
            kind=ref.kind,
            edges=list(ref.histogram_edges),
            reference_counts=list(ref.histogram_counts),
            current_counts=[int(c) for c in counts],
            current_below=int((values < edges[0]).sum()),
            current_above=int((values > edges[-1]).sum()),
        )
    if ref.categories is None:
        return Distribution(column=ref.name, kind=ref.kind, reference_counts=[], current_counts=[])
    cats = count_categories(ref, series)
    shown = min(len(ref.categories), _SHOWN_CATEGORIES)
    labels = list(ref.categories[:shown])
    ref_counts = list(ref.category_counts or [])[:shown]
    cur_counts = [int(c) for c in cats.known[:shown]]
    ref_rest = sum((ref.category_counts or [])[shown:]) + ref.other_count
    cur_rest = int(cats.known[shown:].sum()) + cats.other + sum(cats.unseen.values())
    if ref_rest or cur_rest:
        labels.append("(other)")
        ref_counts.append(ref_rest)
        cur_counts.append(cur_rest)
    return Distribution(
        column=ref.name,
        kind=ref.kind,
        labels=labels,
        reference_counts=ref_counts,
        current_counts=cur_counts,
    )


def _alerts(
    quality_report: QualityReport,
    drift: DatasetDrift,
    score_drift: list[ColumnDrift],
    perf: PerformanceReport | None,
    fair: FairnessReport | None,
    policy: AlertPolicy,
) -> list[Alert]:
    alerts: list[Alert] = []
    if drift.drifted:
        alerts.append(
            Alert(
                name="dataset_drift",
                severity="critical",
                message=f"{drift.n_drifted} of {drift.n_tested} features drifted "
                f"(share {drift.share_drifted:.2f} >= {drift.share}).",
            )
        )
    for c in drift.columns:
        if c.drifted:
            alerts.append(
                Alert(
                    name="column_drift",
                    severity="warning",
                    column=c.column,
                    message=f"'{c.column}' drifted: {c.method} = {c.statistic:.4g} "
                    f"(threshold {c.threshold}).",
                )
            )
    for f in quality_report.findings:
        if f.severity != "info":
            alerts.append(
                Alert(name="data_quality", severity=f.severity, column=f.column, message=f.message)
            )
    for c in score_drift:
        if c.drifted:
            alerts.append(
                Alert(
                    name="score_drift",
                    severity="warning",
                    column=c.column,
                    message=f"Model output '{c.column}' drifted: {c.method} = "
                    f"{c.statistic:.4g} (threshold {c.threshold}).",
                )
            )
    if perf is not None and perf.reference_metrics:
        for metric, value in perf.metrics.items():
            ref = perf.reference_metrics.get(metric)
            if value is None or ref is None:
                continue
            worse = ref - value if metric in _HIGHER_IS_BETTER else value - ref
            if worse > policy.performance_drop * abs(ref):
                alerts.append(
                    Alert(
                        name="performance_drop",
                        severity="warning",
                        message=f"{metric} is {value:.4g}, against {ref:.4g} on the reference.",
                    )
                )
    if fair is not None and fair.four_fifths_violated:
        ratio = fair.demographic_parity_ratio
        alerts.append(
            Alert(
                name="fairness",
                severity="warning",
                column=fair.sensitive,
                message=f"Demographic parity ratio over '{fair.sensitive}' is {ratio:.3f}, "
                f"below {fair.ratio_threshold} (four-fifths rule).",
            )
        )
    return alerts
