"""Monitoring results, deployments and rollouts through the team server.

The server lists monitoring results as summaries (a whole result carries its distributions),
so `list_results` fetches each one it lists. Deployments and rollouts are the server's: their
agents run on its machine, and whether an agent is alive is what the server sees. An action
waits there (a deploy until the version is live), so its request waits as long, plus a margin.
What the API cannot carry (the interface a gateway listens on, an explicit image) is refused
here rather than dropped: the server would run something else than what was asked.

Kubernetes deployments and cluster canaries are the exception: the caller drives the cluster
from its own machine, and only their records (and the approval check made before the cluster
is touched) go through the server, which checks them against its store before it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from shipway.client import Client
from shipway.deploy.analysis import Checks
from shipway.deploy.records import DeploymentInfo
from shipway.deploy.rollout import RolloutState, Step
from shipway.errors import InvalidInputError, NotFoundError
from shipway.governance.approvals import ApprovalInfo
from shipway.monitoring.result import MonitorResult
from shipway.remote._http import segment
from shipway.remote.governance import approval
from shipway.remote.tracking import api_of

_DEPLOYMENT = [f.name for f in fields(DeploymentInfo)]
SERVER_HOST = "127.0.0.1"
"""The interface the server's deployments listen on (the API has no field for another)."""
MARGIN_S = 30.0
"""How much longer than the server waits a request that waits there may take."""
_ROLLOUT_REQUESTS = {"promote": "promote", "promote-full": "promote", "abort": "abort"}


def get_result(result_id: str, *, client: Client) -> MonitorResult:
    data = api_of(client).get(f"/monitoring/results/{segment(result_id)}")
    return MonitorResult.from_dict(data)


def list_results(model: str | None, *, limit: int, client: Client) -> list[MonitorResult]:
    found = api_of(client).get_list("/monitoring/results", max(1, limit), _id, model=model)
    return [get_result(r["id"], client=client) for r in found]


def latest_results(*, client: Client) -> list[MonitorResult]:
    """The newest result of each model (model-less runs count as one model), by model name:
    the summaries are read page by page, newest first, and only each model's first one is
    fetched whole."""
    summaries = api_of(client).get_list("/monitoring/results", None, _id)
    newest: dict[str | None, str] = {}
    for summary in summaries:
        newest.setdefault(summary["model"], summary["id"])
    ordered = sorted(newest.items(), key=lambda item: (item[0] is not None, item[0] or ""))
    return [get_result(result_id, client=client) for _, result_id in ordered]


def _id(entry: dict[str, Any]) -> Any:
    return entry["id"]


def deployment(d: dict[str, Any]) -> DeploymentInfo:
    known = {k: d[k] for k in _DEPLOYMENT}
    return DeploymentInfo(**known | {"since": datetime.fromisoformat(d["since"])})


def list_deployments(*, client: Client) -> list[DeploymentInfo]:
    return [deployment(d) for d in api_of(client).get("/deployments")]


def get_deployment(environment: str, *, client: Client) -> DeploymentInfo:
    return deployment(api_of(client).get(f"/deployments/{segment(environment)}"))


def find_deployment(environment: str, *, client: Client) -> DeploymentInfo | None:
    try:
        return get_deployment(environment, client=client)
    except NotFoundError:
        return None


def record_kubernetes(
    environment: str, fields: dict[str, Any], *, client: Client
) -> DeploymentInfo:
    path = f"/deployments/{segment(environment)}/kubernetes"
    return deployment(api_of(client).post(path, fields))


def check_approved(
    environment: str, model: str, version: int, *, client: Client
) -> ApprovalInfo | None:
    path = f"/deployments/{segment(environment)}/approval/check"
    found = api_of(client).post(path, {"model": model, "version": version})
    return None if found is None else approval(found)


def active_rollout(environment: str, *, client: Client) -> RolloutState | None:
    found = api_of(client).get(f"/deployments/{segment(environment)}/rollouts/active")
    return None if found is None else RolloutState.model_validate(found)


def start_rollout(state: RolloutState, *, client: Client) -> None:
    api_of(client).post("/rollouts", {"state": state.model_dump(mode="json")})


def save_rollout(state: RolloutState, previous: RolloutState | None, *, client: Client) -> None:
    body = {
        "state": state.model_dump(mode="json"),
        "previous": None if previous is None else previous.model_dump(mode="json"),
    }
    api_of(client).post(f"/rollouts/{segment(state.id)}/state", body)


def take_request(rollout_id: str, *, client: Client) -> str | None:
    found = api_of(client).post(f"/rollouts/{segment(rollout_id)}/take-request")
    return None if found["request"] is None else str(found["request"])


def latest_rollout(environment: str, *, client: Client) -> RolloutState | None:
    found = api_of(client).get("/rollouts", environment=environment, limit=1)
    return RolloutState.model_validate(found[0]) if found else None


def deploy(
    uri: str,
    environment: str,
    *,
    replicas: int | None,
    port: int | None,
    host: str,
    runtime: str,
    image: str | None,
    wait_s: float,
    client: Client,
    progress: Callable[[str], None],
) -> DeploymentInfo:
    if host != SERVER_HOST:
        raise InvalidInputError(
            f"A deployment through the team server listens on {SERVER_HOST} of the server's "
            f"machine; it cannot listen on {host}.",
            "Deploy without --host (host=), or unset SHIPWAY_TRACKING_URI to deploy on this "
            "machine.",
        )
    if image is not None:
        raise InvalidInputError(
            f"The team server runs the latest inference image built for {uri}; it cannot run "
            f"the image {image}.",
            "Deploy without image= (build the image you want for this version first), or "
            "unset SHIPWAY_TRACKING_URI to deploy on this machine.",
        )
    body = {
        "uri": uri,
        "environment": environment,
        "replicas": replicas,
        "port": port,
        "runtime": runtime,
        "wait_s": wait_s,
    }
    dep = deployment(api_of(client).post("/deployments", body, timeout=wait_s + MARGIN_S))
    if dep.message:
        progress(dep.message)
    return dep


def up(environment: str, *, wait_s: float, client: Client) -> DeploymentInfo:
    path = f"/deployments/{segment(environment)}/start"
    return deployment(api_of(client).post(path, {"wait_s": wait_s}, timeout=wait_s + MARGIN_S))


def down(environment: str, *, wait_s: float, client: Client) -> None:
    path = f"/deployments/{segment(environment)}/stop"
    api_of(client).post(path, {"wait_s": wait_s}, timeout=wait_s + MARGIN_S)


def rollout_start(
    uri: str,
    environment: str,
    *,
    steps: Sequence[Step],
    interval_s: float,
    failure_limit: int,
    checks: Checks | None,
    client: Client,
) -> RolloutState:
    body = {
        "uri": uri,
        "steps": ",".join(str(s) for s in steps),
        "interval_s": interval_s,
        "failure_limit": failure_limit,
        "checks": {} if checks is None else asdict(checks),
    }
    found = api_of(client).post(f"/deployments/{segment(environment)}/rollouts", body)
    return RolloutState.model_validate(found)


def request_rollout(environment: str, request: str, *, client: Client) -> str:
    if request not in _ROLLOUT_REQUESTS:
        raise InvalidInputError(
            f"Unknown rollout request '{request}'.", "Use promote, promote-full or abort."
        )
    path = f"/deployments/{segment(environment)}/rollout/{_ROLLOUT_REQUESTS[request]}"
    body = {"full": True} if request == "promote-full" else {}
    return str(api_of(client).post(path, body)["rollout"])
