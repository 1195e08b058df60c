"""Users, ranked roles and API tokens: who is asking, and whether they may.

Roles are ranked, viewer < developer < approver < admin, and each includes the ones before it.
A token reads `shw_<id>_<secret>`: the 8-hex `id` is public (it names the token in listings and
finds its row), the secret is 32 random bytes. Only the SHA-256 of the whole token is stored; a
slow hash would add nothing to 256 bits of entropy. Every failure to authenticate raises the
same `UnauthorizedError`, and no message or log line ever carries the token.

Locally nothing here is enforced: whoever can write the store owns it. The team server calls
`authenticate` on each request and `require` before each action.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shipway.client import Client, get_client
from shipway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthorizedError,
)
from shipway.records import _Record
from shipway.store import tables as t
from shipway.store import utc, utcnow

__all__ = [
    "ROLES",
    "Identity",
    "Role",
    "TokenInfo",
    "UserInfo",
    "authenticate",
    "check_role",
    "create_admin",
    "create_token",
    "create_user",
    "disable_user",
    "list_tokens",
    "list_users",
    "require",
    "revoke_token",
    "set_role",
]

log = logging.getLogger("shipway.identity")

Role = Literal["viewer", "developer", "approver", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
"""Lowest first: each role may do everything the ones before it may."""

DEFAULT_EXPIRY = timedelta(days=90)
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is refreshed at most this often, rather than written on every request."""

_USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,100}")
_TOKEN_ID = re.compile(r"[0-9a-f]{8}")
_TOKEN = re.compile(r"shw_(?P<id>[0-9a-f]{8})_[A-Za-z0-9_-]{20,100}")
_UNAUTHORIZED = "Invalid, expired or revoked API token."
_UNAUTHORIZED_HINT = "Ask an admin for a new one: shipway tokens create USER."


@dataclasses.dataclass(frozen=True)
class Identity:
    """An authenticated caller: the user, their role and the token they presented."""

    user: str
    role: Role
    token_id: str | None = None

    def at_least(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclasses.dataclass(frozen=True)
class UserInfo(_Record):
    name: str
    role: Role
    disabled: bool
    created_by: str
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class TokenInfo(_Record):
    """A token as listings show it: never its secret, never its hash."""

    id: str
    user: str
    name: str
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidInputError(
            f"Unknown role '{role[:50]}'.",
            "Roles, each including the ones before it: viewer, developer, approver, admin.",
        )
    return role


def _check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise InvalidInputError(
            f"'{name[:100]}' is not a valid user name.",
            "Use 1 to 100 letters, digits, '.', '-', '_' or '@' (an e-mail address works).",
        )
    return name


def _check_token_name(name: str) -> str:
    if not 1 <= len(name) <= 200 or not name.isprintable() or not name.strip():
        raise InvalidInputError(
            "A token name must be 1 to 200 printable characters.",
            "Name it after where it is used, for example 'ci' or 'laptop'.",
        )
    return name


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_info(row: t.User) -> UserInfo:
    return UserInfo(
        row.name, check_role(row.role), row.disabled, row.created_by, utc(row.created_at)
    )


def _token_status(row: t.ApiToken, now: datetime) -> Literal["active", "expired", "revoked"]:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and utc(row.expires_at) <= now:
        return "expired"
    return "active"


def _token_info(row: t.ApiToken, user: str, now: datetime) -> TokenInfo:
    def maybe(value: datetime | None) -> datetime | None:
        return utc(value) if value is not None else None

    return TokenInfo(
        row.id,
        user,
        row.name,
        _token_status(row, now),
        utc(row.created_at),
        maybe(row.expires_at),
        maybe(row.revoked_at),
        maybe(row.last_used_at),
    )


def _find_user(session: Session, name: str) -> t.User:
    row = session.scalar(select(t.User).where(t.User.name == name))
    if row is None:
        raise NotFoundError.missing("user", name, session.scalars(select(t.User.name)))
    return row


def _active_admins(session: Session) -> int:
    query = select(func.count()).where(t.User.role == "admin", t.User.disabled.is_(False))
    return int(session.scalar(query) or 0)


def _add_user(session: Session, name: str, role: Role, actor: str) -> t.User:
    if session.scalar(select(t.User.id).where(t.User.name == name)) is not None:
        raise ConflictError(f"User '{name}' already exists.", "List users: shipway users list.")
    row = t.User(name=name, role=role, disabled=False, created_by=actor, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def _add_token(
    session: Session, user: t.User, name: str, expires_in: timedelta | None
) -> tuple[t.ApiToken, str]:
    token_id = secrets.token_hex(4)
    while session.get(t.ApiToken, token_id) is not None:  # 2**32 ids: rare, but cheap to rule out
        token_id = secrets.token_hex(4)
    token = f"shw_{token_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = t.ApiToken(
        id=token_id,
        user_id=user.id,
        name=name,
        token_hash=_digest(token),
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked_at=None,
        last_used_at=None,
    )
    session.add(row)
    session.flush()
    return row, token


def _token_audit(row: t.ApiToken, user: str) -> dict[str, Any]:
    expires = row.expires_at.isoformat() if row.expires_at is not None else None
    return {"user": user, "name": row.name, "expires_at": expires}


def create_user(name: str, role: Role, *, client: Client | None = None) -> UserInfo:
    """Add a user with `role` (an admin's action on the team server)."""
    client = client or get_client()
    _check_user_name(name)
    role = check_role(role)
    if client.remote:
        from shipway.remote import governance as remote

        return remote.create_user(name, role, client=client)
    with client.write() as tx:
        row = _add_user(tx.session, name, role, client.actor)
        tx.audit("users.create", f"user:{name}", after={"role": role})
        return _user_info(row)


def create_admin(name: str, *, client: Client | None = None) -> tuple[UserInfo, str]:
    """The first admin and its token (shown once), to bootstrap a team server.

    Refused once an active admin exists: from then on admins make users and tokens.
    """
    client = client or get_client()
    _check_user_name(name)
    with client.write() as tx:
        if _active_admins(tx.session):
            raise ConflictError(
                "An admin already exists.",
                "An admin can create users and tokens: shipway users create NAME --role admin.",
            )
        user = _add_user(tx.session, name, "admin", client.actor)
        tx.audit("users.create", f"user:{name}", after={"role": "admin"})
        token_row, token = _add_token(tx.session, user, "initial admin token", DEFAULT_EXPIRY)
        tx.audit("tokens.create", f"token:{token_row.id}", after=_token_audit(token_row, name))
        return _user_info(user), token


def create_token(
    user: str,
    *,
    name: str,
    expires_in: timedelta | None = DEFAULT_EXPIRY,
    client: Client | None = None,
) -> tuple[TokenInfo, str]:
    """A new API token for `user`; the token text is returned once and never stored.

    `expires_in=None` makes a token that never expires (revoke it when it is no longer needed).
    """
    client = client or get_client()
    _check_token_name(name)
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInputError("A token's lifetime must be positive.")
    if client.remote:
        from shipway.remote import governance as remote

        return remote.create_token(user, name=name, expires_in=expires_in, client=client)
    with client.write() as tx:
        owner = _find_user(tx.session, user)
        if owner.disabled:
            raise ConflictError(
                f"User '{user}' is disabled.", "Tokens of disabled users never work."
            )
        row, token = _add_token(tx.session, owner, name, expires_in)
        tx.audit("tokens.create", f"token:{row.id}", after=_token_audit(row, user))
        return _token_info(row, user, utcnow()), token


def authenticate(token: str, *, client: Client | None = None) -> Identity:
    """The identity a token stands for, or `UnauthorizedError` (the same one whatever failed)."""
    client = client or get_client()
    match = _TOKEN.fullmatch(token) if len(token) <= 200 else None
    if match is None:
        log.info("Rejected a malformed API token.")
        raise UnauthorizedError(_UNAUTHORIZED, _UNAUTHORIZED_HINT)
    token_id, now = match["id"], utcnow()
    with client.store.read() as session:
        found = session.execute(
            select(t.ApiToken, t.User)
            .join(t.User, t.User.id == t.ApiToken.user_id)
            .where(t.ApiToken.id == token_id)
        ).first()
    # Compare even when the id is unknown, so timing tells nothing about which ids exist.
    stored = found[0].token_hash if found else "0" * 64
    if not hmac.compare_digest(stored, _digest(token)) or found is None:
        log.info("Rejected API token %s: unknown token or wrong secret.", token_id)
        raise UnauthorizedError(_UNAUTHORIZED, _UNAUTHORIZED_HINT)
    row, user = found
    status = _token_status(row, now)
    if status != "active" or user.disabled:
        reason = f"user {user.name} is disabled" if user.disabled else f"token {status}"
        log.info("Rejected API token %s: %s.", token_id, reason)
        raise UnauthorizedError(_UNAUTHORIZED, _UNAUTHORIZED_HINT)
    if row.last_used_at is None or now - utc(row.last_used_at) >= LAST_USED_RESOLUTION:
        _touch(client, token_id, now)
    return Identity(user.name, check_role(user.role), token_id)


def _touch(client: Client, token_id: str, now: datetime) -> None:
    """Bookkeeping, not a change worth an audit entry; never a reason to refuse a request."""
    try:
        with client.store.engine.begin() as conn:
            conn.execute(
                update(t.ApiToken).where(t.ApiToken.id == token_id).values(last_used_at=now)
            )
    except OperationalError as exc:  # a busy database: the next request will try again
        log.warning("Could not record the use of API token %s: %s", token_id, type(exc).__name__)


def revoke_token(token_id: str, *, client: Client | None = None) -> None:
    """Revoke a token at once; revoking a revoked token changes nothing.

    `token_id` is the id listings show; a whole leaked token works too (only its id is used).
    """
    client = client or get_client()
    whole = _TOKEN.fullmatch(token_id)
    token_id = whole["id"] if whole else token_id
    if client.remote:
        from shipway.remote import governance as remote

        return remote.revoke_token(token_id, client=client)
    with client.write() as tx:
        row = tx.session.get(t.ApiToken, token_id)
        if row is None:
            shown = token_id if _TOKEN_ID.fullmatch(token_id) else "given"
            raise NotFoundError(f"Token {shown} not found.", "List tokens: shipway tokens list.")
        if row.revoked_at is not None:
            return
        row.revoked_at = utcnow()
        owner = tx.session.get_one(t.User, row.user_id)
        tx.audit(
            "tokens.revoke",
            f"token:{token_id}",
            before={"revoked_at": None},
            after={"revoked_at": row.revoked_at, "user": owner.name},
        )


def list_tokens(user: str | None = None, *, client: Client | None = None) -> list[TokenInfo]:
    """Every token, or `user`'s, oldest first: ids, names and dates, never secrets or hashes."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import governance as remote

        return remote.list_tokens(user, client=client)
    now = utcnow()
    with client.store.read() as session:
        query = select(t.ApiToken, t.User.name).join(t.User, t.User.id == t.ApiToken.user_id)
        if user is not None:
            query = query.where(t.User.id == _find_user(session, user).id)
        rows = session.execute(query.order_by(t.ApiToken.created_at, t.ApiToken.id)).all()
        return [_token_info(row, name, now) for row, name in rows]


def list_users(*, client: Client | None = None) -> list[UserInfo]:
    client = client or get_client()
    if client.remote:
        from shipway.remote import governance as remote

        return remote.list_users(client=client)
    with client.store.read() as session:
        return [_user_info(u) for u in session.scalars(select(t.User).order_by(t.User.name))]


def _keep_an_admin(session: Session, row: t.User, what: str) -> None:
    if row.role == "admin" and not row.disabled and _active_admins(session) <= 1:
        raise ConflictError(
            f"Cannot {what} '{row.name}': it is the last active admin.",
            "Make another admin first: shipway users set-role NAME admin.",
        )


def set_role(user: str, role: Role, *, client: Client | None = None) -> UserInfo:
    """Change a user's role; the last active admin cannot be demoted."""
    client = client or get_client()
    role = check_role(role)
    if client.remote:
        from shipway.remote import governance as remote

        return remote.change_user(user, {"role": role}, client=client)
    with client.write() as tx:
        row = _find_user(tx.session, user)
        if row.role != role:
            if role != "admin":
                _keep_an_admin(tx.session, row, "demote")
            before, row.role = row.role, role
            tx.audit("users.role", f"user:{user}", before={"role": before}, after={"role": role})
        return _user_info(row)


def disable_user(user: str, *, client: Client | None = None) -> UserInfo:
    """Disable a user: their tokens stop working at once. The last active admin stays."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import governance as remote

        return remote.change_user(user, {"disabled": True}, client=client)
    with client.write() as tx:
        row = _find_user(tx.session, user)
        if not row.disabled:
            _keep_an_admin(tx.session, row, "disable")
            row.disabled = True
            tx.audit(
                "users.disable",
                f"user:{user}",
                before={"disabled": False},
                after={"disabled": True},
            )
        return _user_info(row)


def require(identity: Identity, role: Role, action: str) -> None:
    """Raise `ForbiddenError` unless `identity`'s role is `role` or above."""
    if not identity.at_least(role):
        raise ForbiddenError(
            f"{identity.user} ({identity.role}) may not {action}: needs {role}.",
            f"An admin can grant it: shipway users set-role {identity.user} {role}.",
        )
