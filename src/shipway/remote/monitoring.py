"""Monitoring jobs through the team server: the server runs them, where the data is.

A model's prediction log is in the server's artefact store and its reference profile in the
server's store, so the job cannot run here; `run_job` sends the spec (POST
/api/v1/monitoring/runs) and gets back the result the server computed and stored, the same
`MonitorResult` a local job returns. A `--reference` or `--current` file on this machine is
uploaded by digest first (sent only if the server lacks it) and read there under its own name,
so reports and errors name the file as given here. Reports are rendered here from the result.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from shipway.client import Client
from shipway.errors import InvalidInputError
from shipway.monitoring.job import MonitorSpec
from shipway.monitoring.result import MonitorResult
from shipway.remote._http import RemoteApi
from shipway.remote.tracking import api_of

JOB_TIMEOUT_S = 900.0
"""How long a job may run on the server (reading a long prediction log, profiling the
reference the first time) before the request gives up."""
_SCALARS = (str, int, float, bool, type(None))


def spec_body(spec: MonitorSpec) -> dict[str, Any]:
    """The spec as the endpoint takes it, files aside (they are uploaded, then named)."""
    roles, policy = spec.roles, spec.policy
    if not isinstance(roles.positive_label, _SCALARS):
        raise InvalidInputError(
            f"The positive label {roles.positive_label!r} cannot be sent to the team server.",
            "Give a string, a number or a boolean.",
        )
    return {
        "model_uri": spec.model_uri,
        "window_s": None if spec.window is None else spec.window.total_seconds(),
        "since": None if spec.since is None else spec.since.isoformat(),
        "rows": spec.rows,
        "target": roles.target,
        "prediction": roles.prediction,
        "scores": list(roles.scores),
        "time": roles.time,
        "sensitive": roles.sensitive,
        "segments": list(roles.segments),
        "task": roles.task,
        "positive_label": roles.positive_label,
        "share": policy.share,
        "performance_drop": policy.performance_drop,
        "fairness_ratio": policy.fairness_ratio,
        "drift": asdict(policy.drift),
        "quality": asdict(policy.quality),
        "methods": dict(policy.methods),
        "freq": spec.freq,
        "store": spec.store,
    }


def upload_table(api: RemoteApi, path: Path, what: str) -> dict[str, str]:
    """Upload a local CSV or Parquet file; how the job names it (digest and name)."""
    if not path.is_file():
        raise InvalidInputError(f"No {what} file at {path}.", "Pass a CSV or Parquet file.")
    return {"digest": api.upload_file(path), "name": str(path)}


def run_job(spec: MonitorSpec, *, client: Client) -> MonitorResult:
    api = api_of(client)
    body = spec_body(spec)
    if spec.reference is not None:
        body["reference"] = upload_table(api, spec.reference, "reference")
    if spec.current is not None:
        body["current"] = upload_table(api, spec.current, "current")
    data = api.post("/monitoring/runs", body, timeout=JOB_TIMEOUT_S)
    return MonitorResult.from_dict(data)
