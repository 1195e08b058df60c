"""Deployments, rollouts and monitoring results over the API.

A deployment or a rollout asked for here runs on the server's machine, through the same
`shipway.deploy.control` code the CLI uses (the agent it starts outlives the request).
Environments with an approval policy need an approved request for the version first; that
check lives in the deploy code itself, so the CLI and the API cannot disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from shipway.deploy.records import DeploymentInfo
from shipway.errors import NotFoundError
from shipway.server.endpoints import API, Call, Endpoint, Param
from shipway.store import tables as t


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(description="models:/NAME/VERSION or models:/NAME@ALIAS")
    environment: str = Field(min_length=1, max_length=100)
    replicas: int | None = Field(None, ge=1, le=64)
    port: int | None = Field(None, ge=1, le=65535)
    runtime: str = Field("process", description="process, or container (its built image)")
    wait_s: float = Field(300, gt=0, le=900, description="How long to wait for it to be live.")


class RolloutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(description="The canary: models:/NAME/VERSION")
    steps: str = Field("10,25,50,100", description="Canary traffic % per step, or 'pause'.")
    interval_s: float = Field(30, gt=0, description="Analysis interval per step (seconds).")
    failure_limit: int = Field(1, ge=1)
    checks: dict[str, float | int | None] = Field(
        {}, description="Analysis thresholds (max_error_rate, max_p99_ms, max_p99_ratio, ...)."
    )


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full: bool = Field(False, description="Promote the canary now, skipping the steps left.")


class StopBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait_s: float = Field(60, gt=0, le=600, description="How long to wait for it to stop.")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait_s: float = Field(300, gt=0, le=900, description="How long to wait for it to be live.")


def _deployment(dep: DeploymentInfo) -> dict[str, Any]:
    return dep.to_dict() | {"url": dep.url}


def list_deployments(call: Call) -> list[dict[str, Any]]:
    from shipway.deploy.records import list_deployments

    return [_deployment(d) for d in list_deployments(client=call.client)]


def get_deployment(call: Call) -> dict[str, Any]:
    from shipway.deploy.records import get_deployment, latest_rollout

    env = call.path["environment"]
    dep = get_deployment(env, client=call.client)
    rollout = latest_rollout(env, client=call.client)
    return _deployment(dep) | {"rollout": rollout}


def deploy(call: Call) -> dict[str, Any]:
    from shipway.deploy.control import deploy

    body: DeployBody = call.body
    dep = deploy(
        body.uri,
        body.environment,
        replicas=body.replicas,
        port=body.port,
        runtime=body.runtime,
        wait_s=body.wait_s,
        client=call.client,
    )
    return _deployment(dep)


def stop(call: Call) -> dict[str, Any]:
    from shipway.deploy.control import down
    from shipway.deploy.records import get_deployment

    env = call.path["environment"]
    down(env, wait_s=call.body.wait_s, client=call.client)
    return _deployment(get_deployment(env, client=call.client))


def start(call: Call) -> dict[str, Any]:
    from shipway.deploy.control import up

    return _deployment(up(call.path["environment"], wait_s=call.body.wait_s, client=call.client))


def list_rollouts(call: Call) -> list[Any]:
    query = select(t.Rollout.state).order_by(t.Rollout.created_at.desc())
    if call.query["environment"] is not None:
        query = query.where(t.Rollout.environment == call.query["environment"])
    with call.client.store.read() as session:
        return list(session.scalars(query.limit(call.query["limit"])))


def get_rollout(call: Call) -> Any:
    with call.client.store.read() as session:
        row = session.get(t.Rollout, call.path["rollout_id"])
        if row is None:
            raise NotFoundError(f"Rollout '{call.path['rollout_id']}' not found.")
        return row.state


def start_rollout(call: Call) -> Any:
    from shipway.deploy.analysis import Checks
    from shipway.deploy.control import rollout_start
    from shipway.deploy.rollout import parse_steps
    from shipway.errors import InvalidInputError

    body: RolloutBody = call.body
    try:
        checks = Checks(**body.checks)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError(
            f"Unknown analysis checks: {', '.join(sorted(body.checks))}.",
            "Use max_error_rate, max_p99_ms, max_p99_ratio, p99_slack_ms, min_requests, "
            "max_score_shift.",
        ) from None
    return rollout_start(
        body.uri,
        call.path["environment"],
        steps=parse_steps(body.steps),
        interval_s=body.interval_s,
        failure_limit=body.failure_limit,
        checks=checks,
        client=call.client,
    )


def promote(call: Call) -> dict[str, Any]:
    from shipway.deploy.records import request_rollout

    request = "promote-full" if call.body.full else "promote"
    env = call.path["environment"]
    return {"rollout": request_rollout(env, request, client=call.client), "request": request}


def abort(call: Call) -> dict[str, Any]:
    from shipway.deploy.records import request_rollout

    env = call.path["environment"]
    return {"rollout": request_rollout(env, "abort", client=call.client), "request": "abort"}


def list_results(call: Call) -> list[dict[str, Any]]:
    """Summaries (the whole result is one GET away: distributions make it large)."""
    from shipway.monitoring.history import list_results

    results = list_results(call.query["model"], limit=call.query["limit"], client=call.client)
    return [
        {
            "id": r.id,
            "created_at": r.created_at,
            "model": r.model,
            "version": r.version,
            "reference": r.reference,
            "current": r.current,
            "drifted": r.drift.drifted,
            "drifted_columns": r.drift.drifted_columns,
            "worst": r.worst,
            "alerts": r.alerts,
        }
        for r in results
    ]


def get_result(call: Call) -> Any:
    from shipway.monitoring.history import get_result

    return get_result(call.path["result_id"], client=call.client)


_ENV = f"{API}/deployments/{{environment}}"
ENDPOINTS = [
    Endpoint(
        "GET", f"{API}/deployments", list_deployments, "List deployments", "deployments", "viewer"
    ),
    Endpoint(
        "POST",
        f"{API}/deployments",
        deploy,
        "Deploy a model version to an environment",
        "deployments",
        "developer",
        body=DeployBody,
        description="Starts it, or rolls the running version over to it, and waits until it "
        "is live. Environments with an approval policy need an approved request first.",
    ),
    Endpoint(
        "GET",
        _ENV,
        get_deployment,
        "Show a deployment and its latest rollout",
        "deployments",
        "viewer",
    ),
    Endpoint(
        "POST",
        f"{_ENV}/stop",
        stop,
        "Stop an environment",
        "deployments",
        "developer",
        body=StopBody,
        description="Its agent drains and stops the replicas and the gateway; the records "
        "stay, for `start`. Stopping puts no version anywhere, so it needs no approval.",
    ),
    Endpoint(
        "POST",
        f"{_ENV}/start",
        start,
        "Start a stopped environment again",
        "deployments",
        "developer",
        body=StartBody,
        description="Runs the version its records name (the one last deployed or promoted "
        "there) and waits until it is live. No new version goes anywhere, so, as locally, no "
        "approval is checked again.",
    ),
    Endpoint(
        "POST",
        f"{_ENV}/rollouts",
        start_rollout,
        "Start a canary rollout",
        "deployments",
        "developer",
        body=RolloutBody,
        status=201,
        description="Environments with an approval policy need an approved request for the "
        "canary version first.",
    ),
    Endpoint(
        "POST",
        f"{_ENV}/rollout/promote",
        promote,
        "Promote the running rollout",
        "deployments",
        "developer",
        body=PromoteBody,
    ),
    Endpoint(
        "POST",
        f"{_ENV}/rollout/abort",
        abort,
        "Abort the running rollout",
        "deployments",
        "developer",
    ),
    Endpoint(
        "GET",
        f"{API}/rollouts",
        list_rollouts,
        "List rollouts",
        "deployments",
        "viewer",
        query=(
            Param("environment", "Only this environment's rollouts."),
            Param("limit", "At most this many, newest first.", int, 50, 1, 1000),
        ),
    ),
    Endpoint(
        "GET",
        f"{API}/rollouts/{{rollout_id}}",
        get_rollout,
        "Show a rollout",
        "deployments",
        "viewer",
    ),
    Endpoint(
        "GET",
        f"{API}/monitoring/results",
        list_results,
        "List monitoring results",
        "monitoring",
        "viewer",
        query=(
            Param("model", "Only this model's results."),
            Param("limit", "At most this many, newest first.", int, 50, 1, 1000),
        ),
    ),
    Endpoint(
        "GET",
        f"{API}/monitoring/results/{{result_id}}",
        get_result,
        "Show a monitoring result",
        "monitoring",
        "viewer",
    ),
]
