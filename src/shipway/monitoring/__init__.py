"""Monitoring: reference profiles, data quality, drift, model performance, fairness.

Profile the reference once, store :meth:`Profile.to_dict`, then check any later
window against it without the raw reference::

    ref = profile(train_df)
    report = dataset_drift(ref, window_df)
    issues = quality(ref, window_df)

or run everything at once, with model outputs, labels and a sensitive column::

    result = monitor(train_df, window_df, roles=Roles(target="y", prediction="pred"))
    write_html(result, "report.html")

``run_job`` does what ``shipway monitor run`` does: a model's training data against a window
of its prediction log (or plain files), stored in the store.
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
from shipway.monitoring.fairness import FairnessReport, GroupRates, fairness
from shipway.monitoring.history import get_result, latest_results, list_results, save_result
from shipway.monitoring.html import render_html, write_html
from shipway.monitoring.job import MonitorSpec, run_job
from shipway.monitoring.monitor import AlertPolicy, Roles, monitor
from shipway.monitoring.performance import PerformanceReport, performance
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
from shipway.monitoring.result import Alert, Distribution, MonitorResult, Source

__all__ = [
    "MAX_CATEGORIES",
    "PSI_EPSILON",
    "QUANTILE_LEVELS",
    "Alert",
    "AlertPolicy",
    "ColumnDrift",
    "ColumnProfile",
    "ColumnQuality",
    "DatasetDrift",
    "Distribution",
    "DriftThresholds",
    "FairnessReport",
    "Finding",
    "GroupRates",
    "Method",
    "MonitorResult",
    "MonitorSpec",
    "PerformanceReport",
    "Profile",
    "QualityReport",
    "QualityThresholds",
    "Roles",
    "Severity",
    "Source",
    "column_drift",
    "dataset_drift",
    "fairness",
    "get_result",
    "latest_results",
    "list_results",
    "monitor",
    "performance",
    "profile",
    "quality",
    "render_html",
    "run_job",
    "save_result",
    "write_html",
]
