"""`shipway runs list|show`."""

from __future__ import annotations

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, short, table

app = typer.Typer(help="Tracked training runs.", no_args_is_help=True)

STATUS_STYLE = {"finished": "green", "failed": "red", "running": "yellow"}


@app.command("list")
def list_(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this one."),
    limit: int = typer.Option(50, help="Show at most this many runs, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List runs, newest first."""
    from shipway import list_runs

    runs = list_runs(experiment, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    table(
        "Runs",
        ["run", "experiment", "status", "started", "commit", "metrics", "models"],
        [
            (
                r.id[:12],
                r.experiment,
                f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status}[/]",
                r.start_time,
                short((r.environment.get("git") or {}).get("commit"), 8),
                ", ".join(f"{k}={fmt(v)}" for k, v in sorted(r.metrics.items())),
                ", ".join(r.models),
            )
            for r in runs
        ],
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
