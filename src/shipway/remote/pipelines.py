"""Pipeline runs through the team server: the records `shipway pipeline run` writes as it goes.

The stages run on this machine, as locally; only the record (and, before each stage record,
its log and output files, by digest) goes to the server, which stores them as the token's user.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from shipway.client import Client
from shipway.pipeline.records import PipelineRunInfo, RunStatus, StageRecord
from shipway.remote._http import segment
from shipway.remote.tracking import MAX_LIMIT, api_of

_FIELDS = frozenset(f.name for f in fields(PipelineRunInfo))


def pipeline_run(d: dict[str, Any]) -> PipelineRunInfo:
    known = {k: v for k, v in d.items() if k in _FIELDS}  # the server adds `seconds`
    ended = d.get("ended_at")
    return PipelineRunInfo(
        **known
        | {
            "stages": [StageRecord.from_dict(s) for s in d["stages"]],
            "started_at": datetime.fromisoformat(d["started_at"]),
            "ended_at": datetime.fromisoformat(ended) if ended else None,
        }
    )


def _path(run_id: str) -> str:
    return f"/pipelines/{segment(run_id)}"


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
    body = {"model": model, "commit": commit, "branch": branch, "dirty": dirty,
            "trigger": trigger, "context": context}  # fmt: skip
    return pipeline_run(api_of(client).post("/pipelines", body))


def save_stage(run_id: str, stage: StageRecord, context: dict[str, Any], *, client: Client) -> None:
    body = {"stage": stage.to_dict(), "context": context}
    api_of(client).put(f"{_path(run_id)}/stages/{segment(stage.name)}", body)


def finish_run(
    run_id: str, status: RunStatus, summary: str | None, *, client: Client
) -> PipelineRunInfo:
    body = {"status": status, "summary": summary}
    return pipeline_run(api_of(client).post(f"{_path(run_id)}/finish", body))


def resume_run(run_id: str, *, client: Client) -> PipelineRunInfo:
    return pipeline_run(api_of(client).post(f"{_path(run_id)}/resume"))


def get_pipeline_run(run_id: str, *, client: Client) -> PipelineRunInfo:
    return pipeline_run(api_of(client).get(_path(run_id)))


def list_pipeline_runs(
    model: str | None, commit: str | None, *, limit: int, client: Client
) -> list[PipelineRunInfo]:
    """At most 1000 runs: the server's page size."""
    limit = max(1, min(limit, MAX_LIMIT))
    found = api_of(client).get("/pipelines", model=model, commit=commit, limit=limit)
    return [pipeline_run(d) for d in found]
