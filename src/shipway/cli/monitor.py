"""`shipway monitor run|list|show|watch|serve-metrics|export-rules|export-dashboard`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, table

if TYPE_CHECKING:
    from shipway.monitoring.job import MonitorSpec
    from shipway.monitoring.result import MonitorResult

app = typer.Typer(help="Data quality, drift, model performance and fairness.", no_args_is_help=True)

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}
_FAIL_ON = ("never", "warning", "critical")


def _spec(
    model: str | None,
    reference: Path | None,
    current: Path | None,
    window: str | None,
    since: datetime | None,
    rows: int | None,
    target: str | None,
    prediction: str | None,
    scores: list[str],
    sensitive: str | None,
    segments: list[str],
    time: str | None,
    share: float,
    store: bool,
) -> MonitorSpec:
    from shipway.monitoring.job import MonitorSpec
    from shipway.monitoring.monitor import AlertPolicy, Roles
    from shipway.monitoring.sources import parse_window

    if window is not None and since is not None:
        from shipway.errors import InvalidInputError

        raise InvalidInputError("Give --window or --since, not both.")
    return MonitorSpec(
        model_uri=model,
        reference=reference,
        current=current,
        window=parse_window(window) if window else None,
        since=since,
        rows=rows,
        roles=Roles(
            target=target,
            prediction=prediction,
            scores=tuple(scores),
            time=time,
            sensitive=sensitive,
            segments=tuple(segments),
        ),
        policy=AlertPolicy(share=share),
        store=store,
    )


MODEL_ARG = typer.Argument(None, help="models:/NAME@ALIAS or models:/NAME/VERSION.")
WINDOW_OPT = typer.Option(None, "--window", "-w", help="Current = the last 30m, 24h, 7d ...")
SINCE_OPT = typer.Option(None, "--since", help="Current = predictions since this time (UTC).")
ROWS_OPT = typer.Option(None, "--rows", help="Current = at most the latest N rows.")
REF_OPT = typer.Option(None, "--reference", help="Reference CSV or Parquet file.")
CUR_OPT = typer.Option(None, "--current", help="Current CSV or Parquet file.")
TARGET_OPT = typer.Option(None, "--target", help="Label column.")
PRED_OPT = typer.Option(None, "--prediction", help="Predicted label or value column.")
SCORE_OPT = typer.Option([], "--score", help="Score / probability column (repeatable).")
SENSITIVE_OPT = typer.Option(None, "--sensitive", help="Sensitive column for fairness.")
SEGMENT_OPT = typer.Option([], "--segment", help="Report metrics per value of (repeatable).")
TIME_OPT = typer.Option(None, "--time", help="Timestamp column, for metrics over time.")
SHARE_OPT = typer.Option(0.5, "--share", help="Dataset drift when this share of features drift.")


@app.command()
def run(
    model: str | None = MODEL_ARG,
    reference: Path | None = REF_OPT,
    current: Path | None = CUR_OPT,
    window: str | None = WINDOW_OPT,
    since: datetime | None = SINCE_OPT,
    rows: int | None = ROWS_OPT,
    target: str | None = TARGET_OPT,
    prediction: str | None = PRED_OPT,
    score: list[str] = SCORE_OPT,
    sensitive: str | None = SENSITIVE_OPT,
    segment: list[str] = SEGMENT_OPT,
    time: str | None = TIME_OPT,
    share: float = SHARE_OPT,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the HTML report."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the result as JSON."),
    store: bool = typer.Option(True, "--store/--no-store", help="Keep the result in the store."),
    fail_on: str = typer.Option(
        "never",
        "--fail-on",
        help="Exit 1 when an alert of this severity fires: warning, critical or never.",
    ),
) -> None:
    """Compare a window of data with its reference: quality, drift, performance, fairness.

    With a model: the reference is its training data and the window its prediction log
    (or --current FILE). Without one: --reference and --current files (CSV or Parquet).
    """
    from shipway.errors import InvalidInputError
    from shipway.monitoring.job import run_job

    if fail_on not in _FAIL_ON:
        raise InvalidInputError(f"--fail-on must be one of {', '.join(_FAIL_ON)}, not {fail_on!r}.")
    spec = _spec(
        model, reference, current, window, since, rows, target, prediction, score,
        sensitive, segment, time, share, store,
    )  # fmt: skip
    with console.status("Monitoring ..."):
        result = run_job(spec)
    write_outputs(result, output, json_path)
    summarize(result)
    if output is not None:
        console.print(f"HTML report: [bold]{output}[/bold]")
    if fail_on != "never" and _fails(result, fail_on):
        raise typer.Exit(1)


def _fails(result: MonitorResult, fail_on: str) -> bool:
    levels = ["critical"] if fail_on == "critical" else ["critical", "warning"]
    return any(a.severity in levels for a in result.alerts)


def write_outputs(result: MonitorResult, output: Path | None, json_path: Path | None) -> None:
    if json_path is not None:
        json_path.write_text(result.to_json())
    if output is not None:
        from shipway.monitoring.history import list_results
        from shipway.monitoring.html import write_html

        history = list_results(result.model, limit=30) if result.model else []
        older = [r for r in reversed(history) if r.created_at < result.created_at]
        write_html(result, output, history=older)


def summarize(result: MonitorResult) -> None:
    """The verdict, the drifted features and the alerts, for a person at a terminal."""
    drift = result.drift
    what = f"models:/{result.model}/{result.version}" if result.model else "files"
    console.print(
        f"[bold]Monitoring[/bold] {what}: {result.current.description} "
        f"({result.current.rows} rows) against {result.reference.description}"
    )
    verdict = "[bold red]DRIFT[/]" if drift.drifted else "[green]no dataset drift[/]"
    share = "-" if drift.share_drifted is None else f"{drift.share_drifted:.0%}"
    console.print(
        f"{verdict}: {drift.n_drifted} of {drift.n_tested} features drifted ({share}, "
        f"threshold {drift.share:.0%})"
    )
    drifted = [c for c in drift.columns if c.drifted]
    if drifted:
        table(
            "Drifted features",
            ["feature", "kind", "test", "statistic", "threshold", "p-value"],
            [(c.column, c.kind, c.method, c.statistic, c.threshold, c.p_value) for c in drifted],
        )
    perf = result.performance
    if perf is not None:
        shown = {k: v for k, v in perf.metrics.items() if v is not None}
        line = ", ".join(f"{k}={fmt(v)}" for k, v in shown.items()) or "no labels yet"
        console.print(f"Performance ({perf.labelled} of {perf.rows} rows labelled): {line}")
    if result.fairness is not None:
        f = result.fairness
        console.print(
            f"Fairness over '{f.sensitive}': parity ratio {fmt(f.demographic_parity_ratio)}, "
            f"equalized odds difference {fmt(f.equalized_odds_difference)}"
            + (" [bold red](below four-fifths)[/]" if f.four_fifths_violated else "")
        )
    alerts = [a for a in result.alerts if a.name != "column_drift"]
    if alerts:
        table(
            "Alerts",
            ["severity", "alert", "column", "message"],
            [
                (f"[{SEVERITY_STYLE[a.severity]}]{a.severity}[/]", a.name, a.column, a.message)
                for a in alerts
            ],
        )
    console.print(f"[dim]Result {result.id}[/dim]")


@app.command("list")
def list_(
    model: str | None = typer.Argument(None, help="Only this model's results."),
    limit: int = typer.Option(20, min=1, help="Show at most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List stored monitoring results, newest first."""
    from shipway.monitoring.history import list_results

    results = list_results(model, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    table(
        "Monitoring results",
        ["id", "time", "model", "version", "rows", "drifted", "worst alert"],
        [
            (
                r.id[:12],
                r.created_at,
                r.model or "(files)",
                r.version,
                r.current.rows,
                f"{r.drift.n_drifted}/{r.drift.n_tested}",
                f"[{SEVERITY_STYLE[r.worst]}]{r.worst}[/]" if r.worst else "[green]none[/]",
            )
            for r in results
        ],
    )


@app.command()
def show(
    result_id: str = typer.Argument(..., help="Result id (or a unique prefix of it)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the HTML report."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one stored result again, or write its HTML report."""
    from shipway.monitoring.history import get_result

    result = get_result(result_id)
    if as_json:
        print_json(result.to_dict())
        return
    write_outputs(result, output, None)
    summarize(result)
    if output is not None:
        console.print(f"HTML report: [bold]{output}[/bold]")


@app.command()
def watch(
    model: str | None = MODEL_ARG,
    every: str | None = typer.Option(None, "--every", help="Run every 30m, 1h, 1d ..."),
    cron: str | None = typer.Option(None, "--cron", help="Run on this cron schedule (UTC)."),
    webhook: str | None = typer.Option(None, "--webhook", help="POST alerts to this URL."),
    command: str | None = typer.Option(
        None, "--command", help="Run this command on alerts (the alert JSON on its stdin)."
    ),
    severity: str = typer.Option("warning", "--severity", help="Lowest severity that fires."),
    runs: int | None = typer.Option(None, "--runs", help="Stop after N runs (default: never)."),
    reference: Path | None = REF_OPT,
    current: Path | None = CUR_OPT,
    window: str | None = WINDOW_OPT,
    rows: int | None = ROWS_OPT,
    target: str | None = TARGET_OPT,
    prediction: str | None = PRED_OPT,
    score: list[str] = SCORE_OPT,
    sensitive: str | None = SENSITIVE_OPT,
    share: float = SHARE_OPT,
    output: Path | None = typer.Option(None, "--output", "-o", help="Keep the latest report here."),
) -> None:
    """Monitor on a schedule; call a webhook or a command when an alert fires."""
    from shipway.monitoring.sources import parse_window
    from shipway.monitoring.watch import Hooks, Schedule
    from shipway.monitoring.watch import watch as run_watch

    schedule = Schedule(every=parse_window(every) if every else None, cron=cron)
    hooks = Hooks(webhook=webhook, command=command, min_severity=severity)  # type: ignore[arg-type]
    spec = _spec(
        model, reference, current, window, None, rows, target, prediction, score,
        sensitive, [], None, share, True,
    )  # fmt: skip

    def report(result: MonitorResult | None, error: str | None) -> None:
        if result is not None:
            summarize(result)
        if error is not None:
            console.print(f"[red]Run failed:[/red] {error}")

    what = "every " + every if every else f"on '{cron}'"
    console.print(f"Watching {model or 'files'} {what}; Ctrl-C stops.")
    fired = run_watch(spec, schedule, hooks, runs=runs, report=output, on_result=report)
    console.print(f"Hooks fired on {fired} run(s).")


@app.command("serve-metrics")
def serve_metrics(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(9108, help="Port to listen on."),
) -> None:
    """Expose the latest monitoring result of every model as Prometheus metrics (/metrics),
    read from the store or the team server (SHIPWAY_TRACKING_URI) at every scrape."""
    from shipway.addresses import check_listen_address
    from shipway.client import get_client
    from shipway.monitoring.history import latest_results
    from shipway.monitoring.prometheus import serve_metrics as run_server

    check_listen_address(host, port)
    client = get_client()
    console.print(f"Monitoring metrics on http://{host}:{port}/metrics (docs at /docs).")
    run_server(host, port, lambda: latest_results(client=client))


OUT_OPT = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout.")


def _emit(text: str, output: Path | None, what: str) -> None:
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    output.write_text(text)
    console.print(f"Wrote {what} to [bold]{output}[/bold].", highlight=False)


@app.command("export-rules")
def export_rules(
    output: Path | None = OUT_OPT,
    drift_share: float = typer.Option(0.5, help="Alert when this share of features drift."),
    latency_p99: float = typer.Option(0.5, "--latency-p99", help="Serving p99 bound, seconds."),
    error_rate: float = typer.Option(0.05, help="Serving 5xx share bound."),
    parity_ratio: float = typer.Option(0.8, help="Demographic parity ratio bound."),
    performance_drop: float = typer.Option(0.1, help="Relative drop against the reference."),
) -> None:
    """Prometheus alerting rules for drift, data quality, fairness, latency and error rate."""
    from shipway.monitoring.rules import rules_yaml

    text = rules_yaml(
        drift_share=drift_share,
        latency_p99_seconds=latency_p99,
        error_rate=error_rate,
        parity_ratio=parity_ratio,
        performance_drop=performance_drop,
    )
    _emit(text, output, "alerting rules")


@app.command("export-dashboard")
def export_dashboard(
    output: Path | None = OUT_OPT,
    datasource_uid: str | None = typer.Option(None, help="Pin a Prometheus datasource uid."),
    title: str = typer.Option("Shipway models", help="Dashboard title."),
) -> None:
    """A Grafana dashboard (JSON) over the serving and monitoring metrics."""
    import json

    from shipway.monitoring.dashboard import grafana_dashboard

    board = grafana_dashboard(datasource_uid=datasource_uid, title=title)
    _emit(json.dumps(board, indent=2) + "\n", output, "the Grafana dashboard")
