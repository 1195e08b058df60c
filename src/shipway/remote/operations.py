"""Monitoring results and deployments, read through the team server.

The server lists monitoring results as summaries (a whole result carries its distributions),
so `list_results` fetches each one it lists. Deployments and rollouts are the server's: their
agents run on its machine, and whether an agent is alive is what the server sees.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from shipway.client import Client
from shipway.deploy.records import DeploymentInfo
from shipway.deploy.rollout import RolloutState
from shipway.monitoring.result import MonitorResult
from shipway.remote._http import segment
from shipway.remote.tracking import MAX_LIMIT, api_of

_DEPLOYMENT = [f.name for f in fields(DeploymentInfo)]


def get_result(result_id: str, *, client: Client) -> MonitorResult:
    data = api_of(client).get(f"/monitoring/results/{segment(result_id)}")
    return MonitorResult.from_dict(data)


def list_results(model: str | None, *, limit: int, client: Client) -> list[MonitorResult]:
    limit = max(1, min(limit, MAX_LIMIT))
    found = api_of(client).get("/monitoring/results", model=model, limit=limit)
    return [get_result(r["id"], client=client) for r in found]


def deployment(d: dict[str, Any]) -> DeploymentInfo:
    known = {k: d[k] for k in _DEPLOYMENT}
    return DeploymentInfo(**known | {"since": datetime.fromisoformat(d["since"])})


def list_deployments(*, client: Client) -> list[DeploymentInfo]:
    return [deployment(d) for d in api_of(client).get("/deployments")]


def get_deployment(environment: str, *, client: Client) -> DeploymentInfo:
    return deployment(api_of(client).get(f"/deployments/{segment(environment)}"))


def latest_rollout(environment: str, *, client: Client) -> RolloutState | None:
    found = api_of(client).get("/rollouts", environment=environment, limit=1)
    return RolloutState.model_validate(found[0]) if found else None
