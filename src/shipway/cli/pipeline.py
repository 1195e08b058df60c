"""`shipway pipeline init|run|list|show|logs|export`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, short, table

if TYPE_CHECKING:
    from shipway.pipeline.records import PipelineRunInfo, StageRecord
    from shipway.pipeline.spec import Stage

app = typer.Typer(help="Run the pipeline from commit to production, and see its runs.")

DIR = typer.Option(
    Path("."), "--dir", "-C", help="The project folder (where shipway.yaml is).", show_default=False
)
MARKS = {
    "passed": "[green]✓[/green]",
    "failed": "[red]✗[/red]",
    "skipped": "[dim]↷[/dim]",
    "waiting": "[yellow]…[/yellow]",
    "running": "[cyan]▶[/cyan]",
}
STATUS = {"succeeded": "green", "failed": "red", "running": "cyan", "waiting": "yellow"}


@app.command()
def init(
    directory: Path = DIR,
    model: str = typer.Option("model", help="The registered model the pipeline ships."),
    label: str = typer.Option("label", help="The label column of the held-out data."),
    force: bool = typer.Option(False, help="Replace a shipway.yaml that has a pipeline."),
) -> None:
    """Write a commented starter pipeline into shipway.yaml."""
    from shipway.pipeline.starter import write_starter

    path = write_starter(directory.resolve(), model=model, label=label, force=force)
    console.print(f"Wrote a starter pipeline to [bold]{path}[/bold]; edit it, then run "
                  "`shipway pipeline run`.")  # fmt: skip


class _Live:
    """Per stage: a spinner with the newest line of the stage's log, then one result line."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stage_started(self, stage: Stage, log: Path) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, args=(stage, log), daemon=True)
        self._thread.start()

    def _follow(self, stage: Stage, log: Path) -> None:
        with console.status(f"[bold]{stage.name}[/bold] ({stage.kind})") as status:
            while not self._stop.wait(0.25):
                last = _last_line(log)
                if last:
                    status.update(f"[bold]{stage.name}[/bold] ({stage.kind}) [dim]{last}[/dim]")

    def stage_ended(self, record: StageRecord) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        took = f"[dim]{record.seconds:.1f} s[/dim]" if record.seconds else ""
        detail = f" — {record.detail}" if record.detail else ""
        console.print(f"{MARKS.get(record.status, '?')} [bold]{record.name}[/bold] {took}{detail}",
                      highlight=False)  # fmt: skip


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 400))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:100] if lines else ""


@app.command()
def run(
    directory: Path = DIR,
    start: str | None = typer.Option(None, "--from", help="Start at this stage."),
    stop: str | None = typer.Option(None, "--to", help="Stop after this stage."),
    only: list[str] = typer.Option([], "--only", help="Run only this stage (repeatable)."),
    trigger: str = typer.Option("manual", help="Why it runs (recorded): manual, ci, schedule."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the pipeline of shipway.yaml: live progress per stage, stop at the first failure."""
    from shipway.pipeline.runner import run_pipeline
    from shipway.pipeline.spec import load_spec

    spec = load_spec(directory)
    if not as_json:
        chosen = spec.select(start=start, stop=stop, only=only)
        console.print(f"Pipeline of [bold]{spec.model}[/bold]: "
                      + " → ".join(s.name for s in chosen), highlight=False)  # fmt: skip
    result = run_pipeline(spec, start=start, stop=stop, only=only, trigger=trigger,
                          reporter=None if as_json else _Live())  # fmt: skip
    if as_json:
        print_json(result.to_dict())
    else:
        _summary(result)
    if result.status == "failed":
        raise typer.Exit(1)


def _summary(result: PipelineRunInfo) -> None:
    colour = STATUS.get(result.status, "white")
    took = f" in {result.seconds:.1f} s" if result.seconds is not None else ""
    console.print(f"[{colour}]Pipeline run {result.id} {result.status}[/{colour}]{took}: "
                  f"{result.summary}", highlight=False)  # fmt: skip
    failed = [s for s in result.stages if s.status == "failed"]
    for stage in failed:
        for check in stage.checks:
            if not check.get("passed", True):
                console.print(f"  [red]✗[/red] {check['name']}: {check['detail']}",
                              highlight=False)  # fmt: skip
        if stage.log:
            console.print(f"  log: `shipway pipeline logs {result.id} {stage.name}`")


@app.command("list")
def list_(
    model: str | None = typer.Option(None, help="Only this model's pipeline."),
    limit: int = typer.Option(20, min=1, help="How many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recent pipeline runs."""
    from shipway.pipeline.records import list_pipeline_runs

    found = list_pipeline_runs(model=model, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    # Below 100 columns the trigger and duration make way (`show` has them), so that every
    # other cell stays whole; only the stage marks wrap.
    wide = console.width >= 100
    columns = ["id", "model", "commit", "trigger", "status", "stages", "started", "took"]
    if not wide:
        columns = [c for c in columns if c not in ("trigger", "took")]
    rows = []
    for r in found:
        cells = {
            "id": r.id, "model": r.model, "commit": short(r.commit, 8) + ("*" if r.dirty else ""),
            "trigger": r.trigger, "status": f"[{STATUS.get(r.status, 'white')}]{r.status}[/]",
            "stages": _stages(r),
            "started": r.started_at.strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M"),
            "took": f"{r.seconds:.0f} s" if r.seconds is not None else None,
        }  # fmt: skip
        rows.append([cells[c] for c in columns])
    dirty = "* uncommitted changes" if any(r.dirty for r in found) else None
    table("Pipeline runs", columns, rows, no_wrap=[c for c in columns if c != "stages"],
          compact=True, caption=dirty)  # fmt: skip


def _stages(run: PipelineRunInfo) -> str:
    """One mark per stage, and the name of the one that stopped the run."""
    marks = "".join(MARKS.get(s.status, "?") for s in run.stages)
    stopped = [s.name for s in run.stages if s.status in ("failed", "waiting", "running")]
    return marks + (f" {stopped[0]}" if stopped else "")


@app.command()
def show(
    run_id: str = typer.Argument(..., help="A pipeline run id."), as_json: bool = JSON_OPTION
) -> None:
    """One pipeline run: each stage, its checks, outputs and artefacts."""
    from shipway.pipeline.records import get_pipeline_run

    result = get_pipeline_run(run_id)
    if as_json:
        print_json(result.to_dict())
        return
    from rich.tree import Tree

    commit = short(result.commit) + ("+dirty" if result.dirty else "")
    where = f"{commit} ({result.branch or 'no branch'}), {result.trigger}"
    tree = Tree(f"Pipeline run [bold]{result.id}[/bold] of {result.model} on {where}")
    for st in result.stages:
        took = f" [dim]{st.seconds:.1f} s[/dim]" if st.seconds is not None else ""
        detail = f" — {st.detail}" if st.detail else ""
        node = tree.add(f"{MARKS.get(st.status, '?')} [bold]{st.name}[/bold] "
                        f"[dim]({st.kind})[/dim]{took}{detail}")  # fmt: skip
        for c in st.checks:
            node.add(f"{MARKS['passed' if c.get('passed') else 'failed']} {c.get('name')}: "
                     f"{c.get('detail')}")  # fmt: skip
        for path, digest in st.artifacts.items():
            node.add(f"output {path} [dim]sha256:{short(digest)}[/dim]")
    console.print(tree, highlight=False)
    handed = {k: v for k, v in result.context.items()
              if isinstance(v, str | int | float) and len(str(v)) <= 80}  # fmt: skip
    if handed:
        console.print("Handed on: " + ", ".join(f"{k}={fmt(v)}" for k, v in handed.items()),
                      highlight=False)  # fmt: skip
    _summary(result)


@app.command()
def logs(
    run_id: str = typer.Argument(..., help="A pipeline run id."),
    stage: str = typer.Argument(..., help="The stage whose log to print."),
) -> None:
    """Print one stage's log."""
    from shipway.blobs import get_blob
    from shipway.client import get_client
    from shipway.errors import NotFoundError
    from shipway.pipeline.records import get_pipeline_run

    result = get_pipeline_run(run_id)
    found = [s for s in result.stages if s.name == stage]
    if not found or not found[0].log:
        raise NotFoundError(
            f"Pipeline run {result.id} has no log of a stage '{stage}'.",
            f"Stages with logs: {', '.join(s.name for s in result.stages if s.log) or 'none'}.",
        )
    text = get_blob(get_client(), found[0].log).decode(errors="replace")
    typer.echo(text, nl=False)


@app.command()
def export(
    target: str = typer.Argument(..., help="The CI to export to: github or gitlab."),
    directory: Path = DIR,
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        show_default=False,
        help="Where to write it; - prints it. Default: .github/workflows/shipway.yml (github) "
        "or .gitlab-ci.yml (gitlab) at the root of the git repository.",
    ),
    install: str | None = typer.Option(
        None,
        show_default=False,
        help="How each job installs Shipway. Default: pip install Shipway with its pipeline "
        "extra; pin the version you use, and add the project's own requirements.",
    ),
    force: bool = typer.Option(False, help="Replace an existing file that differs."),
) -> None:
    """Write the pipeline as a CI workflow: one job per stage, each running that stage."""
    from shipway.pipeline.export import DEFAULT_INSTALL, export_project, write_export

    text, default = export_project(directory, target, install=install or DEFAULT_INSTALL)
    if output == "-":
        typer.echo(text, nl=False)
        return
    path = Path(output) if output else default
    if write_export(text, path, force=force):
        console.print(f"Wrote the {target} workflow to [bold]{path}[/bold].", highlight=False)
    else:
        console.print(f"{path} is up to date.", highlight=False)
