"""The retraining report as one offline HTML file: the metrics of candidate and champion side by
side, each check with its bound, and the decision with its reasons.

Rendered as the monitoring report is: a packaged Jinja template, autoescaped (model names and
details are user data), its stylesheet inline and allowed by hash in a Content-Security-Policy,
so the file opens anywhere without fetching anything.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from shipway.pipeline.compare import FAIRNESS_GAPS
from shipway.templating import html_environment

__all__ = ["render_report", "write_report"]

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1d2330}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ec}
td:nth-child(n+2):not(:last-child){font-variant-numeric:tabular-nums}
tr.key td{font-weight:600} tr.fail td{color:#a4161a} tr.pass td:first-child{color:#2b8a3e}
.decision{padding:.6rem .9rem;border-radius:6px;background:#f1f3f5}
.decision.promoted{background:#e6fcf5}.decision.failed,.decision.rejected{background:#fff5f5}
.decision.waiting{background:#fff9db}.muted{color:#6b7280;font-size:13px}
"""


def render_report(result: dict[str, Any], metric: str) -> str:
    """``result`` is a :class:`~shipway.pipeline.retrain.RetrainResult` as a dict."""
    comparison = result["comparison"] or {"held_out": "-", "candidate": None, "champion": None,
                                          "checks": []}  # fmt: skip
    style = Markup(_STYLE)
    digest = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    return (
        _environment()
        .get_template("retrain.html.j2")
        .render(
            r=result,
            c=comparison,
            rows=_rows(comparison),
            metric=metric,
            style=style,
            csp=f"default-src 'none'; style-src 'sha256-{digest}'",
            generator=_generator(),
            when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )


def write_report(result: dict[str, Any], metric: str, path: Path) -> Path:
    """Write :func:`render_report` to ``path`` atomically (never a half-written report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.write_text(render_report(result, metric), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    mine = (comparison.get("candidate") or {}).get("metrics", {})
    theirs = (comparison.get("champion") or {}).get("metrics", {})
    rows = [_row(name, mine.get(name), theirs.get(name)) for name in sorted({*mine, *theirs})]
    fair_a = (comparison.get("candidate") or {}).get("fairness") or {}
    fair_b = (comparison.get("champion") or {}).get("fairness") or {}
    if fair_a or fair_b:
        rows += [
            _row(f"fairness: {gap}", fair_a.get(gap), fair_b.get(gap)) for gap in FAIRNESS_GAPS
        ]
    return rows


def _row(name: str, a: float | None, b: float | None) -> dict[str, Any]:
    delta = a - b if a is not None and b is not None else None
    return {"name": name, "candidate": a, "champion": b, "delta": delta}


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


@cache
def _environment() -> Environment:
    env = html_environment("shipway.pipeline")
    env.filters["num"] = _num
    return env


def _generator() -> str:
    from importlib import metadata

    try:
        return f"Shipway {metadata.version('shipway')}"
    except metadata.PackageNotFoundError:
        return "Shipway"
