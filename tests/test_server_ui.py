"""The web UI: its files are public and hold no data, and a real browser clicks through each page
of a seeded team server (models and lineage, runs and a comparison, deployments and a rollout,
a monitoring report, approvals by role, the audit log), with no console error and no request
leaving the server."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from server_helpers import Team, module_store, raw_request, team_server
from shipway.deploy.records import request_deployment, start_rollout
from shipway.deploy.rollout import new_rollout
from shipway.governance.approvals import list_approvals, request_approval
from shipway.monitoring import monitor, save_result
from shipway.server.endpoints import API
from shipway.server.ui import ASSETS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MARKUP_SINKS = re.compile(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|eval\(")
HEADINGS = {
    "models": "Models",
    "runs": "Runs",
    "pipelines": "Pipelines",
    "deployments": "Deployments",
    "monitoring": "Monitoring",
    "approvals": "Approvals",
    "audit": "Audit log",
}
HOSTILE = '<img src=x onerror="document.title=1">'


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """One seeded store behind a live server for the whole module (seeding takes seconds)."""
    home = tmp_path_factory.mktemp("ui-home")
    with module_store(home) as client, team_server(client) as team:
        _seed(team)
        yield team


def _seed(team: Team) -> None:
    dana = team.client.as_user("dana")
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    y = (x["a"] > 0).astype(int)
    for i, c in enumerate((0.5, 2.0)):
        with shipway.start_run("credit", name=f"lr-{c}", client=dana) as run:
            run.log_params({"C": c, "solver": "lbfgs", "note": HOSTILE})
            for step in range(5):
                run.log_metric("loss", 1 / (step + 1) + i * 0.1, step=step)
                run.log_metric("auc", 0.6 + 0.05 * step + i * 0.02, step=step)
            run.log_dataset(x.assign(y=y), name="credit-train")
            run.log_model(LogisticRegression(C=c).fit(x, y), input_example=x.head())
        shipway.register_model(run, "credit", client=dana)
    request_approval("models:/credit/2", "production", comment="better auc", client=dana)
    ref = pd.DataFrame({"a": rng.normal(size=400), HOSTILE: rng.normal(size=400)})
    cur = pd.DataFrame({"a": rng.normal(1, 1, size=300), HOSTILE: rng.normal(size=300)})
    save_result(monitor(ref, cur, model="credit", version=1), client=team.client)
    request_deployment(
        "staging",
        model="credit",
        version=1,
        replicas=1,
        host="127.0.0.1",
        port=9,
        runtime="process",
        image=None,
        client=dana,
    )
    now = time.time()
    state = new_rollout(
        environment="staging",
        model="credit",
        stable_version=1,
        canary_version=2,
        steps=[10, 50, 100],
        interval_s=30,
        now=now,
    )
    entry = {"time": now, "passed": True, "inconclusive": False, "measurements": {}}
    state = state.model_copy(
        update={
            "step_index": 1,
            "weight": 50.0,
            "history": [
                entry | {"step": 0, "weight": 10.0, "reasons": ["error rate 0.0% <= 1.0%"]},
                entry | {"step": 1, "weight": 50.0, "reasons": ["p99 41 ms <= 500 ms"]},
            ],
        }
    )
    start_rollout(state, client=dana)
    _seed_pipeline(dana)


def _seed_pipeline(client: shipway.Client) -> None:
    from shipway.pipeline import records

    run = records.start_run("credit", commit="ab" * 20, branch="main", dirty=False,
                            trigger="manual", context={}, client=client)  # fmt: skip
    train = records.StageRecord("train", "train", "passed", seconds=2.5, detail="registered v2")
    failed = records.StageRecord(
        "validate", "validate", "failed", seconds=1.25, detail=f"roc_auc = 0.61 {HOSTILE}",
        checks=[{"name": "roc_auc", "passed": False, "value": 0.61, "bound": ">= 0.75",
                 "detail": "roc_auc = 0.6100 is not >= 0.75"}],
    )  # fmt: skip
    context = {"uri": "models:/credit/2"}
    records.save_stage(run.id, train, context, client=client)
    records.save_stage(run.id, failed, context, client=client)
    records.finish_run(run.id, "failed", "validate failed: roc_auc", client=client)


# -- the files over plain HTTP ---------------------------------------------------------------


def test_the_shell_and_assets_are_public_and_nothing_else(team: Team) -> None:
    assert {"index.html", "app.js", "api.js", "style.css"} <= ASSETS
    with team.http() as anon:
        shell = anon.get("/")
        assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
        csp = shell.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert shell.headers["x-content-type-options"] == "nosniff"
        assert "shw_" not in shell.text
        for name in ASSETS:
            r = anon.get(f"/ui/{name}")
            assert r.status_code == 200, name
            assert r.headers["content-security-policy"] == csp
            assert not MARKUP_SINKS.search(r.text), name  # data only ever becomes text
        assert anon.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        assert anon.head("/ui/style.css").status_code == 200
        # Anything else under /ui is refused like any unknown path, and only GET is public.
        assert anon.get("/ui/nope.js").status_code == 401
        assert anon.get("/ui/").status_code == 401
        assert anon.post("/ui/app.js").status_code == 401
        assert anon.get(f"{API}/runs/x1/metrics").status_code == 401
        assert anon.get(f"{API}/monitoring/results/x1/report").status_code == 401
    for target in ("/ui/../api/v1/runs", "/ui/%2e%2e/api/v1/runs", "/ui/..%2fapi%2fv1%2fruns"):
        assert raw_request(team.url, "GET", target, {}) in (401, 404), target


def test_the_report_route_serves_the_report_under_its_own_policy(team: Team) -> None:
    with team.http("viewer") as viewer:
        (result,) = viewer.get(f"{API}/monitoring/results").json()
        r = viewer.get(f"{API}/monitoring/results/{result['id'][:8]}/report")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert csp.startswith("default-src 'none'; style-src 'sha256-")
        assert f'content="{csp}"' in r.text  # the same policy as the report's own meta tag
        assert HOSTILE not in r.text  # escaped
        assert viewer.get(f"{API}/monitoring/results/nope/report").status_code == 404
        history = viewer.get(f"{API}/runs").json()
        metrics = viewer.get(f"{API}/runs/{history[0]['id']}/metrics").json()["metrics"]
        assert [s for s, _ in metrics["loss"]] == [0, 1, 2, 3, 4]


# -- a real browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (Debian/Ubuntu package 'chromium')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    page: Page
    problems: list[str] = field(default_factory=list)
    """Console errors and warnings, page errors and dialogs."""
    elsewhere: list[str] = field(default_factory=list)
    """Requests to anywhere but the server."""


@contextlib.contextmanager
def ui(browser: Browser, team: Team, role: str | None = None) -> Iterator[Tab]:
    """A fresh tab on the UI, logged in as `role` (when given), that must end with no console
    error or warning, no page error, no dialog and no request to another host."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = Tab(context.new_page())
    page = tab.page

    def request(r: Request) -> None:
        if not r.url.startswith((f"{team.url}/", "about:", "blob:", "data:")):
            tab.elsewhere.append(r.url)

    def console(m: ConsoleMessage) -> None:
        if m.type in ("error", "warning"):
            tab.problems.append(m.text)

    page.on("console", console)
    page.on("pageerror", lambda e: tab.problems.append(str(e)))
    page.on("dialog", lambda d: tab.problems.append(f"dialog {d.message}"))
    page.on("request", request)
    try:
        page.goto(f"{team.url}/")
        expect(page.locator("#login-form")).to_be_visible()
        if role is not None:
            page.fill("#token", team.tokens[role])
            page.click("#login-form button[type=submit]")
            expect(page.locator("#who-role")).to_have_text(role)
        yield tab
        assert page.title() != "1"  # no hostile handler ran
        assert tab.elsewhere == []
        assert tab.problems == []
    finally:
        context.close()


def open_page(page: Page, name: str) -> None:
    """Click a page in the header and wait until it shows."""
    from playwright.sync_api import expect

    page.click(f"#nav a[data-page={name}]")
    expect(page.locator("#view h1")).to_have_text(HEADINGS[name])


@pytest.mark.slow
def test_login_refuses_a_wrong_token_and_logout_forgets_the_right_one(
    browser: Browser, team: Team
) -> None:
    from playwright.sync_api import expect

    with ui(browser, team) as tab:
        page = tab.page
        page.fill("#token", "shw_0badc0de_" + "A" * 43)
        page.click("#login-form button[type=submit]")
        error = page.locator("#login-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("That token was not accepted")
        expect(page.locator("#view")).to_be_hidden()
        assert page.evaluate("sessionStorage.length") == 0
        # The browser reports the refused request itself; nothing else may complain.
        assert all("status of 401" in p for p in tab.problems), tab.problems
        tab.problems.clear()

        page.fill("#token", team.tokens["developer"])
        page.click("#login-form button[type=submit]")
        expect(page.locator("#who-user")).to_have_text("dana")
        expect(page.locator("#who-role")).to_have_text("developer")
        assert page.evaluate("sessionStorage.getItem('shipway.token')") == team.tokens["developer"]
        assert team.tokens["developer"] not in page.url
        page.reload()  # the tab keeps its session
        expect(page.locator("#who-user")).to_have_text("dana")
        page.click("#logout")
        expect(page.locator("#login-form")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0


@pytest.mark.slow
def test_models_versions_and_lineage(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "models")
        page.click("#view a:text-is('credit')")
        expect(page.locator("#view h1")).to_have_text("credit")
        expect(page.locator("#view tbody tr")).to_have_count(2)
        page.click("#view a:text-is('v1')")
        expect(page.locator("#view h1")).to_have_text("models:/credit/1")
        summary = page.locator("#summary")
        expect(summary).to_contain_text("sklearn")
        expect(summary).to_contain_text("Environment lock")
        expect(summary.locator("dd", has_text="staging")).to_have_count(0)  # not live yet
        view = page.locator("#view")
        expect(view.locator("td", has_text="credit-train")).to_be_visible()
        expect(view.locator("td.mono, td span.mono").first).to_be_visible()
        expect(page.locator("#monitoring-status")).to_contain_text("drifted")
        expect(view.locator("td a", has_text="staging")).to_be_visible()
        page.click("#view a:text-is('Models')")
        page.click("#view a:text-is('credit')")
        page.click("#view a:text-is('v2')")
        expect(view.locator("tbody tr", has_text="production")).to_contain_text("pending")


@pytest.mark.slow
def test_runs_charts_and_a_comparison(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "runs")
        boxes = page.locator("#view input[type=checkbox]")
        expect(boxes).to_have_count(2)
        expect(page.locator("#compare")).to_be_disabled()
        page.click("#view tbody tr:first-child td:nth-child(2) a")
        expect(page.locator("#view h1")).to_contain_text("lr-")
        chart = page.locator("figure.chart[data-metric=loss] svg")
        expect(chart).to_be_visible()
        assert chart.locator("circle").count() == 5
        assert page.locator("figure.chart[data-metric=auc] path.line").count() == 1
        expect(page.locator("#view td", has_text=HOSTILE)).to_be_visible()  # text, not markup

        page.go_back()
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.click("#compare")
        expect(page.locator("#view h1")).to_have_text("Comparing 2 runs")
        params = page.locator("#compare-params")
        expect(params.locator("tr.differs")).to_have_count(1)
        expect(params.locator("tr.differs td").first).to_have_text("C")
        expect(params.locator("tr", has_text="solver")).not_to_have_class("differs")
        expect(page.locator("#compare-metrics tr.differs")).to_have_count(2)
        loss = page.locator("figure.chart[data-metric=loss]")
        assert loss.locator("path.line").count() == 2
        expect(loss.locator(".legend")).to_contain_text("lr-0.5")


@pytest.mark.slow
def test_deployments_and_a_rollout_with_its_steps(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "deployments")
        expect(page.locator("#view tbody tr", has_text="staging").first).to_be_visible()
        page.click("#view a:text-is('staging')")
        expect(page.locator("#rollout-weight")).to_have_text("50%")
        steps = page.locator("#rollout-steps .step")
        expect(steps).to_have_count(3)
        expect(steps.nth(0)).to_have_class("step done")
        expect(steps.nth(1)).to_have_class("step current")
        rows = page.locator("#view tbody tr", has_text="passed")
        expect(rows).to_have_count(2)
        expect(rows.nth(1)).to_contain_text("p99 41 ms")


@pytest.mark.slow
def test_pipeline_runs_and_the_failed_check(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "pipelines")
        row = page.locator("#view tbody tr").first
        expect(row).to_contain_text("abababababab")
        expect(row).to_contain_text("✓ train  ✗ validate")
        page.click("#view tbody tr a")
        expect(page.locator("#view h1")).to_contain_text("Pipeline run")
        failed = page.locator("#view tbody tr", has_text="roc_auc = 0.6100 is not >= 0.75")
        expect(failed).to_have_count(1)
        expect(page.locator("#view")).to_contain_text("models:/credit/2")
        expect(page.locator("#view")).to_contain_text(HOSTILE)  # shown as text, never markup


@pytest.mark.slow
def test_a_monitoring_report_opens_in_the_page(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "monitoring")
        expect(page.locator("#view tbody tr")).to_have_count(1)
        page.click("#view a:text-is('Open report')")
        frame = page.frame_locator("iframe.report")
        expect(frame.locator("#verdict h2")).to_be_visible()
        expect(frame.locator(".name b", has_text=HOSTILE)).to_be_visible()
        frame.locator("#filter").fill("zzz")  # the report's own script runs in its sandbox
        expect(frame.locator('#features details[data-name="a"]')).to_be_hidden()


@pytest.mark.slow
def test_approvals_need_an_approver(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "approvals")
        row = page.locator("#view tbody tr", has_text="models:/credit/2")
        expect(row).to_contain_text("better auc")
        expect(page.locator("#cannot-decide")).to_be_visible()
        assert page.locator("#view button", has_text="Approve").count() == 0
    with ui(browser, team, "developer") as tab:  # dana asked: not an approver anyway
        page = tab.page
        open_page(page, "approvals")
        expect(page.locator("#view tbody tr")).to_have_count(1)
        assert page.locator("#view button", has_text="Approve").count() == 0
    with ui(browser, team, "approver") as tab:
        page = tab.page
        open_page(page, "approvals")
        decide = page.locator("#view .decide")
        decide.locator("input").fill("ship it <b>now</b>")
        decide.locator("button", has_text="Approve").click()
        expect(page.locator("#approvals-flash")).to_contain_text("Approved models:/credit/2")
        expect(page.locator("#view")).to_contain_text("No approval requests here.")
        page.select_option("#approval-status", "approved")
        row = page.locator("#view tbody tr", has_text="models:/credit/2")
        expect(row).to_contain_text("avery: ship it <b>now</b>")
    (approval,) = list_approvals(client=team.client)
    assert approval.status == "approved" and approval.decided_by == "avery"


@pytest.mark.slow
def test_the_audit_log_filters_and_verifies(browser: Browser, team: Team) -> None:
    from playwright.sync_api import expect

    with ui(browser, team, "viewer") as tab:
        page = tab.page
        open_page(page, "audit")
        rows = page.locator("#view tbody tr")
        expect(rows.first).to_be_visible()
        everything = rows.count()
        page.fill("input[data-filter=actor]", "dana")
        page.fill("input[data-filter=action]", "approval.request")
        page.click("#audit-filters button[type=submit]")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("approval:")
        rows.first.locator("summary").click()
        expect(rows.first.locator("pre")).to_contain_text('"environment": "production"')
        page.click("#audit-clear")
        expect(rows).to_have_count(everything)
        expect(page.locator("input[data-filter=actor]")).to_have_value("")
        page.fill("input[data-filter=subject]", "model:credit")
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("#view tbody tr td:nth-child(6)").first).to_contain_text("model:credit")
        assert 0 < rows.count() < everything
        page.click("#verify")
        expect(page.locator("#verify-result")).to_contain_text("The chain is intact")
