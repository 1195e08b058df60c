"""Deployment and rollout records: the desired state commands write and the agent reports on.

Requests (deploy, rollout start/promote/abort, down) are audited changes. The agent's
heartbeats and replica details are reports, written without an audit event; a change of
status or of the live version is audited.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from shipway.client import Client, get_client
from shipway.deploy.rollout import ACTIVE, RolloutState
from shipway.errors import ConflictError, NotFoundError
from shipway.records import _Record
from shipway.store import tables as t
from shipway.store import utc, utcnow

__all__ = [
    "HEARTBEAT_STALE",
    "DeploymentInfo",
    "active_rollout",
    "get_deployment",
    "kubernetes_deployment",
    "list_deployments",
    "record_kubernetes",
    "request_rollout",
    "save_rollout",
    "start_rollout",
]

HEARTBEAT_STALE = timedelta(seconds=10)
"""An agent silent for longer than this is taken for dead."""


@dataclasses.dataclass(frozen=True)
class DeploymentInfo(_Record):
    environment: str
    model: str
    version: int
    live_version: int | None
    replicas: int
    host: str
    port: int
    runtime: str
    image: str | None
    status: str
    message: str | None
    agent_pid: int | None
    agent_alive: bool
    observed: dict[str, Any]
    since: datetime

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def _pid_alive(pid: int | None) -> bool:
    """Whether the agent process runs (a zombie, dead but not yet reaped, does not)."""
    if pid is None:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _info(row: t.Deployment) -> DeploymentInfo:
    fresh = row.heartbeat is not None and utcnow() - utc(row.heartbeat) < HEARTBEAT_STALE
    return DeploymentInfo(
        environment=row.environment,
        model=row.model,
        version=row.version,
        live_version=row.live_version,
        replicas=row.replicas,
        host=row.host,
        port=row.port,
        runtime=row.runtime,
        image=row.image,
        status=row.status,
        message=row.message,
        agent_pid=row.agent_pid,
        agent_alive=fresh and _pid_alive(row.agent_pid),
        observed=row.observed,
        since=utc(row.since),
    )


def get_deployment(environment: str, *, client: Client | None = None) -> DeploymentInfo:
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.get_deployment(environment, client=client)
    with client.store.read() as session:
        row = session.get(t.Deployment, environment)
        if row is None:
            existing = session.scalars(select(t.Deployment.environment)).all()
            raise NotFoundError.missing("environment", environment, existing)
        return _info(row)


def find_deployment(environment: str, *, client: Client | None = None) -> DeploymentInfo | None:
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.find_deployment(environment, client=client)
    with client.store.read() as session:
        row = session.get(t.Deployment, environment)
        return None if row is None else _info(row)


def list_deployments(*, client: Client | None = None) -> list[DeploymentInfo]:
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.list_deployments(client=client)
    with client.store.read() as session:
        rows = session.scalars(select(t.Deployment).order_by(t.Deployment.environment))
        return [_info(r) for r in rows]


def request_deployment(
    environment: str,
    *,
    model: str,
    version: int,
    replicas: int,
    host: str,
    port: int,
    runtime: str,
    image: str | None,
    client: Client | None = None,
) -> None:
    """Record what should run in ``environment`` (the agent makes it so)."""
    client = client or get_client()
    with client.write() as tx:
        row = tx.session.get(t.Deployment, environment)
        before = None
        now = utcnow()
        if row is None:
            row = t.Deployment(
                environment=environment,
                model=model,
                version=version,
                replicas=replicas,
                host=host,
                port=port,
                runtime=runtime,
                image=image,
                status="starting",
                message=None,
                live_version=None,
                agent_pid=None,
                heartbeat=None,
                observed={},
                created_by=client.actor,
                created_at=now,
                since=now,
            )
            tx.session.add(row)
        else:
            before = {"model": row.model, "version": row.version, "replicas": row.replicas}
            row.model, row.version, row.replicas = model, version, replicas
            row.host, row.port, row.runtime, row.image = host, port, runtime, image
            row.status = "updating" if row.status not in ("stopped", "failed") else "starting"
            row.message = None
        tx.audit(
            "deploy.request",
            f"environment:{environment}",
            before,
            {"model": model, "version": version, "replicas": replicas, "runtime": runtime},
        )


def report(
    environment: str,
    *,
    client: Client,
    status: str | None = None,
    message: str | None = None,
    live_version: int | None = None,
    agent_pid: int | None = None,
    observed: dict[str, Any] | None = None,
    revert_version: bool = False,
    set_version: int | None = None,
) -> None:
    """The agent's report. Status and live-version changes are audited; heartbeats are not."""
    with client.write() as tx:
        row = tx.session.get(t.Deployment, environment)
        if row is None:
            return
        changed: dict[str, Any] = {}
        if status is not None and status != row.status:
            changed["status"] = status
            row.status = status
        if status is not None:
            row.message = message
        if live_version is not None and live_version != row.live_version:
            changed["live_version"] = live_version
            row.live_version = live_version
            row.since = utcnow()
        if set_version is not None and set_version != row.version:
            changed["version"] = set_version  # a promoted canary is what should run now
            row.version = set_version
        if revert_version and row.live_version is not None and row.version != row.live_version:
            changed["version"] = row.live_version  # a failed update leaves the old one desired
            row.version = row.live_version
        if agent_pid is not None:
            row.agent_pid = agent_pid
        if observed is not None:
            row.observed = observed
        row.heartbeat = utcnow()
        if changed:
            tx.audit(
                "deploy.status", f"environment:{environment}", None, changed | {"message": message}
            )


def active_rollout(environment: str, *, client: Client | None = None) -> RolloutState | None:
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.active_rollout(environment, client=client)
    with client.store.read() as session:
        row = session.scalar(
            select(t.Rollout)
            .where(t.Rollout.environment == environment, t.Rollout.status.in_(ACTIVE))
            .order_by(t.Rollout.created_at.desc())
        )
        return None if row is None else RolloutState.model_validate(row.state)


def latest_rollout(environment: str, *, client: Client | None = None) -> RolloutState | None:
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.latest_rollout(environment, client=client)
    with client.store.read() as session:
        row = session.scalar(
            select(t.Rollout)
            .where(t.Rollout.environment == environment)
            .order_by(t.Rollout.created_at.desc())
        )
        return None if row is None else RolloutState.model_validate(row.state)


def start_rollout(state: RolloutState, *, client: Client | None = None) -> None:
    """Record a new rollout; refused while another one is active in the environment.

    Through a team server only a cluster canary's rollout is recorded so (the server's agents
    start their own): the server checks it starts from the recorded stable version and that
    the canary version is approved where the policy needs it."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.start_rollout(state, client=client)
    with client.write() as tx:
        running = tx.session.scalar(
            select(t.Rollout).where(
                t.Rollout.environment == state.environment, t.Rollout.status.in_(ACTIVE)
            )
        )
        if running is not None:
            current = RolloutState.model_validate(running.state)
            raise ConflictError(
                f"Rollout {current.id} of version {current.canary_version} is {current.status} "
                f"in {state.environment} (step {current.step_index + 1} of "
                f"{len(current.steps)}, canary at {current.weight:g}%).",
                f"Wait for it, or `shipway rollout abort --env {state.environment}` / `promote`.",
            )
        now = utcnow()
        tx.session.add(
            t.Rollout(
                id=state.id,
                environment=state.environment,
                status=state.status,
                request=None,
                state=state.model_dump(mode="json"),
                created_by=client.actor,
                created_at=now,
                updated_at=now,
            )
        )
        tx.audit(
            "rollout.start",
            f"environment:{state.environment}",
            {"version": state.stable_version},
            {"rollout": state.id, "version": state.canary_version, "steps": state.steps},
        )


def save_rollout(
    state: RolloutState, *, client: Client, previous: RolloutState | None = None
) -> None:
    """Store the controller's state; a new status or step is an audit event."""
    if client.remote:
        from shipway.remote import operations as remote

        return remote.save_rollout(state, previous, client=client)
    with client.write() as tx:
        row = tx.session.get_one(t.Rollout, state.id)
        row.state = state.model_dump(mode="json")
        row.status = state.status
        row.updated_at = utcnow()
        if state.status not in ACTIVE:
            row.request = None
        moved = previous is None or (previous.status, previous.step_index) != (
            state.status,
            state.step_index,
        )
        if moved:
            tx.audit(
                f"rollout.{state.status}",
                f"environment:{state.environment}",
                None
                if previous is None
                else {"status": previous.status, "weight": previous.weight},
                {
                    "rollout": state.id,
                    "status": state.status,
                    "step": state.step_index,
                    "weight": state.weight,
                    "reason": state.reason,
                },
            )


def request_rollout(environment: str, request: str, *, client: Client | None = None) -> str:
    """Ask the agent to ``promote``, ``promote-full`` or ``abort`` the active rollout; its id."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.request_rollout(environment, request, client=client)
    with client.write() as tx:
        row = tx.session.scalar(
            select(t.Rollout)
            .where(t.Rollout.environment == environment, t.Rollout.status.in_(ACTIVE))
            .order_by(t.Rollout.created_at.desc())
        )
        if row is None:
            raise ConflictError(f"No rollout is running in {environment}.")
        row.request = request
        tx.audit(f"rollout.request.{request}", f"environment:{environment}", None, {"id": row.id})
        return row.id


def take_request(rollout_id: str, *, client: Client) -> str | None:
    """The pending request of a rollout, cleared as it is taken (by the agent)."""
    if client.remote:
        from shipway.remote import operations as remote

        return remote.take_request(rollout_id, client=client)
    with client.store.read() as session:  # the common case, without the write lock
        if session.scalar(select(t.Rollout.request).where(t.Rollout.id == rollout_id)) is None:
            return None
    with client.write() as tx:
        row = tx.session.get(t.Rollout, rollout_id)
        if row is None or row.request is None:
            return None
        request, row.request = row.request, None
        return request


def request_stop(environment: str, *, client: Client) -> None:
    """Audit the stop of a running environment as whoever asks for it (its agent, stopping,
    reports the stop itself as `deploy.stop`)."""
    with client.write() as tx:
        row = tx.session.get(t.Deployment, environment)
        if row is not None:
            tx.audit("deploy.request.stop", f"environment:{environment}", {"status": row.status})


def mark_stopped(environment: str, *, client: Client) -> None:
    with client.write() as tx:
        row = tx.session.get(t.Deployment, environment)
        if row is not None and row.status != "stopped":
            tx.audit("deploy.stop", f"environment:{environment}", {"status": row.status}, None)
            row.status = "stopped"
            row.agent_pid = None
            row.observed = {}


# ----------------------------------------------------------------------------------------------
# Kubernetes deployments (`shipway k8s apply`): the same table, runtime "kubernetes", written
# only once the cluster reports the rollout done. `host` is the kubeconfig context, `port` the
# Service port; the context, namespace and image digest are in `observed`.


def record_kubernetes(
    environment: str,
    *,
    model: str,
    version: int,
    replicas: int,
    context: str,
    namespace: str,
    port: int,
    image: str,
    observed: dict[str, Any],
    event: str,
    client: Client | None = None,
) -> DeploymentInfo:
    """Record what now runs in ``environment`` on a cluster, with the audit event ``event``
    (``k8s.apply``, ``k8s.rollback``, ``k8s.promote``).

    Through a team server the record is the server's to write: it checks first what it can
    of what the caller did on the cluster (see :mod:`shipway.deploy.kubernetes.admission`)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        fields = {"model": model, "version": version, "replicas": replicas,
                  "context": context, "namespace": namespace, "port": port, "image": image,
                  "observed": observed, "event": event}  # fmt: skip
        return remote.record_kubernetes(environment, fields, client=client)
    with client.write() as tx:
        row = tx.session.get(t.Deployment, environment)
        now = utcnow()
        before = None
        if row is None:
            row = t.Deployment(
                environment=environment, model=model, version=version, replicas=replicas,
                host=context, port=port, runtime="kubernetes", image=image, status="running",
                message=None, live_version=version, agent_pid=None, heartbeat=None,
                observed=observed, created_by=client.actor, created_at=now, since=now,
            )  # fmt: skip
            tx.session.add(row)
        else:
            before = {"model": row.model, "version": row.version, "runtime": row.runtime,
                      "image": row.image, "context": row.host,
                      "namespace": row.observed.get("namespace")}  # fmt: skip
            if row.live_version != version:
                row.since = now
            row.model, row.version, row.replicas = model, version, replicas
            row.live_version = version
            row.host, row.port, row.runtime, row.image = context, port, "kubernetes", image
            row.status, row.message, row.agent_pid, row.heartbeat = "running", None, None, None
            row.observed = observed
        tx.audit(
            event,
            f"environment:{environment}",
            before,
            {"model": model, "version": version, "context": context, "namespace": namespace,
             "image": image, "digest": observed.get("digest")},
        )  # fmt: skip
    return get_deployment(environment, client=client)


def kubernetes_deployment(environment: str, *, client: Client | None = None) -> DeploymentInfo:
    """The recorded Kubernetes deployment of ``environment``; ConflictError if it runs here."""
    found = get_deployment(environment, client=client)
    if found.runtime != "kubernetes":
        raise ConflictError(
            f"{environment} is a {found.runtime} deployment on this machine, not on Kubernetes.",
            f"See `shipway deployments show {environment}`.",
        )
    return found
