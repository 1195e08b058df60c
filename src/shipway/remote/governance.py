"""Approvals, approval policies, users and tokens through the team server.

The server decides as the token's user: it records them as requester or decider, and its
four-eyes check refuses a decision by whoever made the request, as locally. Environment names
and statuses are checked here first, so a bad one fails the same way before any request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from shipway.client import Client
from shipway.governance.approval_rules import Rule
from shipway.governance.approvals import ApprovalInfo, Policy
from shipway.governance.identity import Role, TokenInfo, UserInfo
from shipway.remote._http import segment
from shipway.remote.tracking import api_of


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def approval(d: dict[str, Any]) -> ApprovalInfo:
    return ApprovalInfo(
        **d
        | {
            "requested_at": datetime.fromisoformat(d["requested_at"]),
            "decided_at": _time(d["decided_at"]),
            "expires_at": _time(d["expires_at"]),
        }
    )


def policy(d: dict[str, Any]) -> Policy:
    return Policy(**d | {"updated_at": _time(d.get("updated_at"))})


def request_approval(
    uri: str, environment: str, *, comment: str | None, client: Client
) -> ApprovalInfo:
    body = {"uri": uri, "environment": environment, "comment": comment}
    return approval(api_of(client).post("/approvals", body))


def decide(approval_id: str, verb: str, comment: str | None, *, client: Client) -> ApprovalInfo:
    path = f"/approvals/{segment(approval_id)}/{verb}"
    return approval(api_of(client).post(path, {"comment": comment}))


def list_approvals(
    environment: str | None, *, status: str | None, model: str | None, client: Client
) -> list[ApprovalInfo]:
    data = api_of(client).get_list(
        "/approvals", None, _id, environment=environment, status=status, model=model
    )
    return [approval(d) for d in data]


def _id(entry: dict[str, Any]) -> Any:
    return entry["id"]


def list_policies(*, client: Client) -> list[Policy]:
    return [policy(d) for d in api_of(client).get("/policies")]


def set_policy(
    environment: str, mode: str, rules: Sequence[Rule], ttl_hours: float, *, client: Client
) -> Policy:
    body = {"mode": mode, "rules": list(rules), "ttl_hours": ttl_hours}
    return policy(api_of(client).put(f"/policies/{segment(environment)}", body))


# -- users and tokens (an admin's) ----------------------------------------------------------


def user(d: dict[str, Any]) -> UserInfo:
    return UserInfo(**d | {"created_at": datetime.fromisoformat(d["created_at"])})


def token(d: dict[str, Any]) -> TokenInfo:
    times = ("created_at", "expires_at", "revoked_at", "last_used_at")
    return TokenInfo(**d | {k: _time(d[k]) for k in times})


def list_users(*, client: Client) -> list[UserInfo]:
    return [user(d) for d in api_of(client).get("/users")]


def create_user(name: str, role: Role, *, client: Client) -> UserInfo:
    return user(api_of(client).post("/users", {"name": name, "role": role}))


def change_user(name: str, change: dict[str, Any], *, client: Client) -> UserInfo:
    return user(api_of(client).patch(f"/users/{segment(name)}", change))


def create_token(
    owner: str, *, name: str, expires_in: timedelta | None, client: Client
) -> tuple[TokenInfo, str]:
    days = None if expires_in is None else expires_in / timedelta(days=1)
    data = api_of(client).post("/tokens", {"user": owner, "name": name, "expires_in_days": days})
    return token(data["info"]), str(data["token"])


def list_tokens(owner: str | None, *, client: Client) -> list[TokenInfo]:
    return [token(d) for d in api_of(client).get("/tokens", user=owner)]


def revoke_token(token_id: str, *, client: Client) -> None:
    api_of(client).delete(f"/tokens/{segment(token_id)}")


def require_role(role: Role, action: str, *, client: Client) -> None:
    """ForbiddenError, worded as the server words it, unless the token's user has at least
    `role`: for work done outside the server (on a cluster) before anything is recorded."""
    from shipway.errors import ForbiddenError
    from shipway.governance.identity import ROLES

    me = api_of(client).get("/me")
    if ROLES.index(me["role"]) < ROLES.index(role):
        raise ForbiddenError(f"{me['user']} ({me['role']}) may not {action}: needs {role}.")
