"""`shipway audit log|verify`."""

from __future__ import annotations

import json

import typer

from shipway.cli._output import JSON_OPTION, console, err_console, print_json, table

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def _dump(value: object) -> str:
    return json.dumps(value, default=str) if value is not None else "-"


def _change(before: object, after: object) -> str:
    return f"{_dump(before)} -> {_dump(after)}"


@app.command("log")
def log(
    limit: int = typer.Option(50, help="Show the newest N entries."),
    subject: str | None = typer.Option(None, help="Only subjects starting with this."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List audit entries, oldest first."""
    from shipway import audit_log

    entries = audit_log(limit=limit, subject=subject)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    table(
        "Audit log",
        ["#", "time", "actor", "action", "subject", "change"],
        [
            (e.seq, e.time, e.actor, e.action, e.subject, _change(e.before, e.after))
            for e in entries
        ],
    )


@app.command()
def verify(as_json: bool = JSON_OPTION) -> None:
    """Check the hash chain; exit 4 naming the first entry altered, removed or reordered."""
    from shipway import verify_audit

    report = verify_audit()
    if as_json:
        print_json(report.__dict__)
    elif report.ok:
        console.print(f"[green]Audit chain intact[/green]: {report.checked} entries verified.")
    else:
        err_console.print(
            f"[bold red]Audit chain broken[/bold red] at entry {report.first_bad_seq}: "
            f"{report.problem}. {report.checked} entries before it verified."
        )
    if not report.ok:
        raise typer.Exit(4)
