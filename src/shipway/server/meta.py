"""Health, login and "who am I"."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from shipway.errors import OverloadedError
from shipway.server.endpoints import API, Call, Endpoint


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str


def _identity(identity: Any) -> dict[str, Any]:
    return {"user": identity.user, "role": identity.role, "token_id": identity.token_id}


def health(call: Call) -> dict[str, Any]:
    from shipway import __version__

    try:
        with call.client.store.read() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        raise OverloadedError("The metadata store does not answer.") from None
    return {"status": "ok", "version": __version__}


def login(call: Call) -> dict[str, Any]:
    """Check a token (as a web page would before keeping it) and say whose it is."""
    from shipway.governance.identity import authenticate

    return _identity(authenticate(call.body.token, client=call.client))


def me(call: Call) -> dict[str, Any]:
    return _identity(call.identity)


ENDPOINTS = [
    Endpoint("GET", f"{API}/health", health, "Check the server and its store", "meta", None),
    Endpoint(
        "POST",
        f"{API}/login",
        login,
        "Check a token and return its identity",
        "meta",
        None,
        body=Login,
        description="For the web UI: a 401 when the token is unknown, revoked or expired.",
    ),
    Endpoint("GET", f"{API}/me", me, "Show the caller's identity", "meta", "viewer"),
]
