"""The web UI: a single page of plain HTML, JavaScript modules and CSS, with no build step.

The shell (`GET /`) and its assets (`GET /ui/NAME`) are files shipped in `static/`, public
because they hold no data: everything the page shows comes from `/api/v1` with the token the
user typed (kept in the tab's sessionStorage, sent as `Authorization: Bearer`, never in a URL).
Only the files present at import are public (`PUBLIC_PATHS`, which the auth middleware
consults), so a name outside them is refused like any unknown path.

Every page carries one Content-Security-Policy: scripts, styles and connections to this origin
only, plus the hashes of the monitoring report's own style and script, because the report is
shown in a sandboxed `srcdoc` frame, which inherits the page's policy.

Two read routes exist for the UI's sake and join the route table like any other: a run's metric
history (for the charts) and a stored monitoring result rendered as its HTML report.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipway.server.endpoints import API, Call, Endpoint
from shipway.store import tables as t

STATIC = "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _asset_names() -> list[str]:
    folder = resources.files("shipway.server") / STATIC
    return sorted(
        f.name for f in folder.iterdir() if f.is_file() and f.name.endswith(tuple(_TYPES))
    )


ASSETS = frozenset(_asset_names())
PUBLIC_PATHS = frozenset({"/", *(f"/ui/{name}" for name in ASSETS)})
"""The only paths the UI makes public (GET and HEAD)."""


@cache
def _report_csp() -> str:
    from shipway.monitoring.html import _assets

    return str(_assets()[2])


@cache
def page_csp() -> str:
    report = dict(re.findall(r"(script-src|style-src) ([^;]+)", _report_csp()))
    return (
        "default-src 'none'; "
        f"script-src 'self' {report['script-src']}; "
        f"style-src 'self' {report['style-src']}; "
        "connect-src 'self'; img-src 'self'; frame-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@cache
def _read(name: str) -> bytes:
    return (resources.files("shipway.server") / STATIC / name).read_bytes()


def _file(name: str) -> Response:
    media = next(m for ext, m in _TYPES.items() if name.endswith(ext))
    return Response(_read(name), media_type=media, headers=_headers(page_csp()))


async def shell(_: Request) -> Response:
    return _file("index.html")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response(b"Not found.", 404, media_type="text/plain")
    return _file(name)


def routes() -> list[Route]:
    return [
        Route("/", shell, methods=["GET"], include_in_schema=False),
        Route("/ui/{name}", asset, methods=["GET"], include_in_schema=False),
    ]


# -- API routes the UI needs --------------------------------------------------------------------


def metric_history(call: Call) -> dict[str, Any]:
    """Every logged value of every metric of a run, by key: `[[step, value], ...]` by step."""
    from shipway.tracking import get_run

    run = get_run(call.path["run_id"], client=call.client)
    query = (
        select(t.Metric.key, t.Metric.step, t.Metric.value)
        .where(t.Metric.run_id == run.id)
        .order_by(t.Metric.key, t.Metric.step, t.Metric.timestamp, t.Metric.id)
    )
    history: dict[str, list[list[float]]] = {}
    with call.client.store.read() as session:
        for key, step, value in session.execute(query):
            history.setdefault(key, []).append([step, value])
    return {"run_id": run.id, "metrics": history}


def report(call: Call) -> Response:
    """The result's HTML report (as `shipway monitor report` writes it, with the model's earlier
    results for the charts over time), under the report's own Content-Security-Policy."""
    from shipway.monitoring.history import get_result, list_results
    from shipway.monitoring.html import render_html

    result = get_result(call.path["result_id"], client=call.client)
    older: list[Any] = []
    if result.model:
        recent = list_results(result.model, limit=30, client=call.client)
        older = [r for r in reversed(recent) if r.created_at < result.created_at]
    headers = _headers(_report_csp()) | {"Cache-Control": "no-store"}
    return Response(render_html(result, history=older), media_type=_TYPES[".html"], headers=headers)


ENDPOINTS = [
    Endpoint(
        "GET",
        f"{API}/runs/{{run_id}}/metrics",
        metric_history,
        "List a run's metric history",
        "runs",
        "viewer",
        description="Each metric's values by step, for charts: {metrics: {key: [[step, value]]}}.",
    ),
    Endpoint(
        "GET",
        f"{API}/monitoring/results/{{result_id}}/report",
        report,
        "Render a monitoring result as its HTML report",
        "monitoring",
        "viewer",
        description="text/html: the self-contained report, served with its own "
        "Content-Security-Policy (it loads nothing).",
    ),
]
