"""Monitoring: reference profiles, data quality and drift.

Profile the reference once, store :meth:`Profile.to_dict`, then check any later
window against it without the raw reference::

    ref = profile(train_df)
    report = dataset_drift(ref, window_df)
    issues = quality(ref, window_df)
"""

from shipway.monitoring.drift import (
    PSI_EPSILON,
    ColumnDrift,
    DatasetDrift,
    DriftThresholds,
    Method,
    column_drift,
    dataset_drift,
)
from shipway.monitoring.profile import (
    MAX_CATEGORIES,
    QUANTILE_LEVELS,
    ColumnProfile,
    Profile,
    profile,
)
from shipway.monitoring.quality import (
    ColumnQuality,
    Finding,
    QualityReport,
    QualityThresholds,
    Severity,
    quality,
)

__all__ = [
    "MAX_CATEGORIES",
    "PSI_EPSILON",
    "QUANTILE_LEVELS",
    "ColumnDrift",
    "ColumnProfile",
    "ColumnQuality",
    "DatasetDrift",
    "DriftThresholds",
    "Finding",
    "Method",
    "Profile",
    "QualityReport",
    "QualityThresholds",
    "Severity",
    "column_drift",
    "dataset_drift",
    "profile",
    "quality",
]
