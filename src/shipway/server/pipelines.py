"""Pipeline runs over the API: what ran on which commit, stage by stage, and the writes a
`shipway pipeline run` makes through a team server (start, one stage record at a time, finish,
resume), each as the token's user.

The runner uploads a stage's log and output files to /api/v1/artifacts first; a stage record
naming a blob the server lacks is refused, so a record never points at nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shipway.errors import ConflictError, InvalidInputError
from shipway.server.endpoints import API, Call, Endpoint, Param

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NewPipelineRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Name = Field(description="The registered model the pipeline ships.")
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    trigger: Name = "manual"
    context: dict[str, Any] = Field(default={}, description="Values handed between stages.")


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: Name
    status: Literal["running", "passed", "failed", "skipped", "waiting"]
    started_at: datetime | None = None
    seconds: float | None = None
    detail: str | None = None
    checks: list[dict[str, Any]] = []
    outputs: dict[str, Any] = {}
    artifacts: dict[str, str] = Field(
        default={}, description="Output file -> blob digest, uploaded first."
    )
    log: str | None = Field(default=None, description="The log's blob digest, uploaded first.")


class StageSave(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: Stage
    context: dict[str, Any] = {}


class PipelineEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["succeeded", "failed", "waiting"]
    summary: str | None = None


def _run(info: Any) -> dict[str, Any]:
    return info.to_dict() | {"seconds": info.seconds}  # type: ignore[no-any-return]


def list_pipeline_runs(call: Call) -> list[dict[str, Any]]:
    from shipway.pipeline.records import list_pipeline_runs

    found = list_pipeline_runs(model=call.query["model"], commit=call.query["commit"],
                               limit=call.query["limit"], client=call.client)  # fmt: skip
    return [_run(r) for r in found]


def get_pipeline_run(call: Call) -> dict[str, Any]:
    from shipway.pipeline.records import get_pipeline_run

    return _run(get_pipeline_run(call.path["run_id"], client=call.client))


def start_pipeline_run(call: Call) -> dict[str, Any]:
    from shipway.pipeline.records import start_run

    body: NewPipelineRun = call.body
    info = start_run(body.model, commit=body.commit, branch=body.branch, dirty=body.dirty,
                     trigger=body.trigger, context=body.context, client=call.client)  # fmt: skip
    return _run(info)


def save_stage(call: Call) -> dict[str, Any]:
    from shipway.pipeline.records import StageRecord, get_pipeline_run, save_stage
    from shipway.server.artifacts import DIGEST

    body: StageSave = call.body
    name = call.path["name"]
    if body.stage.name != name:
        raise InvalidInputError(
            f"The body records stage '{body.stage.name}', but the path names '{name}'.",
            "PUT a stage's record to /api/v1/pipelines/{run_id}/stages/{its name}.",
        )
    blobs = [*body.stage.artifacts.values(), *([body.stage.log] if body.stage.log else [])]
    bad = [d for d in blobs if not DIGEST.fullmatch(d)]
    if bad:
        raise InvalidInputError(f"'{bad[0]}' is not a SHA-256 digest.")
    missing = [d for d in blobs if not call.client.artifacts.exists(d)]
    if missing:
        raise ConflictError(
            f"The stage record names {len(missing)} blob(s) not uploaded yet.",
            "PUT each log and output file to /api/v1/artifacts/{sha256} first.",
        )
    record = StageRecord(**body.stage.model_dump())
    save_stage(call.path["run_id"], record, body.context, client=call.client)
    return _run(get_pipeline_run(call.path["run_id"], client=call.client))


def finish_pipeline_run(call: Call) -> dict[str, Any]:
    from shipway.pipeline.records import finish_run

    body: PipelineEnd = call.body
    return _run(finish_run(call.path["run_id"], body.status, body.summary, client=call.client))


def resume_pipeline_run(call: Call) -> dict[str, Any]:
    from shipway.pipeline.records import resume_run

    return _run(resume_run(call.path["run_id"], client=call.client))


_RUN = f"{API}/pipelines/{{run_id}}"
ENDPOINTS = [
    Endpoint(
        "GET",
        f"{API}/pipelines",
        list_pipeline_runs,
        "List pipeline runs",
        "pipelines",
        "viewer",
        query=(
            Param("model", "Only this model's pipeline."),
            Param("commit", "Only runs on this commit (the full hash)."),
            Param("limit", "At most this many, newest first.", int, 50, 1, 1000),
        ),
    ),
    Endpoint(
        "POST",
        f"{API}/pipelines",
        start_pipeline_run,
        "Start a pipeline run",
        "pipelines",
        "developer",
        body=NewPipelineRun,
        status=201,
        description="What `shipway pipeline run` does first; it records each stage next.",
    ),
    Endpoint(
        "GET",
        _RUN,
        get_pipeline_run,
        "Show a pipeline run: each stage, its checks, outputs and log digest",
        "pipelines",
        "viewer",
    ),
    Endpoint(
        "PUT",
        f"{_RUN}/stages/{{name}}",
        save_stage,
        "Record a pipeline stage",
        "pipelines",
        "developer",
        body=StageSave,
        description="Replaces an earlier record of the same stage, and the run's context. "
        "Upload the stage's log and outputs to /api/v1/artifacts first.",
    ),
    Endpoint(
        "POST",
        f"{_RUN}/finish",
        finish_pipeline_run,
        "Finish a pipeline run",
        "pipelines",
        "developer",
        body=PipelineEnd,
    ),
    Endpoint(
        "POST",
        f"{_RUN}/resume",
        resume_pipeline_run,
        "Resume a pipeline run",
        "pipelines",
        "developer",
        description="Marks the run running again: `--from` and `--only` continue it.",
    ),
]
