"""Bearer-token authentication, as ASGI middleware around the whole app: deny by default.

Every request needs `Authorization: Bearer TOKEN` except the few (method, path) pairs in
`PUBLIC`, so a route added anywhere, even outside the route table, is never open by mistake.
The identity found goes into the scope for the route's role check. Tokens are never logged,
never echoed: every refusal says the same thing, whatever was wrong with the token.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from shipway.client import Client
from shipway.errors import UnauthorizedError
from shipway.server.endpoints import API
from shipway.server.ui import PUBLIC_PATHS as UI_PUBLIC
from shipway.serving.auth import send_unauthorized

PUBLIC = frozenset(
    {
        ("GET", f"{API}/health"),
        ("POST", f"{API}/login"),
        ("GET", f"{API}/openapi.json"),
        ("GET", "/docs"),
    }
)
"""What answers without a token (HEAD too, for each GET)."""

IDENTITY = "shipway.identity"
"""The scope key under which the authenticated `Identity` travels to the route."""

MISSING = "A token is required: send 'Authorization: Bearer TOKEN'."
HINT = (
    "Create one with `shipway tokens create USER` (an admin can, or `shipway users create-admin`)."
)


def is_public(method: str, path: str) -> bool:
    if method in ("GET", "HEAD") and path in UI_PUBLIC:  # the web UI's files, no data in them
        return True
    return (("GET" if method == "HEAD" else method), path) in PUBLIC


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class BearerAuth:
    def __init__(self, app: Any, client: Client) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope["headers"])
        if token is None:
            await _refuse(send, MISSING)
            return
        from shipway.governance.identity import authenticate

        try:
            identity = await run_in_threadpool(authenticate, token, client=self.client)
        except UnauthorizedError as exc:
            await _refuse(send, exc.message, exc.hint)
            return
        scope[IDENTITY] = identity
        await self.app(scope, receive, send)


async def _refuse(send: Any, message: str, hint: str | None = HINT) -> None:
    await send_unauthorized(send, {"error": message, "hint": hint})
