"""The HTML report: sections, ordering, escaping, offline-ness, formatting, and a real browser."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from shipway.monitoring.drift import ColumnDrift, DatasetDrift
from shipway.monitoring.fairness import FairnessReport, GroupRates
from shipway.monitoring.html import fmt_num, fmt_pct, render_html, write_html
from shipway.monitoring.monitor import Roles, monitor
from shipway.monitoring.performance import PerformanceReport
from shipway.monitoring.quality import QualityReport
from shipway.monitoring.result import Distribution, MonitorResult, Source

HOSTILE = '<script>alert("column")</script>'
HOSTILE_CATEGORY = '"><img src=x onerror=alert(1)>'
START = datetime(2025, 3, 1, tzinfo=UTC)

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def _frame(seed: int, rows: int = 600, drift: bool = False) -> pd.DataFrame:
    """``age`` and ``city`` are the same values in every window (reshuffled), so only
    ``income`` (last among the features) can drift."""
    rng = np.random.default_rng(seed)
    stable = np.random.default_rng(99)
    age = stable.integers(18, 80, rows)
    city = stable.choice(["Lyon", "Paris", "Nantes"], rows, p=[0.5, 0.3, 0.2])
    order = rng.permutation(rows)
    income = rng.normal(50 + (15 if drift else 0), 10, rows)
    score = 1 / (1 + np.exp(-(income - 55) / 5))
    label = (rng.random(rows) < 1 / (1 + np.exp(-(income - 55) / 5))).astype(int)
    return pd.DataFrame(
        {
            "age": age[order],
            "city": city[order],
            "group": rng.choice(["a", "b"], rows),
            "income": income,
            "score": score,
            "prediction": (score > 0.5).astype(int),
            "label": label,
            "ts": pd.date_range(START, periods=rows, freq="10min"),
        }
    )


ROLES = Roles(
    target="label",
    prediction="prediction",
    scores=("score",),
    sensitive="group",
    time="ts",
    segments=("city",),
)


@pytest.fixture(scope="module")
def full() -> MonitorResult:
    return monitor(_frame(0), _frame(1, drift=True), roles=ROLES, model="credit", version=3)


@pytest.fixture(scope="module")
def bare() -> MonitorResult:
    features = ["age", "city", "income"]
    return monitor(_frame(0)[features], _frame(1, drift=True)[features])


def _without_assets(html: str) -> str:
    return re.sub(r"<(style|script)>.*?</\1>", "", html, flags=re.S)


def _feature_rows(html: str) -> list[tuple[str, bool]]:
    block = html[html.index('id="features"') : html.index('id="quality"')]
    return [
        (name, bool(drifted))
        for drifted, name in re.findall(
            r'<details class="col( drifted)?" data-name="([^"]*)"', block
        )
    ]


def test_every_section_is_present_with_all_roles(full: MonitorResult) -> None:
    html = render_html(full)
    for section in ("verdict", "alerts", "drift", "quality", "outputs", "performance", "fairness"):
        assert f'id="{section}"' in html
    assert "Not computed" not in html and "Not compared" not in html
    assert "<h1>credit <span" in html and "v3" in html
    assert "Demographic parity ratio" in html and "ROC AUC" in html
    assert 'id="outputs"' in html and 'data-name="score"' in html
    assert "<code>city</code> = Lyon" in html  # the segments table
    assert html.count("Over time") == 2  # per-window metrics and fairness, from the time column


def test_missing_sections_say_why_in_one_line(bare: MonitorResult) -> None:
    html = render_html(bare)
    assert bare.performance is None and bare.fairness is None and not bare.score_drift
    assert "Not computed: the run named no target and prediction columns." in html
    assert "Not computed: the run named no sensitive column" in html
    assert "Not compared: the run named no prediction or score columns." in html
    assert "No earlier runs to chart drift over time." in html
    assert 'id="performance"' in html and 'id="fairness"' in html


def test_drifted_columns_come_first_and_are_marked(bare: MonitorResult) -> None:
    assert bare.features[-1] == "income" and bare.drift.drifted_columns == ["income"]
    rows = _feature_rows(render_html(bare))
    assert rows[0] == ("income", True)
    assert [drifted for _, drifted in rows] == [True, False, False]
    html = render_html(bare)
    row = html[html.index('data-name="income"') :]
    row = row[: row.index("</summary>")]
    assert '<b class="tag bad">drift</b>' in row and "<svg" in row


def test_verdict_follows_the_worst_alert(full: MonitorResult) -> None:
    assert full.worst == "critical"  # income's values left the reference range
    assert '<section class="verdict bad" id="verdict">\n<h2>Action needed</h2>' in render_html(full)
    warning = full.model_copy(
        update={"alerts": [a for a in full.alerts if a.severity != "critical"]}
    )
    assert '<section class="verdict warn"' in render_html(warning)
    quiet = monitor(_frame(0)[["age", "city"]], _frame(1)[["age", "city"]])
    assert quiet.alerts == []
    html = render_html(quiet)
    assert '<section class="verdict ok"' in html and "No problems found" in html


def test_hostile_names_are_shown_as_text() -> None:
    def frame(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        cats = ["a", "b", HOSTILE_CATEGORY] if seed else ["a", "b"]
        return pd.DataFrame({HOSTILE: rng.normal(seed, 1, 300), "kind": rng.choice(cats, 300)})

    result = monitor(frame(0), frame(1), model="<b>model</b>")
    assert result.drift.drifted_columns  # the hostile column is in the alerts too
    html = render_html(result)
    assert html.count("<script") == 1  # the report's own, at the end
    assert "<img" not in html and "<b>model</b>" not in html
    assert "&lt;script&gt;alert(&#34;column&#34;)&lt;/script&gt;" in html
    assert "&lt;b&gt;model&lt;/b&gt;" in html


def test_the_page_references_nothing_outside_itself(full: MonitorResult) -> None:
    html = render_html(full)
    assert "http:" not in html and "https:" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"\b(src|href|action|xlink:href)\s*=\s*(?![\"']?#)", html)
    assert not re.search(r"<(img|iframe|object|embed|form|base)\b", html)
    assert "default-src 'none'" in html


def test_the_policy_allows_exactly_the_inline_style_and_script(full: MonitorResult) -> None:
    html = render_html(full)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp is not None
    for tag in ("style", "script"):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        assert len(blocks) == 1
        digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp.group(1)


def _edge_result() -> MonitorResult:
    """Hand-built: an infinite statistic, a skipped column, and undefined metrics and ratios."""
    columns = [
        ColumnDrift(
            column="flat",
            kind="numeric",
            method="wasserstein",
            statistic=math.inf,
            threshold=0.1,
            drifted=True,
            note="constant reference (std 0)",
        ),
        ColumnDrift(
            column="empty",
            kind="categorical",
            method="skipped",
            statistic=None,
            note="the current window has no non-missing values",
        ),
        ColumnDrift(
            column="coin",
            kind="binary",
            method="ztest",
            statistic=-math.inf,
            p_value=0.0,
            threshold=0.05,
            drifted=True,
        ),
    ]
    return MonitorResult(
        id="edge",
        created_at=START,
        reference=Source(kind="file", description="ref.parquet", rows=10),
        current=Source(
            kind="file",
            description="cur.parquet",
            rows=10,
            start=START,
            end=START + timedelta(hours=1),
        ),
        features=["flat", "empty", "coin"],
        quality=QualityReport(row_count=10, reference_row_count=10, columns=[], findings=[]),
        drift=DatasetDrift(
            columns=columns,
            n_tested=2,
            n_drifted=2,
            share_drifted=1.0,
            share=0.5,
            drifted=True,
            missing_columns=["gone"],
        ),
        performance=PerformanceReport(
            task="classification",
            target="y",
            prediction="p",
            scores=[],
            positive_label="1",
            rows=10,
            labelled=0,
            metrics={"accuracy": None, "f1": math.nan},
            reference_metrics={"accuracy": 0.9, "f1": None},
            over_time=[],
            segments=[],
            notes=["No labelled rows yet."],
        ),
        fairness=FairnessReport(
            sensitive="g",
            positive_label="1",
            groups=[
                GroupRates(
                    group="a",
                    count=5,
                    labelled=0,
                    selection_rate=0.0,
                    true_positive_rate=None,
                    false_positive_rate=None,
                )
            ],
            demographic_parity_difference=0.0,
            demographic_parity_ratio=None,
            equalized_odds_difference=None,
            ratio_threshold=0.8,
            four_fifths_violated=False,
            over_time=[],
            notes=[],
        ),
        distributions=[
            Distribution(
                column="flat",
                kind="numeric",
                edges=[0.5, 1.5],
                reference_counts=[10],
                current_counts=[0],
                current_above=10,
            ),
            Distribution(
                column="empty", kind="categorical", reference_counts=[], current_counts=[]
            ),
        ],
    )


def test_none_nan_and_infinity_are_shown_as_dash_and_infinity_sign() -> None:
    result = _edge_result()
    html = render_html(result)
    visible = _without_assets(html)
    assert not re.search(r"\bnan\b", visible, flags=re.I)
    assert not re.search(r"\binf(inity)?\b", visible, flags=re.I)
    assert not re.search(r"\bNone\b", visible)
    flat = html[html.index('data-name="flat"') :]
    assert '<span class="n">∞</span>' in flat[: flat.index("</summary>")]
    coin = html[html.index('data-name="coin"') :]
    assert '<span class="n">\N{MINUS SIGN}∞</span>' in coin[: coin.index("</summary>")]
    assert '<b class="tag info">skipped</b>' in html and "no plot" in html
    assert "Not tested, missing from the current data: gone." in html
    assert "No labelled rows yet." in html
    assert '<section class="verdict warn"' in html  # drift without alerts still shows
    # both drifted infinitely far past their thresholds: a tie keeps the features' order
    assert [row[0] for row in _feature_rows(html)] == ["flat", "coin", "empty"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (math.nan, "—"),
        (math.inf, "∞"),
        (-math.inf, "\N{MINUS SIGN}∞"),
        (12345, "12,345"),
        (0.000012345, "1.234e\N{MINUS SIGN}05"),
        (-0.5, "\N{MINUS SIGN}0.5"),
    ],
)
def test_numbers(value: float | None, text: str) -> None:
    assert fmt_num(value) == text


def test_shares() -> None:
    assert (fmt_pct(None), fmt_pct(math.nan), fmt_pct(0.1234), fmt_pct(math.inf)) == (
        "—",
        "—",
        "12.3%",
        "∞",
    )


def test_history_adds_charts_across_runs(full: MonitorResult) -> None:
    earlier = [
        full.model_copy(update={"id": f"r{i}", "created_at": full.created_at - timedelta(days=i)})
        for i in (3, 2, 1)
    ]
    html = render_html(full, history=earlier)
    assert "Share of drifted features across the last 4 runs" in html
    assert "No earlier runs" not in html
    assert "p-value across runs" in html  # a column's statistic over the runs


def test_write_html_replaces_the_file_whole(tmp_path: Path, full: MonitorResult) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    assert write_html(full, target) == target
    assert target.read_text(encoding="utf-8") == render_html(full)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_wide_report_stays_small() -> None:
    rng = np.random.default_rng(0)

    def wide(shift: float) -> pd.DataFrame:
        columns = {}
        for i in range(120):
            if i % 3 == 2:
                columns[f"c{i}"] = rng.choice([f"v{j}" for j in range(3 + i % 20)], 500)
            else:
                columns[f"n{i}"] = rng.normal(shift if i % 5 == 0 else 0, 1, 500)
        return pd.DataFrame(columns)

    html = render_html(monitor(wide(0), wide(0.5)))
    assert len(_feature_rows(html)) == 120
    assert len(html.encode()) < 500_000  # about 3 kB a column, most of it the detailed plots


# -- a real browser, offline ---------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is not installed: run scripts/install-system-deps.sh "
            "(Debian/Ubuntu package 'chromium')"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.slow
def test_the_report_in_a_browser_loads_nothing_and_shows_the_drift(
    browser: Browser, tmp_path: Path, full: MonitorResult
) -> None:
    from playwright.sync_api import Route, expect

    url = write_html(full, tmp_path / "report.html").as_uri()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else 0)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: problems.append(f"dialog {d.message}"))

    def gate(route: Route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            route.abort()

    page.route("**/*", gate)
    page.goto(url)
    page.wait_for_load_state("load")

    expected = {"critical": "Action needed", "warning": "Worth a look"}[full.worst or "warning"]
    expect(page.locator("#verdict h2")).to_have_text(expected)
    row = page.locator('#features details.col.drifted[data-name="income"]')
    expect(row.locator("summary")).to_be_visible()
    expect(row.locator("summary .plot svg")).to_be_visible()
    box = row.locator("summary .plot svg").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 20

    row.locator("summary").click()
    detail = row.locator(".big svg")
    expect(detail).to_be_visible()
    detail.hover()
    expect(page.locator(".tip")).to_contain_text("reference")

    page.locator("#only-drifted").check()
    expect(page.locator('#features details[data-name="age"]')).to_be_hidden()
    expect(row).to_be_visible()
    page.locator("#only-drifted").uncheck()
    page.locator("#filter").fill("ag")
    expect(page.locator('#features details[data-name="age"]')).to_be_visible()
    expect(row).to_be_hidden()

    assert set(requests) <= {url}
    assert problems == []
    page.close()


@pytest.mark.slow
def test_hostile_names_stay_text_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({HOSTILE: rng.normal(0, 1, 300), "kind": rng.choice(["a", "b"], 300)})
    cur = pd.DataFrame(
        {HOSTILE: rng.normal(1, 1, 300), "kind": rng.choice(["a", HOSTILE_CATEGORY], 300)}
    )
    url = write_html(monitor(ref, cur), tmp_path / "hostile.html").as_uri()
    page = browser.new_page()
    problems: list[str] = []
    page.on("dialog", lambda d: problems.append(d.message))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    expect(page.locator(".name b", has_text=HOSTILE)).to_be_visible()
    kind = page.locator('#features details[data-name="kind"]')
    kind.locator("summary").click()
    kind.locator(".big svg").hover(position={"x": 500, "y": 100})
    assert problems == []
    assert page.locator("img").count() == 0
    page.close()
