"""Run a pipeline on this machine: the chosen stages in order, stopping at the first failure.

Every run is recorded (commit, branch, each stage's status, duration, checks, outputs and log)
after every stage. `--from` and `--only` continue the newest run of the same commit, so a
stage run on its own (as each job of an exported CI workflow does) finds what the earlier
stages handed on, and the record shows the whole pipeline.
"""

from __future__ import annotations

import glob
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from shipway.blobs import put_blob
from shipway.client import Client, get_client
from shipway.durations import parse_duration
from shipway.pipeline import records
from shipway.pipeline.records import PipelineRunInfo, StageRecord
from shipway.pipeline.spec import PipelineSpec, Stage
from shipway.pipeline.stages import Outcome, StageContext, run_stage
from shipway.store.store import utcnow
from shipway.tracking.capture import git_state

__all__ = ["Reporter", "run_pipeline"]


class Reporter(Protocol):
    def stage_started(self, stage: Stage, log: Path) -> None: ...

    def stage_ended(self, record: StageRecord) -> None: ...


class _Quiet:
    def stage_started(self, stage: Stage, log: Path) -> None:
        pass

    def stage_ended(self, record: StageRecord) -> None:
        pass


def branch_of(directory: Path) -> str | None:
    """The branch being built: CI's own variable when set (CI checks out a detached HEAD)."""
    for var in ("SHIPWAY_BRANCH", "GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=directory, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return None if out in ("", "HEAD") else out


def run_pipeline(
    spec: PipelineSpec,
    *,
    start: str | None = None,
    stop: str | None = None,
    only: Sequence[str] = (),
    trigger: str = "manual",
    values: dict[str, object] | None = None,
    client: Client | None = None,
    reporter: Reporter | None = None,
) -> PipelineRunInfo:
    """Run the stages ``start``/``stop``/``only`` choose; the recorded run, ended."""
    client = client or get_client()
    reporter = reporter or _Quiet()
    chosen = spec.select(start=start, stop=stop, only=only)
    git = git_state(spec.directory)
    commit, branch = git.get("commit"), branch_of(spec.directory)
    # A run from the first stage is a new run; anything later continues this commit's run.
    prior = (
        records.latest_for_commit(spec.model, commit, client=client)
        if chosen[0] is not spec.stages[0]
        else None
    )
    if prior is not None:
        run = records.resume_run(prior.id, client=client)
        context = {**run.context, **(values or {})}
    else:
        context = dict(values or {})
        run = records.start_run(
            spec.model, commit=commit, branch=branch, dirty=bool(git.get("dirty")),
            trigger=trigger, context=context, client=client,
        )  # fmt: skip
    logs = client.settings.home / "pipelines" / run.id
    logs.mkdir(parents=True, exist_ok=True)
    status, summary = "succeeded", None
    for stage in chosen:
        record = _run_one(spec, stage, run.id, context, logs, branch, client, reporter)
        if record.status == "failed":
            status, summary = "failed", f"{stage.name} failed: {record.detail}"
            break
    else:
        summary = f"{len(chosen)} stage(s) passed" + (f" on {commit[:12]}" if commit else "")
    return records.finish_run(run.id, status, summary, client=client)  # type: ignore[arg-type]


def _run_one(
    spec: PipelineSpec,
    stage: Stage,
    run_id: str,
    context: dict[str, object],
    logs: Path,
    branch: str | None,
    client: Client,
    reporter: Reporter,
) -> StageRecord:
    log_path = logs / f"{stage.name}.log"
    started_at, started = utcnow(), time.monotonic()
    skipped = stage.when.holds(branch, os.environ)
    if skipped is not None:
        record = StageRecord(stage.name, stage.kind, "skipped", started_at, 0.0, skipped)
        records.save_stage(run_id, record, context, client=client)
        reporter.stage_ended(record)
        return record
    records.save_stage(
        run_id, StageRecord(stage.name, stage.kind, "running", started_at), context, client=client
    )
    reporter.stage_started(stage, log_path)
    deadline = (
        started + parse_duration(stage.timeout, "timeout").total_seconds()
        if stage.timeout
        else None
    )
    with log_path.open("w") as log, tempfile.TemporaryDirectory() as tmp:
        ctx = StageContext(
            spec, stage, context, log, client, deadline, run_id, Path(tmp) / "outputs"
        )
        missing = _missing_inputs(spec.directory, stage.inputs)
        try:
            outcome = (
                Outcome(False, f"input {missing[0]} does not exist") if missing else run_stage(ctx)
            )
        except BaseException as exc:  # Ctrl-C or a bug: record it, then let it go on up
            ctx.say(f"stopped: {type(exc).__name__}: {exc}")
            _save(run_id, stage, "failed", started_at, started, f"stopped: {exc!r}", context,
                  log_path, client)  # fmt: skip
            records.finish_run(run_id, "failed", f"{stage.name} stopped", client=client)
            raise
        artifacts = _store_outputs(spec.directory, stage.outputs, client) if outcome.passed else {}
        missing_out = _missing_inputs(spec.directory, stage.outputs)
        if outcome.passed and missing_out:
            outcome = Outcome(False, f"output {missing_out[0]} was not made", outcome.checks)
    status = "passed" if outcome.passed else ("waiting" if outcome.waiting else "failed")
    record = _save(run_id, stage, status, started_at, started, outcome.detail, context, log_path,
                   client, outcome, artifacts)  # fmt: skip
    reporter.stage_ended(record)
    return record


def _save(
    run_id: str,
    stage: Stage,
    status: str,
    started_at: datetime,
    started: float,
    detail: str | None,
    context: dict[str, object],
    log_path: Path,
    client: Client,
    outcome: Outcome | None = None,
    artifacts: dict[str, str] | None = None,
) -> StageRecord:
    log = put_blob(client, log_path) if log_path.exists() else None
    record = StageRecord(
        name=stage.name,
        kind=stage.kind,
        status=status,  # type: ignore[arg-type]
        started_at=started_at,
        seconds=round(time.monotonic() - started, 3),
        detail=detail,
        checks=outcome.checks if outcome else [],
        outputs={k: v for k, v in context.items() if isinstance(v, str | int | float)},
        artifacts=artifacts or {},
        log=log,
    )
    records.save_stage(run_id, record, context, client=client)
    return record


def _missing_inputs(directory: Path, patterns: Sequence[str]) -> list[str]:
    return [p for p in patterns if not glob.glob(str(directory / p))]


def _store_outputs(directory: Path, patterns: Sequence[str], client: Client) -> dict[str, str]:
    """Each output file, content-addressed in the client's artefact store (the team server's
    when remote): relative path -> digest."""
    stored = {}
    for pattern in patterns:
        for name in sorted(glob.glob(str(directory / pattern), recursive=True)):
            path = Path(name)
            if path.is_file():
                stored[path.relative_to(directory).as_posix()] = put_blob(client, path)
    return stored
