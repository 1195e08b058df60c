"""Pipeline runs as stored: which commit, which stages ran, how long each took, what each made,
and how the run ended. The runner writes a run after every stage, so a crash leaves the stages
that finished on record and the run `running` until `shipway pipeline list` shows it stale."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from shipway.client import Client, get_client
from shipway.errors import NotFoundError
from shipway.records import _Record
from shipway.store import tables as t
from shipway.store.store import utc, utcnow

__all__ = [
    "PipelineRunInfo",
    "StageRecord",
    "finish_run",
    "get_pipeline_run",
    "latest_for_commit",
    "list_pipeline_runs",
    "resume_run",
    "save_stage",
    "start_run",
]

StageStatus = Literal["running", "passed", "failed", "skipped", "waiting"]
RunStatus = Literal["running", "succeeded", "failed", "waiting"]


@dataclasses.dataclass(frozen=True)
class StageRecord(_Record):
    name: str
    kind: str
    status: StageStatus
    started_at: datetime | None = None
    seconds: float | None = None
    detail: str | None = None
    """One line: what failed, against which threshold; or why the stage was skipped."""
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, str] = dataclasses.field(default_factory=dict)
    """Output file (relative path) -> blob digest in the artefact store."""
    log: str | None = None
    """Blob digest of the stage's log."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRecord:
        started = data.get("started_at")
        return cls(**{**data, "started_at": datetime.fromisoformat(started) if started else None})


@dataclasses.dataclass(frozen=True)
class PipelineRunInfo(_Record):
    id: str
    model: str
    commit: str | None
    branch: str | None
    dirty: bool
    trigger: str
    status: RunStatus
    stages: list[StageRecord]
    context: dict[str, Any]
    summary: str | None
    created_by: str
    started_at: datetime
    ended_at: datetime | None

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None


def _info(row: t.PipelineRun) -> PipelineRunInfo:
    return PipelineRunInfo(
        id=row.id,
        model=row.model,
        commit=row.commit,
        branch=row.branch,
        dirty=row.dirty,
        trigger=row.trigger,
        status=row.status,  # type: ignore[arg-type]
        stages=[StageRecord.from_dict(s) for s in row.stages],
        context=dict(row.context),
        summary=row.summary,
        created_by=row.created_by,
        started_at=utc(row.started_at),
        ended_at=utc(row.ended_at) if row.ended_at else None,
    )


def start_run(
    model: str,
    *,
    commit: str | None,
    branch: str | None,
    dirty: bool,
    trigger: str,
    context: dict[str, Any],
    client: Client,
) -> PipelineRunInfo:
    if client.remote:
        from shipway.remote import pipelines as remote

        return remote.start_run(model, commit=commit, branch=branch, dirty=dirty,
                                trigger=trigger, context=context, client=client)  # fmt: skip
    with client.write() as tx:
        row = t.PipelineRun(
            id=uuid.uuid4().hex[:12],
            model=model,
            commit=commit,
            branch=branch,
            dirty=dirty,
            trigger=trigger,
            status="running",
            stages=[],
            context=context,
            summary=None,
            created_by=client.actor,
            started_at=utcnow(),
            ended_at=None,
        )
        tx.session.add(row)
        tx.session.flush()
        tx.audit(
            "pipeline.start",
            f"pipeline:{row.id}",
            after={"model": model, "commit": commit, "trigger": trigger},
        )
        return _info(row)


def save_stage(run_id: str, stage: StageRecord, context: dict[str, Any], *, client: Client) -> None:
    """Record ``stage`` (replacing an earlier record of the same name) and the context."""
    if client.remote:
        from shipway.remote import pipelines as remote

        remote.save_stage(run_id, stage, context, client=client)
        return
    with client.write() as tx:
        row = _row(tx.session, run_id)
        stages = [s for s in row.stages if s["name"] != stage.name]
        row.stages = [*stages, stage.to_dict()]
        row.context = dict(context)


def finish_run(
    run_id: str, status: RunStatus, summary: str | None, *, client: Client
) -> PipelineRunInfo:
    if client.remote:
        from shipway.remote import pipelines as remote

        return remote.finish_run(run_id, status, summary, client=client)
    with client.write() as tx:
        row = _row(tx.session, run_id)
        row.status, row.summary = status, summary
        row.ended_at = None if status == "waiting" else utcnow()
        tx.audit(
            f"pipeline.{status}",
            f"pipeline:{run_id}",
            {"status": "running"},
            {"status": status, "summary": summary},
        )
        return _info(row)


def resume_run(run_id: str, *, client: Client) -> PipelineRunInfo:
    """Mark a stored run running again (`--from` on the same commit continues it)."""
    if client.remote:
        from shipway.remote import pipelines as remote

        return remote.resume_run(run_id, client=client)
    with client.write() as tx:
        row = _row(tx.session, run_id)
        before = row.status
        row.status, row.summary, row.ended_at = "running", None, None
        tx.audit("pipeline.resume", f"pipeline:{run_id}", {"status": before}, {"status": "running"})
        return _info(row)


def _row(session: Any, run_id: str) -> t.PipelineRun:
    row = session.get(t.PipelineRun, run_id)
    if row is None:
        matches = list(
            session.scalars(select(t.PipelineRun).where(t.PipelineRun.id.startswith(run_id)))
        )
        if len(matches) != 1:
            raise NotFoundError(
                f"No pipeline run '{run_id}'.", "List them with `shipway pipeline list`."
            )
        row = matches[0]
    return row  # type: ignore[no-any-return]


def get_pipeline_run(run_id: str, *, client: Client | None = None) -> PipelineRunInfo:
    """A pipeline run by id (or a unique prefix of it)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import pipelines as remote

        return remote.get_pipeline_run(run_id, client=client)
    with client.store.read() as session:
        return _info(_row(session, run_id))


def list_pipeline_runs(
    *,
    model: str | None = None,
    commit: str | None = None,
    limit: int = 50,
    client: Client | None = None,
) -> list[PipelineRunInfo]:
    """The newest pipeline runs first (``model``'s, on ``commit``, when given)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import pipelines as remote

        return remote.list_pipeline_runs(model, commit, limit=limit, client=client)
    query = select(t.PipelineRun).order_by(t.PipelineRun.started_at.desc()).limit(limit)
    if model is not None:
        query = query.where(t.PipelineRun.model == model)
    if commit is not None:
        query = query.where(t.PipelineRun.commit == commit)
    with client.store.read() as session:
        return [_info(row) for row in session.scalars(query)]


def latest_for_commit(model: str, commit: str | None, *, client: Client) -> PipelineRunInfo | None:
    """The newest run of ``model``'s pipeline on ``commit``: `--from` and `--only` continue it,
    so a stage run on its own finds what earlier stages handed on (the candidate version)."""
    if commit is None:
        return None
    found = list_pipeline_runs(model=model, commit=commit, limit=1, client=client)
    return found[0] if found else None
