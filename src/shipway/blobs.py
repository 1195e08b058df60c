"""Blobs in whichever store the client works with: the local artefact store, or the team
server's through its API when `SHIPWAY_TRACKING_URI` is set, so a record never names a blob
the other side cannot read (a pipeline's logs and outputs, an image's SBOM, a model's files).

Every read is verified against its digest wherever it comes from: the local store hashes what
it hands out, and a download from the server is hashed on arrival and kept only if it matches.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shipway.client import Client

__all__ = ["fetch_blob", "get_blob", "put_blob"]


def put_blob(client: Client, path: str | Path) -> str:
    """Store the file at ``path`` (unless the store has it already); its digest."""
    if client.remote:
        return client.remote.upload_file(path)
    return client.artifacts.put_file(path)


def get_blob(client: Client, digest: str) -> bytes:
    """The bytes of blob ``digest``, verified against it wherever they come from."""
    if client.remote:
        with tempfile.TemporaryDirectory(prefix="shipway-fetch-") as tmp:
            return fetch_blob(client, digest, Path(tmp) / "blob").read_bytes()
    return client.artifacts.get_bytes(digest)


def fetch_blob(client: Client, digest: str, dest: str | Path) -> Path:
    """Blob ``digest`` as the file ``dest``, which appears only once its digest is checked."""
    if client.remote:
        return client.remote.download(digest, dest)
    return client.artifacts.download(digest, dest)
