"""What the team server admits from a client that drives a cluster itself.

`shipway k8s apply|rollback|rollout` reach the cluster from the caller's machine (its
kubeconfig); through a team server only their records go through the server. The server
cannot see the cluster, so it cannot take the caller's word for what was approved: before it
writes a Kubernetes deployment or a cluster canary's record it checks here, on its own store,
what the local code checked before touching the cluster (the same `check_approved`), and
that the record continues what the store already says (a rollback goes back to a version that
ran there, a promotion follows the canary that was approved, a rollout's state keeps its
versions).

Locally these checks are redundant with the ones `apply`, `rollback` and `rollouts.start`
make before any API call, and are not run: the action that got there was checked already.
"""

from __future__ import annotations

from sqlalchemy import select

from shipway.client import Client
from shipway.deploy import records
from shipway.deploy.kubernetes.apply import check_record
from shipway.deploy.rollout import RolloutState
from shipway.errors import ConflictError, NotFoundError
from shipway.governance.approvals import check_approved
from shipway.store import tables as t

__all__ = ["EVENTS", "admit_record", "admit_rollout", "admit_rollout_change"]

EVENTS = ("k8s.apply", "k8s.rollback", "k8s.promote")
"""The audit events a Kubernetes deployment is recorded with."""
_FIXED = ("id", "environment", "model", "stable_version", "canary_version")
"""What a rollout's saved states may not change."""


def admit_record(environment: str, model: str, version: int, event: str, client: Client) -> None:
    """Refuse recording ``model`` ``version`` as what runs in ``environment`` (with ``event``)
    unless the store allows it: an approval where the policy needs one (not asked again of a
    rollback to a version that ran there, nor of the promotion of an approved canary), no
    deployment of another model or on the server's machine, no rollout in progress."""
    check_record(environment, model, client, machine="the server's machine, not on a cluster")
    if event == "k8s.rollback" and _ran_there(environment, model, version, client):
        return
    if event == "k8s.promote":
        last = records.latest_rollout(environment, client=client)
        if last is not None and (last.status, last.model, last.canary_version) == (
            "promoted",
            model,
            version,
        ):
            return
    check_approved(environment, model, version, client=client)


def _ran_there(environment: str, model: str, version: int, client: Client) -> bool:
    """Whether ``version`` was recorded as running in ``environment`` before."""
    query = select(t.AuditEvent.after).where(
        t.AuditEvent.subject == f"environment:{environment}",
        t.AuditEvent.action.in_(EVENTS),
    )
    with client.store.read() as session:
        return any(
            after is not None and (after.get("model"), after.get("version")) == (model, version)
            for after in session.scalars(query)
        )


def admit_rollout(state: RolloutState, client: Client) -> None:
    """Refuse a new cluster canary unless it starts from the environment's recorded stable
    version, on a cluster, with the canary version approved where the policy needs it."""
    environment = state.environment
    dep = records.kubernetes_deployment(environment, client=client)
    if dep.status != "running" or dep.image is None:
        raise ConflictError(
            f"{environment} is {dep.status} on the cluster; nothing stable to compare with.",
            f"Apply a version first: `shipway k8s apply URI --env {environment}`.",
        )
    if (state.model, state.stable_version) != (dep.model, dep.version):
        raise ConflictError(
            f"{environment} runs models:/{dep.model}/{dep.version}, not "
            f"models:/{state.model}/{state.stable_version}: the rollout's stable version.",
            f"See `shipway k8s status --env {environment}`, and start the rollout again.",
        )
    if not state.active:
        raise ConflictError(f"Rollout {state.id} is {state.status}: there is nothing to start.")
    check_approved(environment, state.model, state.canary_version, client=client)


def admit_rollout_change(rollout_id: str, state: RolloutState | None, client: Client) -> None:
    """Refuse a change to the rollout ``rollout_id`` (a new ``state``, or taking its request)
    unless it is an active cluster canary and ``state`` keeps its id, environment and versions.
    The rollouts of environments on the server's machine are their agents' alone."""
    with client.store.read() as session:
        row = session.get(t.Rollout, rollout_id)
        if row is None:
            raise NotFoundError(f"Rollout '{rollout_id}' not found.")
        stored = RolloutState.model_validate(row.state)
    dep = records.find_deployment(stored.environment, client=client)
    if dep is None or dep.runtime != "kubernetes":
        raise ConflictError(
            f"Rollout {rollout_id} runs in {stored.environment} on the server's machine; its "
            "agent drives it.",
            f"Use `shipway rollout promote|abort --env {stored.environment}`.",
        )
    if not stored.active:
        raise ConflictError(f"Rollout {rollout_id} is {stored.status} already; it is over.")
    if state is None:
        return
    changed = [k for k in _FIXED if getattr(state, k) != getattr(stored, k)]
    if changed:
        raise ConflictError(
            f"A state of rollout {rollout_id} cannot change its {', '.join(changed)}.",
            "Start a new rollout for another version.",
        )
