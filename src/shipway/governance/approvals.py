"""Approval policies per environment, approval requests and their decisions.

An environment's policy says what a model version needs before it goes there: ``manual``
(another person approves it), ``automatic`` (rules over the registry and monitoring decide at
once, see :mod:`shipway.governance.approval_rules`) or ``none``. ``production`` needs a manual
approval until its policy is set otherwise; every other environment needs none.

An approval is bound to one model version in one environment. It is valid for the policy's
``ttl_hours`` after it was given; a request nobody decides expires as long after it was made.
Four eyes: whoever decides a request must not be whoever made it. Locally the actor is the
OS user (or ``SHIPWAY_ACTOR``) and no role is checked here: roles are enforced by the team
server. Approvals are enforced everywhere, through :func:`check_approved`, before an
environment's alias moves and before a deployment or rollout starts there.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipway.client import Client, get_client
from shipway.errors import (
    ApprovalRequiredError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from shipway.governance.approval_rules import Rule, check_rules, describe, evaluate
from shipway.records import _Record
from shipway.registry.registry import get_model_version
from shipway.store import tables as t
from shipway.store import utc, utcnow

__all__ = [
    "DEFAULT_POLICIES",
    "ApprovalInfo",
    "Mode",
    "Policy",
    "Rule",
    "Status",
    "approve",
    "check_approved",
    "get_policy",
    "list_approvals",
    "list_policies",
    "reject",
    "request_approval",
    "set_policy",
]

Mode = Literal["manual", "automatic", "none"]
Status = Literal["pending", "approved", "rejected", "expired"]

ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclasses.dataclass(frozen=True)
class Policy(_Record):
    """What ``environment`` requires; ``updated_by`` is None for a built-in default."""

    environment: str
    mode: Mode
    rules: list[Rule]
    ttl_hours: float = 72
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        """How an automatic decision names the policy that made it."""
        rules = "; ".join(describe(r) for r in self.rules)
        return f"{self.environment} {self.mode}" + (f": {rules}" if rules else "")


DEFAULT_POLICIES: dict[str, Policy] = {"production": Policy("production", "manual", [])}


@dataclasses.dataclass(frozen=True)
class ApprovalInfo(_Record):
    """A request to bring one model version into one environment, and its decision.

    ``status`` is ``expired`` once ``expires_at`` has passed for a pending or approved one.
    """

    id: str
    environment: str
    model: str
    version: int
    status: Status
    requested_by: str
    requested_at: datetime
    comment: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str | None
    policy: str | None
    evidence: dict[str, Any]
    expires_at: datetime | None

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


def _info(row: t.Approval, now: datetime) -> ApprovalInfo:
    expires = utc(row.expires_at) if row.expires_at else None
    status = row.status
    if status in ("pending", "approved") and expires is not None and expires <= now:
        status = "expired"
    return ApprovalInfo(
        id=row.id,
        environment=row.environment,
        model=row.model,
        version=row.version,
        status=status,  # type: ignore[arg-type]
        requested_by=row.requested_by,
        requested_at=utc(row.requested_at),
        comment=row.comment,
        decided_by=row.decided_by,
        decided_at=utc(row.decided_at) if row.decided_at else None,
        decision_comment=row.decision_comment,
        policy=row.policy,
        evidence=row.evidence,
        expires_at=expires,
    )


# -- policies ---------------------------------------------------------------------------------


def _check_environment(environment: str) -> str:
    if not ENVIRONMENT.fullmatch(environment):
        raise InvalidInputError(
            f"'{environment}' is not a valid environment name.",
            "Use letters, digits, '_', '-' and '.', e.g. staging or production.",
        )
    return environment


def _policy(session: Session, environment: str) -> Policy:
    row = session.get(t.ApprovalPolicy, environment)
    if row is None:
        return DEFAULT_POLICIES.get(environment, Policy(environment, "none", []))
    return Policy(
        row.environment,
        row.mode,  # type: ignore[arg-type]
        list(row.rules),
        row.ttl_hours,
        row.updated_by,
        utc(row.updated_at),
    )


def get_policy(environment: str, *, client: Client | None = None) -> Policy:
    """The policy in force for ``environment`` (its default when none was set)."""
    client = client or get_client()
    if client.remote:  # the server lists every policy set and the defaults not overridden
        listed = {p.environment: p for p in list_policies(client=client)}
        return listed.get(environment) or Policy(environment, "none", [])
    with client.store.read() as session:
        return _policy(session, environment)


def list_policies(*, client: Client | None = None) -> list[Policy]:
    """Every policy set, and the defaults not overridden, by environment."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import governance as remote

        return remote.list_policies(client=client)
    with client.store.read() as session:
        names = set(session.scalars(select(t.ApprovalPolicy.environment))) | set(DEFAULT_POLICIES)
        return [_policy(session, name) for name in sorted(names)]


def set_policy(
    environment: str,
    mode: str,
    rules: Sequence[Rule] = (),
    ttl_hours: float = 72,
    *,
    client: Client | None = None,
) -> Policy:
    """Set what ``environment`` requires. ``rules`` go with ``automatic`` mode only."""
    client = client or get_client()
    _check_environment(environment)
    if mode not in get_args(Mode):
        raise InvalidInputError(
            f"Unknown approval mode '{mode}'.", "Use manual, automatic or none."
        )
    checked = check_rules(rules)
    if mode == "automatic" and not checked:
        raise InvalidInputError(
            "An automatic policy needs at least one rule.",
            'For example --rule \'{"metric": "roc_auc", "at_least": "champion"}\'.',
        )
    if mode != "automatic" and checked:
        raise InvalidInputError(f"Rules apply to automatic policies only, not to {mode}.")
    if not ttl_hours > 0:
        raise InvalidInputError(f"ttl_hours must be positive, got {ttl_hours}.")
    if client.remote:
        from shipway.remote import governance as remote

        return remote.set_policy(environment, mode, checked, ttl_hours, client=client)
    with client.write() as tx:
        before = _policy(tx.session, environment)
        row = tx.session.get(t.ApprovalPolicy, environment)
        if row is None:
            row = t.ApprovalPolicy(environment=environment)
            tx.session.add(row)
        row.mode, row.rules, row.ttl_hours = mode, checked, float(ttl_hours)
        row.updated_by, row.updated_at = client.actor, utcnow()
        tx.session.flush()
        after = _policy(tx.session, environment)
        keys = ("mode", "rules", "ttl_hours")
        tx.audit(
            "policy.set",
            f"policy:{environment}",
            {k: getattr(before, k) for k in keys},
            {k: getattr(after, k) for k in keys},
        )
        return after


# -- requests and decisions -----------------------------------------------------------------


def request_approval(
    uri: str, environment: str, *, comment: str | None = None, client: Client | None = None
) -> ApprovalInfo:
    """Ask for the version ``uri`` names (an alias is pinned to its version now) to go to
    ``environment``. Under an automatic policy the rules decide at once, and the decision
    records the policy and its evidence."""
    client = client or get_client()
    _check_environment(environment)
    if client.remote:
        from shipway.remote import governance as remote

        return remote.request_approval(uri, environment, comment=comment, client=client)
    version = get_model_version(uri, client=client)
    if version.archived:
        raise ConflictError(f"{version.uri} is archived; it cannot be approved for anything.")
    policy = get_policy(environment, client=client)
    if policy.mode == "none":
        raise ConflictError(
            f"{environment} needs no approval (its policy is none).",
            f"Deploy directly, or set a policy: `shipway approvals policy set {environment} "
            "--mode manual`.",
        )
    decision = evaluate(policy.rules, version, client) if policy.mode == "automatic" else None
    with client.write() as tx:
        now = utcnow()
        asked = tx.session.scalars(
            select(t.Approval).where(
                t.Approval.environment == environment,
                t.Approval.model == version.name,
                t.Approval.version == version.version,
                t.Approval.status == "pending",
            )
        )
        pending = [a for a in (_info(r, now) for r in asked) if a.status == "pending"]
        if pending:
            raise ConflictError(
                f"Approval {pending[0].id} for {version.uri} in {environment} is already "
                f"pending (requested by {pending[0].requested_by}).",
                f"Another person decides it: `shipway approvals approve {pending[0].id}`.",
            )
        row = t.Approval(
            id=uuid.uuid4().hex[:12],
            environment=environment,
            model=version.name,
            version=version.version,
            status="pending",
            requested_by=client.actor,
            requested_at=now,
            comment=comment,
            evidence={},
            expires_at=now + timedelta(hours=policy.ttl_hours),
        )
        tx.session.add(row)
        tx.session.flush()
        subject = f"approval:{row.id}"
        tx.audit(
            "approval.request",
            subject,
            after={"environment": environment, "model": version.name, "version": version.version},
        )
        if decision is not None:
            passed, evidence = decision
            row.status = "approved" if passed else "rejected"
            row.decided_by, row.decided_at = f"policy:{environment}", now
            row.policy, row.evidence = policy.name[:200], {"rules": evidence}
            row.expires_at = now + timedelta(hours=policy.ttl_hours) if passed else None
            tx.audit(
                f"approval.{'approve' if passed else 'reject'}",
                subject,
                {"status": "pending"},
                {"status": row.status, "policy": row.policy, "evidence": row.evidence},
            )
        return _info(row, now)


def approve(
    approval_id: str, *, comment: str | None = None, client: Client | None = None
) -> ApprovalInfo:
    """Approve a pending request; valid for the policy's ``ttl_hours`` from now."""
    return _decide(approval_id, "approved", comment, client or get_client())


def reject(
    approval_id: str, *, comment: str | None = None, client: Client | None = None
) -> ApprovalInfo:
    """Reject a pending request."""
    return _decide(approval_id, "rejected", comment, client or get_client())


def _decide(approval_id: str, status: str, comment: str | None, client: Client) -> ApprovalInfo:
    verb = "approve" if status == "approved" else "reject"
    if client.remote:
        from shipway.remote import governance as remote

        return remote.decide(approval_id, verb, comment, client=client)
    with client.write() as tx:
        now = utcnow()
        row = tx.session.get(t.Approval, approval_id)
        if row is None:
            recent = tx.session.scalars(
                select(t.Approval.id).order_by(t.Approval.requested_at.desc()).limit(10)
            )
            raise NotFoundError.missing("approval", approval_id, recent)
        info = _info(row, now)
        if info.status == "expired" and row.status == "pending":
            raise ConflictError(
                f"Approval {row.id} expired unanswered at {info.expires_at:%Y-%m-%d %H:%M} UTC.",
                "Request it again: "
                f"`shipway approvals request {info.uri} --env {info.environment}`.",
            )
        if row.status != "pending":
            by = f" by {row.decided_by}" if row.decided_by else ""
            raise ConflictError(
                f"Approval {row.id} was already {row.status}{by}; only pending requests can be "
                "decided."
            )
        if client.actor == row.requested_by:
            raise ForbiddenError(
                f"{client.actor} requested approval {row.id} and may not {verb} it too: "
                "four eyes, another person decides.",
                f"Ask someone else to run `shipway approvals {verb} {row.id}`.",
            )
        policy = _policy(tx.session, row.environment)
        row.status, row.decided_by, row.decided_at = status, client.actor, now
        row.decision_comment = comment
        row.expires_at = now + timedelta(hours=policy.ttl_hours) if status == "approved" else None
        tx.audit(
            f"approval.{verb}",
            f"approval:{row.id}",
            {"status": "pending"},
            {"status": status, "comment": comment, "expires_at": row.expires_at},
        )
        return _info(row, now)


def list_approvals(
    environment: str | None = None,
    *,
    status: str | None = None,
    model: str | None = None,
    client: Client | None = None,
) -> list[ApprovalInfo]:
    """Requests, newest first; ``status`` filters on what they are now (expired included)."""
    client = client or get_client()
    if status is not None and status not in get_args(Status):
        raise InvalidInputError(
            f"Unknown approval status '{status}'.", f"Use one of {', '.join(get_args(Status))}."
        )
    if client.remote:
        from shipway.remote import governance as remote

        return remote.list_approvals(environment, status=status, model=model, client=client)
    query = select(t.Approval).order_by(t.Approval.requested_at.desc())
    if environment is not None:
        query = query.where(t.Approval.environment == environment)
    if model is not None:
        query = query.where(t.Approval.model == model)
    now = utcnow()
    with client.store.read() as session:
        found = [_info(row, now) for row in session.scalars(query)]
    return [a for a in found if status is None or a.status == status]


def check_approved(
    environment: str, model: str, version: int, *, client: Client | None = None
) -> ApprovalInfo | None:
    """None when ``environment`` needs no approval; else the valid approval of exactly this
    version, or ApprovalRequiredError saying what to run.

    Through a team server the server answers it from its store, and only to a developer or
    more: it is asked right before a version goes somewhere, so a caller who may not put one
    there is refused before anything else is touched (a cluster, by `shipway k8s apply`)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.check_approved(environment, model, version, client=client)
    with client.store.read() as session:
        return require_approval(session, environment, model, version)


def require_approval(
    session: Session, environment: str, model: str, version: int
) -> ApprovalInfo | None:
    """:func:`check_approved` inside a caller's transaction (``set_alias`` checks the version
    it resolved under the write lock)."""
    policy = _policy(session, environment)
    if policy.mode == "none":
        return None
    now = utcnow()
    rows = session.scalars(
        select(t.Approval)
        .where(
            t.Approval.environment == environment,
            t.Approval.model == model,
            t.Approval.version == version,
        )
        .order_by(t.Approval.requested_at.desc())
    )
    found = [_info(row, now) for row in rows]
    valid = [a for a in found if a.status == "approved"]
    if valid:
        return valid[0]
    uri = f"models:/{model}/{version}"
    hint = f"Request one: `shipway approvals request {uri} --env {environment}`."
    if found:
        last = found[0]
        if last.status == "pending":
            hint = (
                f"Approval {last.id} is pending: another person than {last.requested_by} "
                f"approves it with `shipway approvals approve {last.id}`."
            )
        else:
            when = last.expires_at if last.status == "expired" else last.decided_at
            hint = (
                f"The last request, {last.id}, was {last.status}"
                + (f" by {last.decided_by}" if last.status == "rejected" else "")
                + (f" at {when:%Y-%m-%d %H:%M} UTC" if when else "")
                + f". {hint}"
            )
    raise ApprovalRequiredError(
        f"{uri} needs an approval for {environment} ({policy.mode} policy).", hint
    )
