"""The result of one monitoring run: what was compared, what was found, what should alert.

A :class:`MonitorResult` is plain data (pydantic), stored as JSON in the store, written as
``--json`` by the CLI, rendered by :mod:`shipway.monitoring.html` and turned into Prometheus
gauges by :mod:`shipway.monitoring.prometheus`. Everything a report or a dashboard shows is
in here, so none of them needs the raw data again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from shipway.monitoring.drift import ColumnDrift, DatasetDrift
from shipway.monitoring.fairness import FairnessReport
from shipway.monitoring.performance import PerformanceReport
from shipway.monitoring.quality import QualityReport, Severity

__all__ = ["Alert", "Distribution", "MonitorResult", "Source", "SourceKind"]

SourceKind: TypeAlias = Literal["dataset", "predictions", "file", "frame"]


class Source(BaseModel):
    """Where the reference or the current data came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SourceKind
    description: str
    """``dataset credit-train (sha256 1a2b…)``, ``predictions of credit, last 24h``, a path."""
    rows: int
    start: datetime | None = None
    end: datetime | None = None


class Distribution(BaseModel):
    """Reference against current for one column, ready to plot.

    Numeric columns: ``edges`` (len n+1) and counts per bin; values outside the reference
    range are counted in ``current_below``/``current_above``. Categorical columns: ``labels``
    (the reference's most frequent categories, then ``(other)`` when some were cut) and counts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    kind: str
    edges: list[float] | None = None
    labels: list[str] | None = None
    reference_counts: list[int]
    current_counts: list[int]
    current_below: int = 0
    current_above: int = 0


class Alert(BaseModel):
    """Something a person should look at; ``name`` is stable for routing and silencing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """``dataset_drift``, ``column_drift``, ``data_quality``, ``score_drift``,
    ``performance_drop`` or ``fairness``."""
    severity: Severity
    column: str | None = None
    message: str


class MonitorResult(BaseModel):
    """One monitoring run (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    id: str
    created_at: datetime
    model: str | None = None
    version: int | None = None
    reference: Source
    current: Source
    features: list[str]
    quality: QualityReport
    drift: DatasetDrift
    score_drift: list[ColumnDrift] = []
    """Drift of the model's outputs (prediction and scores) against its outputs on the
    reference."""
    performance: PerformanceReport | None = None
    fairness: FairnessReport | None = None
    distributions: list[Distribution] = []
    alerts: list[Alert] = []

    @property
    def worst(self) -> Severity | None:
        order: list[Severity] = ["critical", "warning", "info"]
        return next((s for s in order if any(a.severity == s for a in self.alerts)), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; an infinite statistic stays ``inf`` (``Infinity`` in JSON)."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorResult:
        return cls.model_validate(data)
