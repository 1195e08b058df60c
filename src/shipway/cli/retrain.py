"""`shipway retrain MODEL` and `shipway scheduler run`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shipway.cli._output import JSON_OPTION, console, print_json, table

if TYPE_CHECKING:
    from shipway.pipeline.retrain import RetrainResult

scheduler = typer.Typer(help="Start retrainings on a schedule, on new data, on drift.",
                        no_args_is_help=True)  # fmt: skip

DIR = typer.Option(
    Path("."), "--dir", "-C", help="The project folder (where shipway.yaml is).", show_default=False
)
TRIGGERS = ("manual", "schedule", "data", "drift")
DECISION_STYLE = {"promoted": "green", "waiting": "yellow", "kept": "cyan", "rejected": "red",
                  "failed": "red"}  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `retrain` and `scheduler` to the `shipway` command."""
    app.command("retrain")(retrain)
    app.add_typer(scheduler, name="scheduler")


def retrain(
    model: str = typer.Argument(..., help="The registered model to retrain."),
    data: Path | None = typer.Option(None, "--data", help="Train on this file, not the newest."),
    directory: Path = DIR,
    trigger: str = typer.Option("manual", help="Why it runs (recorded): " + ", ".join(TRIGGERS)),
    resume: str | None = typer.Option(
        None, "--resume", help="Promote the candidate of a retraining approved since it waited."
    ),
    detach: bool = typer.Option(
        False, "--detach", help="Run in the background (for alert hooks); print where it logs."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train on the newest data, compare with the champion, and let the policy decide."""
    from shipway.client import get_client
    from shipway.errors import InvalidInputError
    from shipway.pipeline import retrain as r

    if trigger not in TRIGGERS:
        raise InvalidInputError(f"--trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}.")
    if detach:
        again = ["retrain", model, "--dir", str(directory.resolve()), "--trigger", trigger]
        again += ["--data", str(data.resolve())] if data else []
        again += ["--resume", resume] if resume else []
        _detach(again)
        return
    say = (lambda _: None) if as_json else (lambda line: console.print(line, highlight=False))
    client = get_client()
    if resume is not None:
        result = r.resume(resume, directory=directory.resolve(), client=client, say=say)
    else:
        alert = os.environ.get("SHIPWAY_MONITOR_RESULT_ID")  # set by `monitor watch` hooks
        result = r.retrain(
            model, data=data, trigger=trigger, directory=directory.resolve(), client=client,
            say=say, context={"alert": alert} if alert else None,
        )  # fmt: skip
    if as_json:
        print_json(result.to_dict())
    else:
        show(result)
    if result.decision == "failed":
        raise typer.Exit(1)


def _detach(args: list[str]) -> None:
    """Start ``shipway ARGS`` in its own session, its output into a log file."""
    from shipway.client import get_client

    logs = get_client().settings.home / "retrain"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}.log"
    with path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipway.cli", *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    console.print(f"Retraining in the background (pid {proc.pid}); log: {path}", highlight=False)


def show(result: RetrainResult) -> None:
    """Candidate against champion, then the decision."""
    comparison: dict[str, Any] = result.comparison or {}
    mine = (comparison.get("candidate") or {}).get("metrics", {})
    theirs = (comparison.get("champion") or {}).get("metrics", {})
    if mine:
        rows = [
            [name, mine.get(name), theirs.get(name),
             f"{mine[name] - theirs[name]:+.4f}" if name in mine and name in theirs else None]
            for name in sorted({*mine, *theirs})
        ]  # fmt: skip
        champion = (comparison.get("champion") or {}).get("uri") or "no champion"
        table(f"Held-out: {comparison.get('held_out')}",
              ["metric", f"candidate {result.candidate}", f"champion {champion}", "difference"],
              rows)  # fmt: skip
    for check in comparison.get("checks", []):
        mark = "[green]✓[/green]" if check["passed"] else "[red]✗[/red]"
        console.print(f"{mark} {check['name']}: {check['detail']}", highlight=False)
    colour = DECISION_STYLE.get(result.decision, "white")
    console.print(f"[bold {colour}]{result.decision}[/bold {colour}]: {result.summary}",
                  highlight=False)  # fmt: skip
    if result.report:
        console.print(f"Report: {result.report} (pipeline run {result.run_id})", highlight=False)


@scheduler.command()
def run(
    directory: Path = DIR,
    once: bool = typer.Option(False, "--once", help="Check the triggers once and exit."),
    poll: str = typer.Option("60s", "--poll", help="How often the triggers are checked."),
) -> None:
    """Retrain when the `retrain.triggers` of shipway.yaml fire: cron, new data, drift."""
    from shipway.client import get_client
    from shipway.durations import parse_duration
    from shipway.pipeline.scheduler import run_scheduler

    poll_s = parse_duration(poll, "--poll").total_seconds()
    say = lambda line: console.print(line, highlight=False)  # noqa: E731
    done = run_scheduler(directory.resolve(), client=get_client(), once=once, poll_s=poll_s,
                         say=say)  # fmt: skip
    for result in done:
        show(result)
    if any(r.decision == "failed" for r in done):
        raise typer.Exit(1)
