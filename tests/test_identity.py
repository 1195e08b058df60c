"""Users, roles and API tokens: the lifecycle of a token, what is stored, and who may do what."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import shipway
from serving_helpers import run_cli
from shipway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthorizedError,
)
from shipway.governance import identity
from shipway.governance.audit import export
from shipway.governance.identity import Identity, authenticate, require
from shipway.store import utcnow

TOKEN = re.compile(r"shw_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def _rows(client: shipway.Client, table: str) -> list[dict[str, Any]]:
    """Straight from the database, bypassing Shipway."""
    with client.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]


def _execute(client: shipway.Client, sql: str, **params: Any) -> None:
    with client.store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _refused(token: str, client: shipway.Client) -> UnauthorizedError:
    with pytest.raises(UnauthorizedError) as info:
        authenticate(token, client=client)
    return info.value


def _everything_said(exc: BaseException) -> str:
    """Every text an exception carries, down its chain of causes."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_a_token_authenticates_until_it_is_revoked(backend: shipway.Client) -> None:
    identity.create_user("bob", "developer", client=backend)
    info, token = identity.create_token("bob", name="ci", client=backend)

    assert TOKEN.fullmatch(token)
    assert token.startswith(f"shw_{info.id}_")
    assert (info.user, info.name, info.status) == ("bob", "ci", "active")
    assert info.expires_at is not None
    assert timedelta(days=89, hours=23) < info.expires_at - info.created_at <= timedelta(days=90)
    assert authenticate(token, client=backend) == Identity("bob", "developer", info.id)

    identity.revoke_token(info.id, client=backend)
    identity.revoke_token(info.id, client=backend)  # a second revoke changes nothing

    _refused(token, client=backend)
    [listed] = identity.list_tokens("bob", client=backend)
    assert listed.status == "revoked"
    assert listed.revoked_at is not None
    actions = [e.action for e in shipway.audit_log(client=backend)]
    assert actions == ["users.create", "tokens.create", "tokens.revoke"]


def test_each_token_is_distinct_and_can_be_made_without_expiry(backend: shipway.Client) -> None:
    identity.create_user("bob", "viewer", client=backend)
    first, t1 = identity.create_token("bob", name="laptop", client=backend)
    second, t2 = identity.create_token("bob", name="ci", expires_in=None, client=backend)

    assert t1 != t2 and first.id != second.id
    assert second.expires_at is None
    assert authenticate(t2, client=backend).token_id == second.id
    assert [t.name for t in identity.list_tokens(client=backend)] == ["laptop", "ci"]


def test_an_expired_token_is_refused(backend: shipway.Client) -> None:
    identity.create_user("bob", "developer", client=backend)
    info, token = identity.create_token("bob", name="ci", client=backend)
    _execute(
        backend,
        "UPDATE api_tokens SET expires_at = :past WHERE id = :id",
        past=utcnow() - timedelta(seconds=1),
        id=info.id,
    )

    _refused(token, client=backend)
    assert identity.list_tokens(client=backend)[0].status == "expired"
    with pytest.raises(InvalidInputError):
        identity.create_token("bob", name="ci", expires_in=timedelta(0), client=backend)


def test_a_disabled_users_tokens_stop_working(backend: shipway.Client) -> None:
    identity.create_user("bob", "developer", client=backend)
    _, token = identity.create_token("bob", name="ci", client=backend)
    authenticate(token, client=backend)

    disabled = identity.disable_user("bob", client=backend)

    assert disabled.disabled
    _refused(token, client=backend)
    with pytest.raises(ConflictError):
        identity.create_token("bob", name="again", client=backend)
    assert identity.list_users(client=backend)[0].disabled


def test_every_refusal_says_the_same_thing(backend: shipway.Client) -> None:
    identity.create_user("bob", "developer", client=backend)
    identity.create_user("eve", "viewer", client=backend)
    good_info, good = identity.create_token("bob", name="ci", client=backend)
    revoked_info, revoked = identity.create_token("bob", name="old", client=backend)
    identity.revoke_token(revoked_info.id, client=backend)
    _, disabled = identity.create_token("eve", name="ci", client=backend)
    identity.disable_user("eve", client=backend)
    secret = good.split("_", 2)[2]
    attempts = [
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # right id, wrong secret
        f"shw_{'0' * 8}_{secret}",  # unknown id
        revoked,
        disabled,
        "",
        "shw_",
        good.upper(),
        "Bearer " + good,
        good + "x" * 300,
        secret,
    ]

    messages = {str(_refused(token, client=backend)) for token in attempts}

    assert len(messages) == 1
    assert authenticate(good, client=backend).token_id == good_info.id


def test_the_token_never_appears_in_messages_logs_or_the_audit_log(
    backend: shipway.Client, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    identity.create_user("bob", "developer", client=backend)
    info, token = identity.create_token("bob", name="ci", client=backend)
    secret = token.split("_", 2)[2]
    authenticate(token, client=backend)
    said = [
        _everything_said(_refused(token[:-2], client=backend)),
        _everything_said(_refused(token + "A", client=backend)),
        _everything_said(_refused(f"shw_{'f' * 8}_{secret}", client=backend)),
    ]
    with pytest.raises(NotFoundError) as missing:
        identity.revoke_token(f"shw_{'f' * 8}_{secret}", client=backend)
    said.append(_everything_said(missing.value))
    identity.revoke_token(token, client=backend)  # a leaked token can be revoked by itself
    said.append(_everything_said(_refused(token, client=backend)))
    export(tmp_path / "audit.jsonl", client=backend)
    said.append((tmp_path / "audit.jsonl").read_text())
    said.append(json.dumps([t.to_dict() for t in identity.list_tokens(client=backend)]))

    assert identity.list_tokens(client=backend)[0].status == "revoked"
    assert info.id in caplog.text  # the public id is what the logs name
    digest = hashlib.sha256(token.encode()).hexdigest()
    for text in said:
        assert secret[:12] not in text
        assert secret[-12:] not in text
        assert digest not in text
    # Every log line, SQLAlchemy's statements and parameters included.
    assert secret[:12] not in caplog.text and secret[-12:] not in caplog.text


def test_only_the_hash_is_stored(backend: shipway.Client) -> None:
    identity.create_user("bob", "developer", client=backend)
    info, token = identity.create_token("bob", name="ci", client=backend)
    secret = token.split("_", 2)[2]

    [row] = _rows(backend, "api_tokens")

    assert row["id"] == info.id
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    for table in ("api_tokens", "users", "audit_events"):
        dumped = json.dumps(_rows(backend, table), default=str)
        assert secret not in dumped and token not in dumped
    assert "token_hash" not in info.to_dict()
    assert row["token_hash"] not in json.dumps(info.to_dict(), default=str)


def test_last_used_is_written_at_most_once_a_minute(backend: shipway.Client) -> None:
    identity.create_user("bob", "developer", client=backend)
    info, token = identity.create_token("bob", name="ci", client=backend)
    entries = shipway.audit_log(client=backend)

    authenticate(token, client=backend)
    first = identity.list_tokens(client=backend)[0].last_used_at
    authenticate(token, client=backend)
    second = identity.list_tokens(client=backend)[0].last_used_at
    long_ago = utcnow() - timedelta(minutes=2)
    _execute(
        backend, "UPDATE api_tokens SET last_used_at = :t WHERE id = :id", t=long_ago, id=info.id
    )
    authenticate(token, client=backend)
    third = identity.list_tokens(client=backend)[0].last_used_at

    assert first is not None and first == second
    assert third is not None and third > long_ago + timedelta(minutes=1)
    assert shipway.audit_log(client=backend) == entries  # bookkeeping, not an audited change


def test_roles_are_ranked() -> None:
    assert identity.ROLES == ("viewer", "developer", "approver", "admin")
    for i, held in enumerate(identity.ROLES):
        who = Identity("bob", held)
        for j, needed in enumerate(identity.ROLES):
            assert who.at_least(needed) is (i >= j)
            if i >= j:
                require(who, needed, "do it")
            else:
                with pytest.raises(ForbiddenError):
                    require(who, needed, "do it")


def test_require_names_the_user_role_action_and_the_role_needed() -> None:
    with pytest.raises(ForbiddenError) as info:
        require(Identity("bob", "viewer"), "developer", "deploy to staging")

    assert str(info.value).startswith("bob (viewer) may not deploy to staging: needs developer")
    assert "shipway users set-role bob developer" in str(info.value)
    assert (info.value.exit_code, info.value.http_status) == (9, 403)


def test_create_admin_bootstraps_once(backend: shipway.Client) -> None:
    admin, token = identity.create_admin("alice", client=backend)

    assert (admin.name, admin.role, admin.disabled) == ("alice", "admin", False)
    assert authenticate(token, client=backend).role == "admin"
    with pytest.raises(ConflictError, match="admin already exists"):
        identity.create_admin("mallory", client=backend)
    assert [u.name for u in identity.list_users(client=backend)] == ["alice"]
    actions = [(e.action, e.subject) for e in shipway.audit_log(client=backend)]
    token_id = authenticate(token, client=backend).token_id
    assert actions == [("users.create", "user:alice"), ("tokens.create", f"token:{token_id}")]


def test_the_last_active_admin_stays_an_admin(backend: shipway.Client) -> None:
    identity.create_admin("alice", client=backend)
    with pytest.raises(ConflictError, match="last active admin"):
        identity.set_role("alice", "approver", client=backend)
    with pytest.raises(ConflictError, match="last active admin"):
        identity.disable_user("alice", client=backend)

    identity.create_user("bob", "developer", client=backend)
    promoted = identity.set_role("bob", "admin", client=backend)
    demoted = identity.set_role("alice", "viewer", client=backend)

    assert (promoted.role, demoted.role) == ("admin", "viewer")
    entries = [e for e in shipway.audit_log(client=backend) if e.action == "users.role"]
    assert [(e.subject, e.before, e.after) for e in entries] == [
        ("user:bob", {"role": "developer"}, {"role": "admin"}),
        ("user:alice", {"role": "admin"}, {"role": "viewer"}),
    ]


def test_changes_are_audited_and_the_chain_holds(backend: shipway.Client) -> None:
    identity.create_admin("alice", client=backend)
    identity.create_user("bob", "viewer", client=backend)
    info, _ = identity.create_token("bob", name="ci", expires_in=None, client=backend)
    identity.set_role("bob", "approver", client=backend)
    identity.revoke_token(info.id, client=backend)
    identity.disable_user("bob", client=backend)

    entries = shipway.audit_log(client=backend)[2:]

    assert [(e.action, e.subject) for e in entries] == [
        ("users.create", "user:bob"),
        ("tokens.create", f"token:{info.id}"),
        ("users.role", "user:bob"),
        ("tokens.revoke", f"token:{info.id}"),
        ("users.disable", "user:bob"),
    ]
    assert entries[1].after == {"user": "bob", "name": "ci", "expires_at": None}
    assert shipway.verify_audit(client=backend).ok


@pytest.mark.parametrize(
    "name", ["", "a" * 101, "bob smith", "bob/x", "bob\n", "zoë", "'; DROP TABLE users; --"]
)
def test_invalid_user_names_are_refused(shipway_home: Path, name: str) -> None:
    client = shipway.Client()
    try:
        with pytest.raises(InvalidInputError, match="valid user name"):
            identity.create_user(name, "viewer", client=client)
        with pytest.raises(InvalidInputError):
            identity.create_admin(name, client=client)
        assert identity.list_users(client=client) == []
    finally:
        client.store.close()


def test_valid_names_and_unknown_roles(shipway_home: Path) -> None:
    client = shipway.Client()
    try:
        for name in ["a", "x" * 100, "alice@example.com", "ci-bot_2.prod"]:
            assert identity.create_user(name, "viewer", client=client).name == name
        with pytest.raises(ConflictError, match="already exists"):
            identity.create_user("a", "admin", client=client)
        with pytest.raises(InvalidInputError) as bad_role:
            identity.create_user("b", "root", client=client)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            identity.set_role("a", "Admin", client=client)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError, match="'nobody' not found"):
            identity.set_role("nobody", "admin", client=client)
        with pytest.raises(InvalidInputError):
            identity.create_token("a", name="", client=client)
    finally:
        client.store.close()

    assert "viewer, developer, approver, admin" in str(bad_role.value)


def test_cli_round_trip(shipway_home: Path) -> None:
    def cli(*args: str, ok: bool = True) -> tuple[str, str]:
        result = run_cli(shipway_home, *args)
        assert (result.returncode == 0) is ok, result.stderr
        return result.stdout, result.stderr

    out, err = cli("users", "create-admin", "alice")
    admin_token = out.strip()
    assert TOKEN.fullmatch(admin_token)
    assert "will not be shown again" in err
    _, err = cli("users", "create-admin", "mallory", ok=False)
    assert "admin already exists" in err and len(err.strip().splitlines()) == 1
    cli("users", "create", "bob", "--role", "developer")
    _, err = cli("users", "create", "carol", "--role", "boss", ok=False)
    assert "viewer, developer, approver, admin" in err and "Traceback" not in err
    out, _ = cli("tokens", "create", "bob", "--name", "ci", "--expires-days", "7", "--json")
    created = json.loads(out)
    bob_token = created.pop("token")
    cli("users", "set-role", "bob", "approver")
    users = json.loads(cli("users", "list", "--json")[0])
    listing = cli("tokens", "list", "--json")[0] + cli("tokens", "list", "bob")[0]
    cli("tokens", "revoke", created["id"])
    after = json.loads(cli("tokens", "list", "bob", "--json")[0])

    assert [(u["name"], u["role"]) for u in users] == [("alice", "admin"), ("bob", "approver")]
    assert created["name"] == "ci" and created["status"] == "active"
    for token in (admin_token, bob_token):
        assert token.split("_", 2)[2] not in listing
        assert hashlib.sha256(token.encode()).hexdigest() not in listing
    assert created["id"] in listing
    assert [(t["id"], t["status"]) for t in after] == [(created["id"], "revoked")]
    client = shipway.Client()
    try:
        assert authenticate(admin_token, client=client) == Identity(
            "alice", "admin", admin_token[4:12]
        )
        _refused(bob_token, client=client)
        assert shipway.verify_audit(client=client).ok
    finally:
        client.store.close()
