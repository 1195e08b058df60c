"""Approvals, policies, the audit log, users and tokens over the API.

Audit filters are SQLAlchemy expressions (bound parameters, a subject prefix matched with
LIKE escaping), never text pasted into SQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from shipway.governance.approvals import ApprovalInfo, Policy
from shipway.governance.audit import VerifyReport
from shipway.governance.identity import TokenInfo, UserInfo
from shipway.server._paging import OFFSET, limit_param, page
from shipway.server.endpoints import API, Call, Endpoint, Param
from shipway.store import tables as t
from shipway.store import utc

RoleName = Literal["viewer", "developer", "approver", "admin"]


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(description="models:/NAME/VERSION (an alias is pinned to its version now)")
    environment: str
    comment: str | None = None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = None


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["manual", "automatic", "none"]
    rules: list[dict[str, Any]] = []
    ttl_hours: float = Field(72, gt=0)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    role: RoleName = "viewer"


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: RoleName | None = None
    disabled: Literal[True] | None = Field(None, description="true disables (for good).")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    name: str
    expires_in_days: float | None = Field(
        90, gt=0, description="null for a token that never expires."
    )


def list_approvals(call: Call) -> list[ApprovalInfo]:
    from shipway.governance.approvals import list_approvals

    q = call.query
    found = list_approvals(
        q["environment"], status=q["status"], model=q["model"], client=call.client
    )
    found.sort(key=lambda a: (a.requested_at, a.id), reverse=True)  # ties: by id
    return page(found, call)


def request_approval(call: Call) -> ApprovalInfo:
    from shipway.governance.approvals import request_approval

    body: ApprovalRequest = call.body
    return request_approval(body.uri, body.environment, comment=body.comment, client=call.client)


def approve(call: Call) -> ApprovalInfo:
    from shipway.governance.approvals import approve

    return approve(call.path["approval_id"], comment=call.body.comment, client=call.client)


def reject(call: Call) -> ApprovalInfo:
    from shipway.governance.approvals import reject

    return reject(call.path["approval_id"], comment=call.body.comment, client=call.client)


def list_policies(call: Call) -> list[Policy]:
    from shipway.governance.approvals import list_policies

    return list_policies(client=call.client)


def set_policy(call: Call) -> Policy:
    from shipway.governance.approvals import set_policy

    body: PolicyBody = call.body
    return set_policy(
        call.path["environment"], body.mode, body.rules, body.ttl_hours, client=call.client
    )


def audit_log(call: Call) -> list[dict[str, Any]]:
    """With `since`, the first `limit` entries after that seq (to page or tail forward);
    without, the newest `limit`. Oldest first either way. `offset` skips entries in the
    order they are picked in: the oldest after `since`, else the newest (to page back)."""
    q = call.query
    query = select(t.AuditEvent)
    if q["actor"] is not None:
        query = query.where(t.AuditEvent.actor == q["actor"])
    if q["action"] is not None:
        query = query.where(t.AuditEvent.action == q["action"])
    if q["subject"] is not None:
        query = query.where(t.AuditEvent.subject.startswith(q["subject"], autoescape=True))
    if q["since"] is not None:
        query = query.where(t.AuditEvent.seq > q["since"]).order_by(t.AuditEvent.seq)
    else:
        query = query.order_by(t.AuditEvent.seq.desc())
    with call.client.store.read() as session:
        rows = list(session.scalars(query.offset(q["offset"]).limit(q["limit"])))
    rows.sort(key=lambda e: e.seq)
    return [
        {
            "seq": e.seq,
            "time": utc(e.time).isoformat(),
            "actor": e.actor,
            "source": e.source,
            "action": e.action,
            "subject": e.subject,
            "before": e.before,
            "after": e.after,
            "hash": e.hash,
        }
        for e in rows
    ]


def verify_audit(call: Call) -> VerifyReport:
    from shipway.governance.audit import verify_audit

    return verify_audit(client=call.client)


def list_users(call: Call) -> list[UserInfo]:
    from shipway.governance.identity import list_users

    return list_users(client=call.client)


def create_user(call: Call) -> UserInfo:
    from shipway.governance.identity import create_user

    return create_user(call.body.name, call.body.role, client=call.client)


def change_user(call: Call) -> UserInfo:
    from shipway.errors import InvalidInputError
    from shipway.governance.identity import disable_user, set_role

    body: UserChange = call.body
    name = call.path["name"]
    if body.role is None and body.disabled is None:
        raise InvalidInputError("Nothing to change.", 'Send {"role": ...} or {"disabled": true}.')
    user = None
    if body.role is not None:
        user = set_role(name, body.role, client=call.client)
    if body.disabled:
        user = disable_user(name, client=call.client)
    assert user is not None
    return user


def list_tokens(call: Call) -> list[TokenInfo]:
    from shipway.governance.identity import list_tokens

    return list_tokens(call.query["user"], client=call.client)


def create_token(call: Call) -> dict[str, Any]:
    from shipway.governance.identity import create_token

    body: NewToken = call.body
    days = body.expires_in_days
    info, token = create_token(
        body.user,
        name=body.name,
        expires_in=None if days is None else timedelta(days=days),
        client=call.client,
    )
    return {"token": token, "info": info}


def revoke_token(call: Call) -> dict[str, Any]:
    from shipway.governance.identity import revoke_token

    revoke_token(call.path["token_id"], client=call.client)
    return {"revoked": call.path["token_id"]}


def lineage(call: Call) -> dict[str, Any]:
    from shipway.errors import InvalidInputError
    from shipway.governance.lineage import lineage

    if call.query["uri"] is None:
        raise InvalidInputError("Say which version: ?uri=models:/NAME/VERSION or NAME@ALIAS.")
    return lineage(call.query["uri"], client=call.client)


_APPROVAL = f"{API}/approvals/{{approval_id}}"
_LIMIT = Param("limit", "At most this many.", int, 100, 1, 1000)

ENDPOINTS = [
    Endpoint(
        "GET",
        f"{API}/lineage",
        lineage,
        "Show a version's lineage",
        "models",
        "viewer",
        query=(Param("uri", "models:/NAME/VERSION or models:/NAME@ALIAS"),),
        description="Where it is live and since when, the image, run, code commit, datasets, "
        "environment lock, who approved it under which policy, and the monitoring status.",
    ),
    Endpoint(
        "GET",
        f"{API}/approvals",
        list_approvals,
        "List approval requests",
        "approvals",
        "viewer",
        query=(
            Param("environment", "Only this environment's."),
            Param("status", "pending, approved, rejected or expired."),
            Param("model", "Only this model's."),
            limit_param("At most this many, newest first (default: all).", None),
            OFFSET,
        ),
        returns=list[ApprovalInfo],
    ),
    Endpoint(
        "POST",
        f"{API}/approvals",
        request_approval,
        "Request an approval",
        "approvals",
        "developer",
        body=ApprovalRequest,
        status=201,
        returns=ApprovalInfo,
    ),
    Endpoint(
        "POST",
        f"{_APPROVAL}/approve",
        approve,
        "Approve a request",
        "approvals",
        "approver",
        body=Decision,
        returns=ApprovalInfo,
        description="Four eyes: refused (403) to whoever made the request.",
    ),
    Endpoint(
        "POST",
        f"{_APPROVAL}/reject",
        reject,
        "Reject a request",
        "approvals",
        "approver",
        body=Decision,
        returns=ApprovalInfo,
    ),
    Endpoint(
        "GET",
        f"{API}/policies",
        list_policies,
        "List approval policies",
        "approvals",
        "viewer",
        returns=list[Policy],
    ),
    Endpoint(
        "PUT",
        f"{API}/policies/{{environment}}",
        set_policy,
        "Set an environment's approval policy",
        "approvals",
        "admin",
        body=PolicyBody,
        returns=Policy,
    ),
    Endpoint(
        "GET",
        f"{API}/audit",
        audit_log,
        "List audit entries",
        "audit",
        "viewer",
        query=(
            Param("actor", "Only this actor's."),
            Param("action", "Only this action (run.create, alias.set, ...)."),
            Param("subject", "Only subjects starting with this (model:credit, run:...)."),
            Param(
                "since",
                "Only entries after this seq, oldest first (to page forward).",
                int,
                None,
                0,
            ),
            _LIMIT,
            OFFSET,
        ),
    ),
    Endpoint(
        "GET",
        f"{API}/audit/verify",
        verify_audit,
        "Verify the audit hash chain",
        "audit",
        "viewer",
        returns=VerifyReport,
    ),
    Endpoint(
        "GET", f"{API}/users", list_users, "List users", "users", "admin", returns=list[UserInfo]
    ),
    Endpoint(
        "POST",
        f"{API}/users",
        create_user,
        "Create a user",
        "users",
        "admin",
        body=NewUser,
        status=201,
        returns=UserInfo,
    ),
    Endpoint(
        "PATCH",
        f"{API}/users/{{name}}",
        change_user,
        "Change a user's role or disable them",
        "users",
        "admin",
        body=UserChange,
        returns=UserInfo,
    ),
    Endpoint(
        "GET",
        f"{API}/tokens",
        list_tokens,
        "List API tokens",
        "users",
        "admin",
        query=(Param("user", "Only this user's."),),
        returns=list[TokenInfo],
    ),
    Endpoint(
        "POST",
        f"{API}/tokens",
        create_token,
        "Create an API token",
        "users",
        "admin",
        body=NewToken,
        status=201,
        description="The token text is in this response only; it is stored as a hash.",
    ),
    Endpoint(
        "DELETE",
        f"{API}/tokens/{{token_id}}",
        revoke_token,
        "Revoke an API token",
        "users",
        "admin",
    ),
]
