"""Optional API-key auth, as plain ASGI middleware (cheap on the hot path).

Keys come as `Authorization: Bearer KEY` or `X-API-Key: KEY`, are compared in constant time,
and are never logged. Health probes stay open so that orchestrators can check liveness.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"})


class ApiKeyMiddleware:
    def __init__(self, app: Any, keys: list[str]) -> None:
        self.app = app
        # Compare digests, so every comparison takes as long whatever the key's length.
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def _valid(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(d, digest)
        return ok

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = ""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].decode("latin-1").strip()
            elif name == b"x-api-key":
                presented = value.decode("latin-1").strip()
        if presented and self._valid(presented):
            await self.app(scope, receive, send)
            return
        error = "A valid API key is required: send 'Authorization: Bearer KEY'."
        await send_unauthorized(send, {"error": error})


async def send_unauthorized(send: Any, error: dict[str, Any]) -> None:
    """A 401 with a JSON body and the Bearer challenge, straight on the ASGI channel (the
    model server's and the team server's auth middleware both answer so)."""
    body = orjson.dumps(error)
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="shipway"'),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
