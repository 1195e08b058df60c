"""`shipway audit log|verify|export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from shipway.cli._output import JSON_OPTION, console, err_console, print_json, table

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 14 else text[:12] + "…"


def _change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Only what changed, compactly: `version 1→2`, `status=finished`."""
    before, after = before or {}, after or {}
    parts = []
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        if key in before and key in after:
            if old != new:
                parts.append(f"{key} {_short(old)}→{_short(new)}")
        elif key in after:
            parts.append(f"{key}={_short(new)}")
        else:
            parts.append(f"{key} {_short(old)}→∅")
    return ", ".join(parts)


@app.command("log")
def log(
    limit: int = typer.Option(50, min=1, help="Show the newest N entries."),
    subject: str | None = typer.Option(None, help="Only subjects starting with this."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List audit entries, oldest first."""
    from shipway import audit_log

    entries = audit_log(limit=limit, subject=subject)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    # The source column appears once changes arrive through the team server.
    sourced = any(e.source for e in entries)
    table(
        "Audit log",
        ["#", "time", "actor", *(["source"] if sourced else []), "action", "subject", "change"],
        [
            (
                e.seq,
                e.time,
                e.actor,
                *([e.source] if sourced else []),
                e.action,
                e.subject,
                _change(e.before, e.after),
            )
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


@app.command()
def export(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of standard output."
    ),
    since: int | None = typer.Option(
        None, "--since", min=0, help="Only entries after this seq (the last one exported)."
    ),
) -> None:
    """Write the audit log as JSON Lines, oldest first, with the hashes to re-check the chain."""
    import sys

    from shipway.governance.audit import export as write

    count = write(output if output is not None else sys.stdout, since_seq=since)
    if output is not None:
        console.print(f"Exported {count} audit entries to {output}.")
