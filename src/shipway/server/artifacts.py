"""Artefact blobs by digest, and only by digest: `GET|PUT /api/v1/artifacts/{sha256}`.

A digest is 64 lower-case hex characters or the request is refused before any storage is
touched, so no path a caller sends ever reaches the filesystem. Uploads are streamed to a
temporary file while hashed and kept only if the bytes hash to the digest in the URL;
downloads are verified (the store re-hashes on read) before the first byte is sent. A HEAD
answers whether the blob is here without reading it, so clients skip uploading what exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from shipway.errors import MalformedRequestError, NotFoundError, PayloadTooLargeError
from shipway.server.endpoints import API, Call, Endpoint

DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_UPLOAD_BYTES = 4 * 1024**3


def _digest(call: Call) -> str:
    digest = call.path["sha256"]
    if not DIGEST.fullmatch(digest):
        raise MalformedRequestError(
            "An artefact is named by its SHA-256 digest: 64 lower-case hex characters."
        )
    return digest


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def download(call: Call) -> Response:
    digest = _digest(call)
    if call.request.method == "HEAD":  # "do you have it?", before an upload: no read, no hash
        return await run_in_threadpool(_head, call, digest)
    fd, tmp = tempfile.mkstemp(prefix="shipway-blob-")
    os.close(fd)
    try:
        await run_in_threadpool(call.client.artifacts.download, digest, tmp)
    except BaseException:
        _unlink(tmp)
        raise
    return FileResponse(
        tmp,
        media_type="application/octet-stream",
        headers={"etag": f'"{digest}"', "x-content-sha256": digest},
        background=BackgroundTask(_unlink, tmp),
    )


def _head(call: Call, digest: str) -> Response:
    store = call.client.artifacts
    if not store.exists(digest):
        raise NotFoundError(f"Blob {digest} is not on this server.")
    size = store.fs.size(store._path(digest))
    return Response(
        headers={"etag": f'"{digest}"', "x-content-sha256": digest, "content-length": str(size)},
        media_type="application/octet-stream",
    )


async def upload(call: Call) -> dict[str, Any]:
    digest = _digest(call)
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix="shipway-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in call.request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise PayloadTooLargeError(f"Uploads are limited to {MAX_UPLOAD_BYTES} bytes.")
                h.update(chunk)
                out.write(chunk)
        actual = h.hexdigest()
        if actual != digest:
            raise MalformedRequestError(
                f"The uploaded bytes hash to {actual[:12]}..., not {digest[:12]}...; not stored.",
                "Upload the blob whose SHA-256 is in the URL.",
            )
        created = await run_in_threadpool(_store, call, Path(tmp), digest, size)
    finally:
        _unlink(tmp)
    return {"digest": digest, "size": size, "created": created}


def _store(call: Call, path: Path, digest: str, size: int) -> bool:
    """Keep the blob; a new one is an audited change (re-sending one we have changes nothing)."""
    client = call.client
    if client.artifacts.exists(digest):
        return False
    client.artifacts.put_file(path)
    with client.write() as tx:
        tx.audit("artifact.upload", f"blob:{digest}", after={"size": size})
    return True


_BLOB = f"{API}/artifacts/{{sha256}}"
ENDPOINTS = [
    Endpoint(
        "GET",
        _BLOB,
        download,
        "Download an artefact blob",
        "artifacts",
        "viewer",
        description="The bytes whose SHA-256 is the digest, verified before they are sent. "
        "HEAD answers 200 or 404 without reading the blob.",
    ),
    Endpoint(
        "PUT",
        _BLOB,
        upload,
        "Upload an artefact blob",
        "artifacts",
        "developer",
        raw_body="application/octet-stream",
        description="Stored only if the bytes hash to the digest in the URL (else 400).",
    ),
]
