"""Small inline SVG charts for the HTML report, drawn on the server: no script, font or network.

Each function returns :class:`markupsafe.Markup`, ready to drop into an autoescaped template;
every piece of text that reaches the SVG (column names, categories, group labels) goes through
:func:`markupsafe.escape` here. Colours are CSS classes of the report's stylesheet rather than
attributes, so the markup stays small and dark mode recolours it: ``r`` reference, ``c``
current, ``o`` current values outside the reference range, ``s0`` to ``s5`` series, ``ax``
axes, ``gd`` grid lines, ``th`` thresholds.

The markup is kept small because a report holds two plots per column: shapes are single paths
where possible (one path per series rather than one rect per bar), coordinates are rounded to
a tenth of a pixel, the row's small plot reuses the detailed plot's shapes through ``<use>``,
and per-bin numbers travel as ``data-`` attributes for the report's script to show on hover
rather than as one ``<title>`` element per bin. A numeric column's two plots take about 2 kB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from shipway.monitoring.result import Distribution

__all__ = ["Series", "distribution_plots", "grouped_bars", "line_chart", "meter"]

_PALETTE = 6
MINUS = "\N{MINUS SIGN}"
"""Typographic minus for negative numbers shown to people."""


@dataclass(frozen=True)
class Series:
    """One line of a :func:`line_chart`; a ``None`` value leaves a gap."""

    label: str
    points: Sequence[tuple[datetime, float | None]]
    index: int = 0
    """Colour (``s0`` to ``s5``)."""
    dashed: bool = False


@dataclass(frozen=True)
class _Frame:
    """Plot area inside an SVG of ``width`` x ``height``."""

    width: float
    height: float
    left: float
    top: float
    right: float
    bottom: float

    @property
    def w(self) -> float:
        return self.width - self.left - self.right

    @property
    def h(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def base(self) -> float:
        return self.top + self.h

    def y(self, value: float, lo: float, hi: float) -> float:
        span = hi - lo or 1.0
        return self.base - self.h * (min(max(value, lo), hi) - lo) / span


def _n(x: float) -> str:
    """A coordinate with at most one decimal and no trailing zero."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _g(value: float) -> str:
    if not math.isfinite(value):
        return "∞" if value > 0 else f"{MINUS}∞"
    return f"{value:.3g}".replace("-", MINUS)


def _pct(value: float) -> str:
    return f"{value * 100:.3g}%"


def _svg(f: _Frame, label: str, body: list[str], attrs: str = "", cls: str = "ch") -> Markup:
    head = (
        f'<svg class="{cls}" viewBox="0 0 {_n(f.width)} {_n(f.height)}" width="{_n(f.width)}"'
        f' height="{_n(f.height)}" role="img" aria-label="{escape(label)}"{attrs}>'
    )
    return Markup(head + "".join(body) + "</svg>")


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering ``[lo, hi]``, about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _y_axis(
    f: _Frame, ticks: list[float], lo: float, hi: float, fmt: Callable[[float], str]
) -> str:
    ys = [f.y(t, lo, hi) for t in ticks]
    grid = "".join(f"M{_n(f.left)} {_n(y)}h{_n(f.w)}" for y in ys)
    labels = "".join(
        f'<text x="{_n(f.left - 4)}" y="{_n(y + 3.5)}">{escape(fmt(t))}</text>'
        for t, y in zip(ticks, ys, strict=True)
    )
    return f'<path class="gd" d="{grid}"/><g class="yt">{labels}</g>'


def _x_axis(f: _Frame) -> str:
    return f'<path class="ax" d="M{_n(f.left)} {_n(f.base)}H{_n(f.left + f.w)}"/>'


def _text(x: float, y: float, text: str, anchor: str = "", rotate: bool = False) -> str:
    """A label, centred unless ``anchor`` is ``ts`` (start) or ``te`` (end); clipped ones keep
    their full text as a tooltip."""
    shown = _clip(text)
    cls = f' class="{anchor}"' if anchor else ""
    turn = f' transform="rotate(-35 {_n(x)} {_n(y)})"' if rotate else ""
    tip = f"<title>{escape(text)}</title>" if shown != text else ""
    return f'<text x="{_n(x)}" y="{_n(y)}"{cls}{turn}>{tip}{escape(shown)}</text>'


def _shares(counts: Sequence[int], total: int) -> list[float]:
    return [c / total if total else 0.0 for c in counts]


def _clip(label: str, size: int = 16) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


def _ints(values: Sequence[int]) -> str:
    return " ".join(map(str, values))


def distribution_plots(dist: Distribution, uid: str) -> tuple[Markup, Markup]:
    """A column's small plot (for its row) and detailed plot: reference against current.

    Both show shares of each window's own total: the reference as a grey area, the current
    in colour. Numeric columns are step histograms over the reference's bins, with current
    values below and above the reference range as red bars at the ends; categorical columns
    are pairs of bars. The detailed plot has axes, and carries the counts as ``data-``
    attributes for the report's hover tooltip. The small plot draws nothing itself: it
    shows the detailed plot's shapes (the group ``uid``, an id unique in the page) through
    ``<use>``, stretched over their plot area, which halves the bytes per column.
    """
    if not dist.reference_counts and not dist.current_counts:
        nothing = Markup('<span class="muted">no plot</span>')
        return nothing, nothing
    numeric = dist.edges is not None
    f = _Frame(640, 210 if numeric else 250, 46, 8, 10, 32 if numeric else 84)
    shapes, axes, data, top = (_histogram if numeric else _bars)(dist, f)
    top = min(top, f.base - 1)
    label = f"Distribution of {dist.column}: reference against current"
    detailed = _svg(f, label, [f'<g id="{uid}">{shapes}</g>', axes], attrs=data)
    box = f"{_n(f.left)} {_n(top)} {_n(f.w)} {_n(f.base - top)}"
    small = Markup(
        f'<svg class="ch mini" viewBox="{box}" preserveAspectRatio="none" width="180" '
        f'height="40" aria-hidden="true"><use href="#{uid}"/></svg>'
    )
    return small, detailed


def _histogram(dist: Distribution, f: _Frame) -> tuple[str, str, str, float]:
    edges = dist.edges or []
    cur_total = sum(dist.current_counts) + dist.current_below + dist.current_above
    ref = _shares(dist.reference_counts, sum(dist.reference_counts))
    cur = _shares(dist.current_counts, cur_total)
    below, above = _shares([dist.current_below, dist.current_above], cur_total)
    peak = max(*ref, *cur, below, above) or 1.0
    ticks = nice_ticks(0, peak, 3)
    hi = max(peak, ticks[-1])
    slot = max(f.w / (len(ref) + 2), 8.0)
    x0 = f.left + (slot + 3 if below else 0)
    x1 = f.left + f.w - (slot + 3 if above else 0)
    step = (x1 - x0) / max(len(ref), 1)

    def area(shares: list[float]) -> str:
        d = f"M{_n(x0)} {_n(f.base)}"
        for i, s in enumerate(shares):
            d += f"V{_n(f.y(s, 0, hi))}H{_n(x0 + step * (i + 1))}"
        return d + f"V{_n(f.base)}Z"

    shapes = [f'<path class="r" d="{area(ref)}"/><path class="c" d="{area(cur)}"/>']
    axes = [_y_axis(f, ticks, 0, hi, _pct), _x_axis(f)]
    for share, x, count, name in (
        (below, f.left, dist.current_below, "below"),
        (above, x1 + 3, dist.current_above, "above"),
    ):
        if share:
            y = f.y(share, 0, hi)
            shapes.append(
                f'<rect class="o" x="{_n(x)}" y="{_n(y)}" width="{_n(slot)}" '
                f'height="{_n(f.base - y)}"><title>{count:,} current values {name} the '
                f"reference range ({_pct(share)})</title></rect>"
            )
            axes.append(_text(x + slot / 2, f.base + 28, name))
    every = max(1, math.ceil((len(edges) - 1) / 5))
    shown = [*range(0, len(edges), every), *([len(edges) - 1] if (len(edges) - 1) % every else [])]
    axes += [_text(x0 + step * i, f.base + 14, _g(edges[i])) for i in shown]
    data = (
        f' data-x="{_n(x0)} {_n(x1)} {_n(f.top)} {_n(f.h)}"'
        f' data-t="{sum(dist.reference_counts)} {cur_total}"'
        f' data-r="{_ints(dist.reference_counts)}" data-c="{_ints(dist.current_counts)}"'
        f' data-e="{" ".join(f"{e:.4g}" for e in edges)}"'
    )
    return "".join(shapes), "".join(axes), data, f.y(peak, 0, hi)


def _bars(dist: Distribution, f: _Frame) -> tuple[str, str, str, float]:
    labels = dist.labels or [str(i) for i in range(len(dist.reference_counts))]
    ref = _shares(dist.reference_counts, sum(dist.reference_counts))
    cur = _shares(dist.current_counts, sum(dist.current_counts))
    peak = max([*ref, *cur, 0.0]) or 1.0
    ticks = nice_ticks(0, peak, 3)
    hi = max(peak, ticks[-1])
    group = f.w / max(len(labels), 1)
    bar = min(group * 0.38, 40.0)
    shapes = []
    for cls, shares, offset in (("r", ref, group / 2 - bar - 1), ("c", cur, group / 2 + 1)):
        d = "".join(
            f"M{_n(f.left + group * i + offset)} {_n(f.base)}V{_n(f.y(s, 0, hi))}"
            f"h{_n(bar)}V{_n(f.base)}Z"
            for i, s in enumerate(shares)
            if s > 0
        )
        shapes.append(f'<path class="{cls}" d="{d}"/>')
    axes = [_y_axis(f, ticks, 0, hi, _pct), _x_axis(f)]
    rotate = len(labels) > 6
    for i, name in enumerate(labels):
        x = f.left + group * (i + 0.5)
        axes.append(
            _text(x + 4, f.base + 14, name, "te", True) if rotate else _text(x, f.base + 14, name)
        )
    data = (
        f' data-x="{_n(f.left)} {_n(f.left + f.w)}"'
        f' data-t="{sum(dist.reference_counts)} {sum(dist.current_counts)}"'
        f' data-r="{_ints(dist.reference_counts)}" data-c="{_ints(dist.current_counts)}"'
        f' data-l="{escape(json.dumps(labels, ensure_ascii=False))}"'
    )
    return "".join(shapes), "".join(axes), data, f.y(peak, 0, hi)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _seconds(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _when(when: datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Aware times in UTC; naive ones as they are (the charts treat them as UTC)."""
    return (when.astimezone(UTC) if when.tzinfo else when).strftime(fmt)


def line_chart(
    series: Sequence[Series],
    *,
    label: str,
    y_range: tuple[float | None, float | None] = (None, None),
    hlines: Sequence[tuple[float, str]] = (),
    fmt: Callable[[float], str] = _g,
    width: int = 320,
    height: int = 140,
    dots: bool = True,
) -> Markup:
    """Values over time, one path per series, with labelled horizontal reference lines.

    Each point is a dot with its value as a tooltip; with ``dots=False`` only each series'
    last point is (for small charts repeated many times, where the bytes add up).
    """
    f = _Frame(width, height, 42, 8, 12, 22)
    points = [(t, v) for s in series for t, v in s.points if v is not None and math.isfinite(v)]
    if not points:
        return Markup('<span class="muted">no values to plot</span>')
    values = [v for _, v in points] + [v for v, _ in hlines]
    pad = (max(values) - min(values)) * 0.08
    lo = min(values) - pad if y_range[0] is None else y_range[0]
    hi = max(values) + pad if y_range[1] is None else y_range[1]
    if hi <= lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1), hi + (abs(hi) * 0.1 or 1)
    ticks = nice_ticks(lo, hi, 3)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    times = [_seconds(t) for t, _ in points]
    t0, t1 = min(times), max(times)
    axis_fmt = "%Y-%m-%d" if t1 - t0 > 2 * 86400 else "%m-%d %H:%M"

    def x(when: datetime) -> float:
        return f.left + (f.w * (_seconds(when) - t0) / (t1 - t0) if t1 > t0 else f.w / 2)

    out = [_y_axis(f, ticks, lo, hi, fmt)]
    for value, name in hlines:
        y = _n(f.y(value, lo, hi))
        out.append(
            f'<path class="th" d="M{_n(f.left)} {y}h{_n(f.w)}"><title>'
            f"{escape(name)}: {escape(fmt(value))}</title></path>"
        )
    for s in series:
        ordered = sorted(s.points, key=lambda p: _seconds(p[0]))
        last = max((i for i, (_, v) in enumerate(ordered) if _finite(v)), default=-1)
        d, pen, marks = "", "M", []
        for i, (when, v) in enumerate(ordered):
            if v is None or not math.isfinite(v):
                pen = "M"
                continue
            px, py = _n(x(when)), _n(f.y(v, lo, hi))
            d += f"{pen}{px} {py}"
            pen = "L"
            if dots or i == last:
                tip = f"{s.label} · " * (len(series) > 1) + f"{_when(when)} · {fmt(v)}"
                marks.append(
                    f'<circle cx="{px}" cy="{py}" r="2.5"><title>{escape(tip)}</title></circle>'
                )
        cls = f"s{s.index % _PALETTE}" + (" dash" if s.dashed else "")
        out.append(f'<g class="ln {cls}"><path d="{d}"/>{"".join(marks)}</g>')
    out.append(_text(f.left, f.height - 6, _when(datetime.fromtimestamp(t0, UTC), axis_fmt), "ts"))
    if t1 > t0:
        out.append(
            _text(
                f.left + f.w, f.height - 6, _when(datetime.fromtimestamp(t1, UTC), axis_fmt), "te"
            )
        )
    return _svg(f, label, out)


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    hline: tuple[float, str] | None = None,
    y_max: float | None = None,
    width: int = 560,
    height: int = 200,
) -> Markup:
    """Values per group, one bar per series side by side (``s0``, ``s1``...); ``None`` is no
    bar. The axis runs from 0 to ``y_max`` (1 for rates), or to the largest value."""
    rotate = len(groups) > 6
    f = _Frame(width, height, 42, 8, 8, 56 if rotate else 22)
    values = [v for _, vs in series for v in vs if v is not None and math.isfinite(v)]
    hi = y_max or max([*values, hline[0] if hline else 0.0, 0.0]) or 1.0
    ticks = nice_ticks(0, hi, 4)
    hi = max(hi, ticks[-1])
    out = [_y_axis(f, ticks, 0, hi, _g)]
    group = f.w / max(len(groups), 1)
    bar = min(group * 0.8 / max(len(series), 1), 36.0)
    inset = (group - bar * len(series)) / 2
    for k, (name, vs) in enumerate(series):
        rects = []
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                continue
            x, y = f.left + group * i + inset + bar * k, f.y(v, 0, hi)
            tip = f"{groups[i]} · {name}: {_g(v)}"
            rects.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(bar)}" '
                f'height="{_n(f.base - y)}"><title>{escape(tip)}</title></rect>'
            )
        out.append(f'<g class="s{k % _PALETTE}">{"".join(rects)}</g>')
    if hline is not None:
        level = _n(f.y(hline[0], 0, hi))
        out.append(
            f'<path class="th" d="M{_n(f.left)} {level}h{_n(f.w)}"><title>'
            f"{escape(hline[1])}: {_g(hline[0])}</title></path>"
        )
    out.append(_x_axis(f))
    for i, name in enumerate(groups):
        x = f.left + group * (i + 0.5)
        out.append(
            _text(x + 4, f.base + 14, name, "te", True) if rotate else _text(x, f.base + 14, name)
        )
    return _svg(f, label, out)


def meter(value: float | None, threshold: float, *, width: int = 220) -> Markup:
    """A horizontal bar of a share in [0, 1] with the threshold marked."""
    f = _Frame(width, 14, 0, 0, 0, 0)
    share = 0.0 if value is None else min(max(value, 0.0), 1.0)
    over = " bad" if value is not None and value >= threshold else ""
    tx = _n(f.w * threshold)
    return _svg(
        f,
        f"share {_g(share)} against threshold {_g(threshold)}",
        [
            f'<rect class="track" width="{_n(f.w)}" height="14" rx="3"/>',
            f'<rect class="fill{over}" width="{_n(f.w * share)}" height="14" rx="3"/>',
            f'<path class="mark" d="M{tx} 0V14"/>',
        ],
        cls="ch meter",
    )
