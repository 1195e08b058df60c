"""Deployments, rollouts and monitoring results over the API.

A deployment or a rollout asked for here runs on the server's machine, through the same
`shipway.deploy.control` code the CLI uses (the agent it starts outlives the request).
Environments with an approval policy need an approved request for the version first; that
check lives in the deploy code itself, so the CLI and the API cannot disagree.

A monitoring job asked for here runs on the server too: the prediction log and the reference
profiles it reads are the server's. Files the caller monitors are uploaded as blobs first and
named by digest; the job reads them under the caller's own name for them, so the stored result
(and any error) names them as the caller knows them.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from shipway.deploy.records import DeploymentInfo
from shipway.deploy.rollout import RolloutState
from shipway.errors import InvalidInputError, NotFoundError, ShipwayError
from shipway.monitoring.drift import Method
from shipway.monitoring.result import MonitorResult
from shipway.server._paging import OFFSET
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


class ApprovalCheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)


class KubernetesRecordBody(BaseModel):
    """What `shipway k8s apply|rollback` (or a promoted cluster canary) put on a cluster."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    replicas: int = Field(ge=0)
    context: str = Field(min_length=1, max_length=300, description="The kubeconfig context.")
    namespace: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535, description="The Service port.")
    image: str = Field(max_length=1000, description="The image reference, by digest if pushed.")
    observed: dict[str, Any] = Field(
        {}, description="What the cluster reported (app, revision, replicas, render options)."
    )
    event: Literal["k8s.apply", "k8s.rollback", "k8s.promote"] = "k8s.apply"


class RolloutRecordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: RolloutState


class RolloutStateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: RolloutState
    previous: RolloutState | None = Field(
        None, description="The state it follows; a new status or step is audited."
    )


class TableFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digest: str = Field(description="The file's blob (CSV, TSV or Parquet), uploaded first.")
    name: str = Field(
        min_length=1,
        max_length=1000,
        description="Its name on the caller's side: its suffix tells the format, and the "
        "result and errors show it.",
    )


class MonitorRunBody(BaseModel):
    """A `MonitorSpec`: a model (reference = its training data) or a reference file, and a
    window of the model's prediction log or a current file."""

    model_config = ConfigDict(extra="forbid")
    model_uri: str | None = Field(None, description="models:/NAME/VERSION or models:/NAME@ALIAS")
    reference: TableFile | None = None
    current: TableFile | None = None
    window_s: float | None = Field(None, gt=0, description="Current = the last this many seconds.")
    since: datetime | None = Field(None, description="Current = predictions since then.")
    rows: int | None = Field(None, ge=1, description="Current = at most the latest N rows.")
    target: str | None = None
    prediction: str | None = None
    scores: list[str] = []
    time: str | None = None
    sensitive: str | None = None
    segments: list[str] = []
    task: Literal["classification", "regression"] | None = None
    positive_label: str | int | float | bool | None = None
    share: float = Field(0.5, gt=0, le=1, description="Dataset drift at this share drifted.")
    performance_drop: float = Field(0.1, ge=0)
    fairness_ratio: float = Field(0.8, gt=0, le=1)
    drift: dict[str, float | int] = Field({}, description="Drift test thresholds by name.")
    quality: dict[str, float] = Field({}, description="Data quality thresholds by name.")
    methods: dict[str, Method] = Field({}, description="Drift test per column.")
    freq: str | None = Field(None, description="Bucket metrics over time by this (1h, 1d).")
    store: bool = Field(True, description="Keep the result (false: only return it).")


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
    q = call.query
    query = select(t.Rollout.state).order_by(t.Rollout.created_at.desc(), t.Rollout.id.desc())
    if q["environment"] is not None:
        query = query.where(t.Rollout.environment == q["environment"])
    with call.client.store.read() as session:
        return list(session.scalars(query.offset(q["offset"]).limit(q["limit"])))


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


def check_approval(call: Call) -> Any:
    from shipway.governance.approvals import check_approved

    body: ApprovalCheckBody = call.body
    env = call.path["environment"]
    return check_approved(env, body.model, body.version, client=call.client)


def record_kubernetes(call: Call) -> dict[str, Any]:
    from shipway.deploy.kubernetes.admission import admit_record
    from shipway.deploy.records import record_kubernetes

    body: KubernetesRecordBody = call.body
    env = call.path["environment"]
    admit_record(env, body.model, body.version, body.event, call.client)
    fields = body.model_dump()
    return _deployment(record_kubernetes(env, **fields, client=call.client))


def active_rollout(call: Call) -> RolloutState | None:
    from shipway.deploy.records import active_rollout

    return active_rollout(call.path["environment"], client=call.client)


def record_rollout(call: Call) -> RolloutState:
    from shipway.deploy.kubernetes.admission import admit_rollout
    from shipway.deploy.records import start_rollout

    state: RolloutState = call.body.state
    admit_rollout(state, call.client)
    start_rollout(state, client=call.client)
    return state


def save_rollout(call: Call) -> RolloutState:
    from shipway.deploy.kubernetes.admission import admit_rollout_change
    from shipway.deploy.records import save_rollout

    body: RolloutStateBody = call.body
    admit_rollout_change(call.path["rollout_id"], body.state, call.client)
    save_rollout(body.state, client=call.client, previous=body.previous)
    return body.state


def take_request(call: Call) -> dict[str, Any]:
    from shipway.deploy.kubernetes.admission import admit_rollout_change
    from shipway.deploy.records import take_request

    rollout_id = call.path["rollout_id"]
    admit_rollout_change(rollout_id, None, call.client)
    return {"rollout": rollout_id, "request": take_request(rollout_id, client=call.client)}


def list_results(call: Call) -> list[dict[str, Any]]:
    """Summaries (the whole result is one GET away: distributions make it large), newest
    first, ties by id."""
    q = call.query
    query = select(t.MonitorRun.result).order_by(
        t.MonitorRun.created_at.desc(), t.MonitorRun.id.desc()
    )
    if q["model"] is not None:
        query = query.where(t.MonitorRun.model == q["model"])
    with call.client.store.read() as session:
        found = session.scalars(query.offset(q["offset"]).limit(q["limit"])).all()
    results = [MonitorResult.from_dict(r) for r in found]
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


def _thresholds(kind: type[Any], given: dict[str, Any], what: str) -> Any:
    try:
        return kind(**given)
    except TypeError:
        known = ", ".join(f.name for f in fields(kind))
        raise InvalidInputError(
            f"Unknown {what} thresholds: {', '.join(sorted(given))}.", f"Use {known}."
        ) from None


def _table(call: Call, given: TableFile, into: Path, role: str) -> Path:
    """The uploaded blob as a file whose suffix is the caller's (read_table goes by it)."""
    from shipway.server.artifacts import DIGEST

    if not DIGEST.fullmatch(given.digest):
        raise InvalidInputError(f"'{given.digest}' is not a SHA-256 digest.")
    if not call.client.artifacts.exists(given.digest):
        raise InvalidInputError(
            f"The {role} file {given.name} (blob {given.digest[:12]}...) is not uploaded.",
            "PUT it to /api/v1/artifacts/{sha256} first.",
        )
    suffix = "".join(Path(given.name).suffixes[-2:])
    path = into / (role + re.sub(r"[^A-Za-z0-9.]", "", suffix))
    return call.client.artifacts.download(given.digest, path)


def run_monitor(call: Call) -> MonitorResult:
    from shipway.monitoring.drift import DriftThresholds
    from shipway.monitoring.history import save_result
    from shipway.monitoring.job import MonitorSpec, run_job
    from shipway.monitoring.monitor import AlertPolicy, Roles
    from shipway.monitoring.quality import QualityThresholds

    body: MonitorRunBody = call.body
    policy = AlertPolicy(
        drift=_thresholds(DriftThresholds, body.drift, "drift"),
        quality=_thresholds(QualityThresholds, body.quality, "quality"),
        share=body.share,
        methods=body.methods,
        performance_drop=body.performance_drop,
        fairness_ratio=body.fairness_ratio,
    )
    roles = Roles(
        target=body.target,
        prediction=body.prediction,
        scores=tuple(body.scores),
        time=body.time,
        sensitive=body.sensitive,
        segments=tuple(body.segments),
        task=body.task,
        positive_label=body.positive_label,
    )
    with tempfile.TemporaryDirectory(prefix="shipway-monitor-") as tmp:
        given = {role: f for role in ("reference", "current") if (f := getattr(body, role))}
        files = {role: _table(call, f, Path(tmp), role) for role, f in given.items()}
        names = {str(files[role]): f.name for role, f in given.items()}
        spec = MonitorSpec(
            model_uri=body.model_uri,
            reference=files.get("reference"),
            current=files.get("current"),
            window=None if body.window_s is None else timedelta(seconds=body.window_s),
            since=body.since,
            rows=body.rows,
            roles=roles,
            policy=policy,
            freq=body.freq,
            store=False,
        )
        try:
            result = run_job(spec, client=call.client)
        except ShipwayError as exc:
            raise type(exc)(_renamed(exc.message, names), exc.hint) from None
    update = {
        side: source.model_copy(update={"description": names[source.description]})
        for side, source in (("reference", result.reference), ("current", result.current))
        if source.kind == "file" and source.description in names
    }
    result = result.model_copy(update=update)
    if body.store:
        save_result(result, client=call.client)
    return result


def _renamed(message: str, names: dict[str, str]) -> str:
    for path, name in names.items():
        message = message.replace(path, name)
    return message


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
            OFFSET,
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
        "POST",
        f"{_ENV}/approval/check",
        check_approval,
        "Check that a version may go to an environment",
        "deployments",
        "developer",
        body=ApprovalCheckBody,
        description="The valid approval of exactly this version (null when the environment's "
        "policy needs none), or 403 saying what to request. Asked right before a version is "
        "deployed (`shipway k8s apply` asks before it touches the cluster), so it needs the "
        "role that deploys.",
    ),
    Endpoint(
        "POST",
        f"{_ENV}/kubernetes",
        record_kubernetes,
        "Record a Kubernetes deployment",
        "deployments",
        "developer",
        body=KubernetesRecordBody,
        description="What a client applied to a cluster from its own machine (`shipway k8s "
        "apply`, `rollback`, a promoted cluster canary), audited as the caller. The server "
        "cannot see the cluster, so it checks its store first: an environment with an "
        "approval policy takes only an approved version (a rollback to a version that ran "
        "there, or the promotion of the approved canary, need none again); no deployment of "
        "another model or on the server's machine, no rollout in progress. Moves nothing "
        "else: set the environment's alias separately.",
    ),
    Endpoint(
        "GET",
        f"{_ENV}/rollouts/active",
        active_rollout,
        "Show the running or paused rollout of an environment",
        "deployments",
        "viewer",
        returns=RolloutState | None,
        description="null when none is running or paused.",
    ),
    Endpoint(
        "POST",
        f"{API}/rollouts",
        record_rollout,
        "Record a cluster canary rollout",
        "deployments",
        "developer",
        body=RolloutRecordBody,
        status=201,
        returns=RolloutState,
        description="The state of a canary a client started on a cluster (`shipway k8s "
        "rollout start`) next to the environment's recorded Kubernetes deployment. Its stable "
        "version must be the recorded one, and environments with an approval policy need an "
        "approved request for the canary version. Refused while another rollout is active.",
    ),
    Endpoint(
        "POST",
        f"{API}/rollouts/{{rollout_id}}/state",
        save_rollout,
        "Save a cluster canary rollout's new state",
        "deployments",
        "developer",
        body=RolloutStateBody,
        returns=RolloutState,
        description="A new status or step is audited. Only an active cluster canary's state, "
        "keeping its id, environment and versions (a rollout on the server's machine is its "
        "agent's).",
    ),
    Endpoint(
        "POST",
        f"{API}/rollouts/{{rollout_id}}/take-request",
        take_request,
        "Take a cluster canary rollout's pending request",
        "deployments",
        "developer",
        description="The promote or abort asked for since (null if none), cleared as it is "
        "taken, so one follower acts on it once.",
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
            OFFSET,
        ),
    ),
    Endpoint(
        "POST",
        f"{API}/monitoring/runs",
        run_monitor,
        "Run a monitoring job",
        "monitoring",
        "developer",
        body=MonitorRunBody,
        status=201,
        returns=MonitorResult,
        description="Runs on the server, where the prediction log and reference profiles are: "
        "a model's training data against a window of its prediction log (or a current file), "
        "or a reference file against a current file. Upload files to /api/v1/artifacts first "
        "and name them by digest. Returns the result, stored unless `store` is false.",
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
