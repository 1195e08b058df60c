"""`RemoteApi`: the team server's REST API as the Python API needs it.

One `httpx.Client` with the base URL, the bearer token, timeouts and retries. A connection that
could not be made is retried for any request (nothing was sent); other transport failures only
for idempotent methods, since a POST may have been applied before its answer was lost. An
error answer (`{"error", "hint"}`, its status, and the class the server names in
`x-shipway-error`) is raised as the same `ShipwayError` subclass a local call would raise.

A list longer than the server's page (`PAGE`, 1000 entries) is read page by page (`get_list`).

Blobs move by digest: an upload asks first (HEAD) and sends only what the server lacks; a
download is hashed on the way in and kept only if it matches, whatever the server checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from shipway import errors
from shipway.artifacts.store import sha256_bytes, sha256_file
from shipway.errors import (
    CorruptArtifactError,
    InvalidInputError,
    ShipwayError,
    UnauthorizedError,
    UnreachableError,
)

API = "/api/v1"
PAGE = 1000
"""The most entries the server's list endpoints answer at once."""
CHUNK = 1 << 20
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
TOKEN_HINT = (
    "Create one with `shipway tokens create USER` where the server's store is (an admin can; "
    "`shipway users create-admin NAME` makes the first admin), and set SHIPWAY_TOKEN to it."
)
_BY_STATUS: dict[int, type[ShipwayError]] = {
    400: errors.MalformedRequestError,
    401: errors.UnauthorizedError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    422: errors.InvalidInputError,
    503: errors.OverloadedError,
}


def segment(value: str | int) -> str:
    """One path segment, quoted so that no '/' or '..' a caller passes changes the route."""
    return quote(str(value), safe="")


class RemoteApi:
    """The team server at `url`; `transport` replaces the network (tests pass their own)."""

    def __init__(
        self,
        url: str,
        token: SecretStr | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 120.0,
        retries: int = 3,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"SHIPWAY_TRACKING_URI must be an http:// or https:// URL, got '{url}'.",
                "For example SHIPWAY_TRACKING_URI=http://shipway.example.com:8800.",
            )
        self.url = url.rstrip("/")
        self.has_token = token is not None and bool(token.get_secret_value())
        headers = {"user-agent": "shipway-python"}
        if token is not None and self.has_token:
            headers["authorization"] = f"Bearer {token.get_secret_value()}"
        self.retries = max(1, retries)
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"<RemoteApi {self.url}>"

    def close(self) -> None:
        self.http.close()

    # -- requests -------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params).json()

    def get_list(
        self, path: str, limit: int | None, key: Callable[[Any], Hashable], **params: Any
    ) -> list[Any]:
        """The first `limit` entries of a list endpoint (all of them if None), in its order.

        Page after page (`offset`, `limit`) until there are enough or a page comes back short.
        An entry added at the head meanwhile shifts the rest by one: the repeat it causes is
        dropped (by `key`), and a page that brings nothing new ends the reading.
        """
        found: dict[Hashable, Any] = {}
        offset = 0
        while limit is None or len(found) < limit:
            size = PAGE if limit is None else min(PAGE, limit - len(found))
            batch = self.get(path, **params, offset=offset, limit=size)
            before = len(found)
            for entry in batch:
                found.setdefault(key(entry), entry)
            offset += len(batch)
            if len(batch) < size or len(found) == before:
                break
        return list(found.values())[:limit]

    def post(
        self, path: str, body: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """`timeout`: the read timeout of this request, for one that waits on the server's
        side (a deployment going live) longer than the client's default."""
        return self.call("POST", path, json=dict(body or {}), timeout=timeout).json()

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.call("PUT", path, json=dict(body)).json()

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.call("PATCH", path, json=dict(body)).json()

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path).json()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Callable[[], Iterator[bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send `method API+path`; a 2xx (or a status in `ok`) is returned, anything else
        raised as its ShipwayError. `content` makes a fresh body for each attempt."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        limit = self.http.timeout if timeout is None else httpx.Timeout(timeout, connect=10.0)
        for attempt in range(self.retries):
            request = self.http.build_request(
                method,
                API + path,
                params=query,
                json=json,
                content=content() if content is not None else None,
                headers=headers,
                timeout=limit,
            )
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt + 1 < self.retries and (unsent or method in IDEMPOTENT):
                    time.sleep(0.25 * 2**attempt)
                    continue
                raise self._transport_error(exc, method, unsent) from None
            if response.is_success or response.status_code in ok:
                return response
            if stream:
                response.read()
                response.close()
            raise self._error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_error(
        self, exc: httpx.TransportError, method: str, unsent: bool
    ) -> ShipwayError:
        if unsent:
            return UnreachableError(
                f"Cannot reach the Shipway server at {self.url} ({type(exc).__name__}).",
                "Check SHIPWAY_TRACKING_URI (scheme, host and port), that `shipway server` "
                "is running there, and that this machine can reach it.",
            )
        applied = "" if method in IDEMPOTENT else " The change may or may not have been applied."
        return UnreachableError(
            f"The Shipway server at {self.url} stopped answering ({type(exc).__name__}).{applied}",
            "Check that the server is up (GET /api/v1/health) and retry.",
        )

    def _error(self, response: httpx.Response) -> ShipwayError:
        status = response.status_code
        message, hint = f"The Shipway server at {self.url} answered HTTP {status}.", None
        with contextlib.suppress(ValueError, AttributeError):
            body = response.json()
            message, hint = str(body["error"]), body.get("hint")
        if status == 401:  # never the token itself: only whether one was sent
            if not self.has_token:
                return UnauthorizedError(
                    f"The Shipway server at {self.url} needs a token; SHIPWAY_TOKEN is not set.",
                    TOKEN_HINT,
                )
            return UnauthorizedError(
                f"The Shipway server at {self.url} refused the token in SHIPWAY_TOKEN: it is "
                "unknown, revoked or expired, or its user is disabled.",
                TOKEN_HINT,
            )
        named = getattr(errors, response.headers.get("x-shipway-error", ""), None)
        if isinstance(named, type) and issubclass(named, ShipwayError):
            return named(message, hint)
        if status == 404 and hint is None:
            hint = f"Is the server at {self.url} a Shipway team server of this version?"
        return _BY_STATUS.get(status, ShipwayError)(message, hint)

    # -- blobs ----------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        response = self.call("HEAD", f"/artifacts/{digest}", ok=(404,))
        return response.status_code != 404

    def upload_file(self, path: str | Path) -> str:
        """Upload a file unless the server has its blob already; its digest."""
        digest = sha256_file(path)
        if not self.has_blob(digest):

            def body() -> Iterator[bytes]:
                with open(path, "rb") as fh:
                    yield from iter(lambda: fh.read(CHUNK), b"")

            self._put_blob(digest, body, os.path.getsize(path))
        return digest

    def upload_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        if not self.has_blob(digest):
            self._put_blob(digest, lambda: iter([data]), len(data))
        return digest

    def _put_blob(self, digest: str, body: Callable[[], Iterator[bytes]], size: int) -> None:
        self.call(
            "PUT",
            f"/artifacts/{digest}",
            content=body,
            headers={"content-type": "application/octet-stream", "content-length": str(size)},
        )

    def download(self, digest: str, dest: str | Path) -> Path:
        """Fetch a blob into `dest`, hashing it on the way; `dest` appears only if it matches."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                response = self.call("GET", f"/artifacts/{digest}", stream=True)
                try:
                    for chunk in response.iter_bytes(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                except httpx.TransportError as exc:
                    raise self._transport_error(exc, "GET", False) from None
                finally:
                    response.close()
            actual = h.hexdigest()
            if actual != digest:
                raise CorruptArtifactError(
                    f"Blob {digest} downloaded from {self.url} is corrupted: its content hashes "
                    f"to {actual[:12]}..., not {digest[:12]}...; refusing to load it.",
                    "Retry; if it persists, the server's copy is damaged: restore it from a "
                    "backup, or log the artefact again.",
                )
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest
