"""The self-contained HTML report of a monitoring run: one page, readable offline.

:func:`render_html` turns a :class:`MonitorResult` (and, optionally, earlier results of the same
model for the over-time charts) into a single HTML document: inline CSS, server-drawn SVG
charts (:mod:`shipway.monitoring.svg`) and a few lines of optional script for the column filter.
It loads nothing: no script library, no font, no image, and a Content-Security-Policy of
``default-src 'none'`` (with the hashes of its own style and script) makes the browser refuse
any request, even one a hostile column name might try to smuggle in past the autoescaping.

Column names, categories and messages are user data; the Jinja environment autoescapes all of
it and the SVG helpers escape their labels. A report of 120 columns is about 360 kB (3 kB a
column, mostly the detailed plots) and renders in well under a second.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata, resources
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup

from shipway.monitoring import svg
from shipway.monitoring.drift import ColumnDrift
from shipway.monitoring.fairness import FairnessReport
from shipway.monitoring.performance import PerformanceReport
from shipway.monitoring.quality import ColumnQuality, Finding, Severity
from shipway.monitoring.result import Alert, Distribution, MonitorResult
from shipway.monitoring.svg import MINUS
from shipway.templating import html_environment

__all__ = ["render_html", "write_html"]

_SEVERITY_ORDER: dict[Severity, int] = {"critical": 0, "warning": 1, "info": 2}
_LOWER_IS_BETTER = {"log_loss", "mae", "rmse"}
_METRIC_NAMES = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "log_loss": "Log loss",
    "mae": "MAE",
    "rmse": "RMSE",
}


def render_html(result: MonitorResult, *, history: Sequence[MonitorResult] = ()) -> str:
    """The report of ``result`` as one HTML document.

    ``history`` holds earlier results of the same model, oldest first; with it the report
    charts the share of drifted features, each metric and each drift statistic across runs.
    """
    style, script, csp = _assets()
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=result,
        page=_Page.build(result, list(history)),
        style=style,
        script=script,
        csp=csp,
        generator=_generator(),
    )


def write_html(
    result: MonitorResult, path: str | os.PathLike[str], *, history: Sequence[MonitorResult] = ()
) -> Path:
    """Write :func:`render_html` to ``path`` atomically (never a half-written report)."""
    target = Path(path)
    text = render_html(result, history=history)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


# -- formatting (Jinja filters) -------------------------------------------------------------


def fmt_num(value: float | int | None, digits: int = 4) -> str:
    """``None`` and NaN as an em dash, infinities as ∞, integers with thousands separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isinf(value):
        return "∞" if value > 0 else f"{MINUS}∞"
    return f"{value:.{digits}g}".replace("-", MINUS)


def fmt_pct(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else f"{MINUS}∞"
    return f"{value * 100:.{digits}f}%".replace("-", MINUS)


def fmt_when(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- view model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    level: str
    """``ok``, ``warn`` or ``bad``: the colour."""
    title: str
    detail: str


@dataclass(frozen=True)
class _ColumnView:
    drift: ColumnDrift
    quality: ColumnQuality | None
    distribution: Distribution | None
    findings: list[Finding]
    plot: Markup
    detail_plot: Markup
    trend: Markup | None

    @property
    def skipped(self) -> bool:
        return self.drift.statistic is None

    @property
    def key(self) -> str:
        return self.drift.column.lower()


@dataclass(frozen=True)
class _MetricRow:
    name: str
    label: str
    value: float | None
    reference: float | None
    delta: float | None
    worse: bool | None


@dataclass(frozen=True)
class _Chart:
    title: str
    svg: Markup


@dataclass
class _Page:
    verdict: _Verdict
    columns: list[_ColumnView]
    outputs: list[_ColumnView]
    alerts: list[Alert]
    findings: list[Finding]
    meter: Markup
    drift_trend: Markup | None
    metrics: list[_MetricRow] = field(default_factory=list)
    metric_charts: list[_Chart] = field(default_factory=list)
    segment_metrics: list[str] = field(default_factory=list)
    fairness_chart: Markup | None = None
    fairness_charts: list[_Chart] = field(default_factory=list)
    runs: int = 1

    @classmethod
    def build(cls, result: MonitorResult, history: list[MonitorResult]) -> _Page:
        dists = {d.column: d for d in result.distributions}
        qual = {q.column: q for q in result.quality.columns}
        by_column: dict[str, list[Finding]] = {}
        for f in result.quality.findings:
            if f.column is not None:
                by_column.setdefault(f.column, []).append(f)

        past_features = [{c.column: c for c in h.drift.columns} for h in history]
        past_outputs = [{c.column: c for c in h.score_drift} for h in history]

        def view(c: ColumnDrift, uid: str, outputs: bool) -> _ColumnView:
            dist = dists.get(c.column)
            empty = Markup('<span class="muted">no plot</span>')
            plot, detail_plot = svg.distribution_plots(dist, uid) if dist else (empty, empty)
            past = [m.get(c.column) for m in (past_outputs if outputs else past_features)]
            return _ColumnView(
                drift=c,
                quality=qual.get(c.column),
                distribution=dist,
                findings=by_column.get(c.column, []),
                plot=plot,
                detail_plot=detail_plot,
                trend=_statistic_trend(c, result, history, past),
            )

        features = sorted(result.drift.columns, key=_drift_order)
        outputs = sorted(result.score_drift, key=_drift_order)
        page = cls(
            verdict=_verdict(result),
            columns=[view(c, f"f{i}", False) for i, c in enumerate(features)],
            outputs=[view(c, f"o{i}", True) for i, c in enumerate(outputs)],
            alerts=sorted(result.alerts, key=lambda a: _SEVERITY_ORDER[a.severity]),
            findings=sorted(result.quality.findings, key=lambda f: _SEVERITY_ORDER[f.severity]),
            meter=svg.meter(result.drift.share_drifted, result.drift.share),
            drift_trend=_drift_trend(result, history),
            runs=len(history) + 1,
        )
        if result.performance is not None:
            page.metrics = _metric_rows(result.performance)
            page.metric_charts = _metric_charts(result, history)
            page.segment_metrics = _ordered(
                result.performance.metrics, (s.metrics for s in result.performance.segments)
            )
        if result.fairness is not None:
            page.fairness_chart = _group_chart(result.fairness)
            page.fairness_charts = _fairness_charts(result, history)
        return page


def _drift_order(c: ColumnDrift) -> tuple[bool, bool, float]:
    """Drifted first, skipped last, and within each the strongest evidence first."""
    return (not c.drifted, c.statistic is None, -_strength(c))


def _strength(c: ColumnDrift) -> float:
    """How far past its threshold a column is, comparable across tests (1 = at the threshold)."""
    if c.statistic is None or math.isnan(c.statistic) or not c.threshold:
        return -1.0
    if c.p_value is not None:
        return c.threshold / c.p_value if c.p_value > 0 else math.inf
    return abs(c.statistic) / c.threshold


def _verdict(result: MonitorResult) -> _Verdict:
    counts = {s: sum(a.severity == s for a in result.alerts) for s in ("critical", "warning")}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    d = result.drift
    drift = (
        f"dataset drift: {d.n_drifted} of {d.n_tested} features drifted"
        if d.drifted
        else f"no dataset drift ({d.n_drifted} of {d.n_tested} features drifted)"
    )
    alerts = f"{' and '.join(parts)} alert{'s' if sum(counts.values()) > 1 else ''}"
    if result.worst == "critical":
        return _Verdict("bad", "Action needed", f"{alerts}; {drift}.")
    if result.worst == "warning":
        return _Verdict("warn", "Worth a look", f"{alerts}; {drift}.")
    if d.n_drifted:  # a policy that raises no alert for drift still shows it
        return _Verdict("warn", "Worth a look", f"No warnings, but {drift}.")
    return _Verdict("ok", "No problems found", f"No warnings; {drift}.")


def _run_time(r: MonitorResult) -> datetime:
    return r.current.end or r.created_at


def _middle(start: datetime, end: datetime) -> datetime:
    return start + (end - start) / 2


def _statistic_trend(
    c: ColumnDrift,
    result: MonitorResult,
    history: list[MonitorResult],
    past: list[ColumnDrift | None],
) -> Markup | None:
    """The column's p-value (or statistic) across the runs that used the same test."""
    use_p = c.p_value is not None

    def value(d: ColumnDrift) -> float | None:
        return d.p_value if use_p else d.statistic

    points = [
        (_run_time(h), value(p))
        for h, p in zip(history, past, strict=True)
        if p is not None and p.method == c.method and value(p) is not None
    ]
    if not points or value(c) is None:
        return None
    name = "p-value" if use_p else c.method
    return svg.line_chart(
        [svg.Series(name, [*points, (_run_time(result), value(c))])],
        label=f"{name} of {c.column} across runs",
        hlines=[(c.threshold, "drift threshold")] if c.threshold is not None else [],
        width=300,
        height=110,
        dots=len(points) < 12,
    )


def _drift_trend(result: MonitorResult, history: list[MonitorResult]) -> Markup | None:
    if not history:
        return None
    points = [(_run_time(r), r.drift.share_drifted) for r in [*history, result]]
    return svg.line_chart(
        [svg.Series("share of drifted features", points)],
        label="Share of drifted features across runs",
        y_range=(0.0, 1.0),
        hlines=[(result.drift.share, "dataset drift threshold")],
        fmt=lambda v: fmt_pct(v, 0),
        width=560,
        height=160,
    )


def _metric_rows(perf: PerformanceReport) -> list[_MetricRow]:
    rows = []
    for name, raw in perf.metrics.items():
        value, ref = _number(raw), _number((perf.reference_metrics or {}).get(name))
        delta = value - ref if value is not None and ref is not None else None
        worse = None
        if delta:
            worse = delta > 0 if name in _LOWER_IS_BETTER else delta < 0
        rows.append(_MetricRow(name, _metric_name(name), value, ref, delta, worse))
    return rows


def _number(value: float | None) -> float | None:
    """``None`` for NaN too, so that no arithmetic or comparison sees one."""
    return None if value is None or math.isnan(value) else value


def _metric_charts(result: MonitorResult, history: list[MonitorResult]) -> list[_Chart]:
    perf = result.performance
    assert perf is not None
    past = [h for h in history if h.performance is not None]
    if not perf.over_time and not past:
        return []
    charts = []
    for name in perf.metrics:
        now = [(_middle(p.start, p.end), p.metrics.get(name)) for p in perf.over_time]
        runs = [(_run_time(h), h.performance.metrics.get(name)) for h in past if h.performance]
        series = [svg.Series("this window", now)] if now else []
        if runs:
            runs.append((_run_time(result), perf.metrics.get(name)))
            series.append(svg.Series("runs", runs, index=1, dashed=True))
        ref = (perf.reference_metrics or {}).get(name)
        label = _metric_name(name)
        hlines = [(ref, "reference")] if ref is not None and math.isfinite(ref) else []
        charts.append(
            _Chart(label, svg.line_chart(series, label=f"{label} over time", hlines=hlines))
        )
    return charts


def _group_chart(fair: FairnessReport) -> Markup | None:
    if not fair.groups:
        return None
    rates = [g.selection_rate for g in fair.groups if g.selection_rate is not None]
    hline = None
    if rates:
        hline = (
            fair.ratio_threshold * max(rates),
            f"{fair.ratio_threshold:g} of the highest selection rate",
        )
    return svg.grouped_bars(
        [str(g.group) for g in fair.groups],
        [
            ("selection rate", [g.selection_rate for g in fair.groups]),
            ("true positive rate", [g.true_positive_rate for g in fair.groups]),
            ("false positive rate", [g.false_positive_rate for g in fair.groups]),
        ],
        label=f"Rates per group of {fair.sensitive}",
        hline=hline,
        y_max=1.0,
    )


def _fairness_charts(result: MonitorResult, history: list[MonitorResult]) -> list[_Chart]:
    fair = result.fairness
    assert fair is not None
    past = [h for h in history if h.fairness is not None]
    if not fair.over_time and not past:
        return []
    charts = []
    for attr, title in (
        ("demographic_parity_ratio", "Demographic parity ratio"),
        ("demographic_parity_difference", "Demographic parity difference"),
        ("equalized_odds_difference", "Equalized odds difference"),
    ):
        now = [(_middle(p.start, p.end), getattr(p, attr)) for p in fair.over_time]
        runs = [(_run_time(h), getattr(h.fairness, attr)) for h in past]
        series = [svg.Series("this window", now)] if now else []
        if runs:
            runs.append((_run_time(result), getattr(fair, attr)))
            series.append(svg.Series("runs", runs, index=1, dashed=True))
        ratio = attr == "demographic_parity_ratio"
        hlines = [(fair.ratio_threshold, "four-fifths threshold")] if ratio else []
        charts.append(
            _Chart(title, svg.line_chart(series, label=f"{title} over time", hlines=hlines))
        )
    return charts


def _metric_name(name: str) -> str:
    return _METRIC_NAMES.get(name, name)


def _ordered(first: Iterable[str], rest: Iterable[Iterable[str]]) -> list[str]:
    names = list(first)
    for more in rest:
        names += [n for n in more if n not in names]
    return names


# -- environment ----------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    env = html_environment("shipway.monitoring")
    env.filters.update(num=fmt_num, pct=fmt_pct, when=fmt_when, metric=_metric_name)
    return env


@cache
def _assets() -> tuple[Markup, Markup, Markup]:
    """The stylesheet, the script and a Content-Security-Policy allowing exactly those two."""
    folder = resources.files("shipway.monitoring") / "templates"
    style = (folder / "report.css").read_text("utf-8")
    script = (folder / "report.js").read_text("utf-8")
    csp = f"default-src 'none'; style-src '{_sha256(style)}'; script-src '{_sha256(script)}'"
    return Markup(style), Markup(script), Markup(csp)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _generator() -> str:
    try:
        return f"Shipway {metadata.version('shipway')}"
    except metadata.PackageNotFoundError:
        return "Shipway"
