"""`shipway runs list|show|reproduce`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, short, table

if TYPE_CHECKING:
    from shipway.tracking.reproduce import ReproduceReport

app = typer.Typer(help="Tracked training runs.", no_args_is_help=True)

STATUS_STYLE = {"finished": "green", "failed": "red", "running": "yellow"}


@app.command("list")
def list_(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this one."),
    tag: str | None = typer.Option(None, "--tag", help="Only runs with this tag: KEY=VALUE."),
    limit: int = typer.Option(50, min=1, help="Show at most this many runs, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List runs, newest first."""
    from shipway import list_runs

    runs = list_runs(experiment, tag=tag, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    wide = console.width >= 100  # below, the year and 4 id digits make way for metrics
    table(
        "Runs",
        ["run", "experiment", "status", "started", "commit", "metrics", "models"],
        [
            (
                r.id[: 12 if wide else 8],  # any unique prefix names a run
                r.experiment,
                f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status}[/]",
                r.start_time.strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M"),
                short((r.environment.get("git") or {}).get("commit"), 8),
                "\n".join(f"{k}={fmt(v)}" for k, v in sorted(r.metrics.items())),
                "\n".join(r.models),
            )
            for r in runs
        ],
        # one metric a line: the identifying columns stay whole at 80 columns
        no_wrap=["run", "experiment", "status", "started", "commit"],
        compact=True,
    )


@app.command()
def show(
    run_id: str = typer.Argument(..., help="Run id or a unique prefix of it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show everything a run recorded."""
    from shipway import get_run

    run = get_run(run_id)
    if as_json:
        print_json(run.to_dict())
        return
    env = run.environment
    git = env.get("git") or {}
    seeds = env.get("seeds") or {}
    console.print(f"[bold]Run[/bold] {run.id}  [dim]experiment[/dim] {run.experiment}")
    status = f"[{STATUS_STYLE.get(run.status, 'white')}]{run.status}[/]"
    console.print(f"  status   {status}  by {run.actor}")
    console.print(f"  started  {fmt(run.start_time)}   ended {fmt(run.end_time)}")
    if run.error:
        console.print(f"  error    [red]{run.error}[/red]")
    dirty = (
        " [yellow](dirty, diff " + short(git.get("diff_digest")) + ")[/yellow]"
        if git.get("dirty")
        else ""
    )
    console.print(f"  commit   {git.get('commit') or '[dim]not in a git repository[/dim]'}{dirty}")
    rt = env.get("runtime") or {}
    pk = env.get("packages") or {}
    console.print(f"  python   {rt.get('python')} on {rt.get('platform')}")
    console.print(f"  packages {pk.get('count')} locked (lock {short(pk.get('lock_digest'))})")
    console.print(f"  seeds    {seeds}")
    if run.params:
        table("Params", ["param", "value"], sorted(run.params.items()))
    if run.metrics:
        table("Metrics", ["metric", "value"], sorted(run.metrics.items()))
    if run.datasets:
        table(
            "Datasets",
            ["name", "role", "rows", "content hash"],
            [(d.name, d.role, d.num_rows, short(d.content_hash)) for d in run.datasets],
        )
    if run.models or run.artifacts:
        table(
            "Artefacts",
            ["name", "kind", "digest"],
            [(k, "model", short(v)) for k, v in run.models.items()]
            + [(k, "file", short(v)) for k, v in run.artifacts.items()],
        )


VERDICT_STYLE = {"same": "green", "differs": "red", "unchecked": "yellow"}


@app.command()
def reproduce(
    run_id: str = typer.Argument(..., help="Run id or a unique prefix of it."),
    tolerance: float = typer.Option(
        1e-6,
        help="Largest absolute difference of a metric or a model output that still counts "
        "as the same.",
    ),
    python: str | None = typer.Option(
        None,
        help="The Python to train with (default: this one), e.g. a venv holding the recorded lock.",
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary git worktree."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run a recorded run again from its commit, data and command, and compare the results.

    Exits 4 when a metric or a model output differs by more than the tolerance (or the run
    fails), naming the likely causes.
    """
    from shipway.tracking.reproduce import reproduce as reproduce_run

    with console.status(f"Reproducing run {run_id} ..."):
        report = reproduce_run(run_id, tolerance=tolerance, python=python, keep=keep)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if not report.reproduced:
        raise typer.Exit(4)


def _print_report(report: ReproduceReport) -> None:
    from rich.markup import escape

    command = " ".join([report.python, *report.command])
    title = (
        f"Run {report.run_id[:12]} at {report.commit[:12]}, reproduced as "
        f"{report.new_run_id[:12] if report.new_run_id else 'no new run'}"
    )
    console.print(f"[dim]Ran[/dim] {escape(command)} [dim]in[/dim] {escape(report.workdir)}")
    table(
        title,
        ["check", "name", "recorded", "new", "difference", "verdict"],
        [
            (
                c.kind,
                escape(c.name),
                escape(_value(c.recorded)),
                escape(_value(c.new)),
                f"{c.difference:.3g}" if c.difference is not None else None,
                f"[{VERDICT_STYLE.get(c.verdict, 'white')}]{c.verdict}[/]"
                + (f" [dim]({escape(c.detail)})[/dim]" if c.detail else ""),
            )
            for c in report.checks
        ],
    )
    if report.restored:
        console.print(f"Restored {', '.join(report.restored)} from the logged datasets.")
    if report.reproduced:
        console.print(f"[green]Reproduced[/green] within {report.tolerance:g}.")
    else:
        console.print(
            f"[bold red]Not reproduced[/bold red]: {len(report.differences)} "
            f"difference(s) beyond {report.tolerance:g}."
        )
    if report.causes:
        console.print("Likely causes:" if not report.reproduced else "Caveats:")
        for cause in report.causes:
            console.print(f"  - {escape(cause)}", soft_wrap=True)
    if report.output:
        console.print(f"[dim]The script's last output:[/dim]\n{escape(report.output)}")
    if report.worktree:
        console.print(
            f"Worktree kept at {report.worktree} (git worktree remove it when done).",
            soft_wrap=True,
        )


def _value(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
