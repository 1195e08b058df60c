"""Pipeline runs over the API (read-only): what ran on which commit, stage by stage."""

from __future__ import annotations

from typing import Any

from shipway.server.endpoints import API, Call, Endpoint, Param


def _run(info: Any) -> dict[str, Any]:
    return info.to_dict() | {"seconds": info.seconds}  # type: ignore[no-any-return]


def list_pipeline_runs(call: Call) -> list[dict[str, Any]]:
    from shipway.pipeline.records import list_pipeline_runs

    found = list_pipeline_runs(model=call.query["model"], limit=call.query["limit"],
                               client=call.client)  # fmt: skip
    return [_run(r) for r in found]


def get_pipeline_run(call: Call) -> dict[str, Any]:
    from shipway.pipeline.records import get_pipeline_run

    return _run(get_pipeline_run(call.path["run_id"], client=call.client))


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
            Param("limit", "At most this many, newest first.", int, 50, 1, 1000),
        ),
    ),
    Endpoint(
        "GET",
        f"{API}/pipelines/{{run_id}}",
        get_pipeline_run,
        "Show a pipeline run: each stage, its checks, outputs and log digest",
        "pipelines",
        "viewer",
    ),
]
