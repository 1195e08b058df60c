"""A pipeline's blobs (stage logs, output files, held-out datasets) in whichever store the
client works with: the local artefact store, or the team server's through its API when
`SHIPWAY_TRACKING_URI` is set, so a record never names a blob the other side cannot read."""

from __future__ import annotations

import tempfile
from pathlib import Path

from shipway.client import Client

__all__ = ["get_blob", "put_blob"]


def put_blob(client: Client, path: str | Path) -> str:
    """Store the file at ``path`` (unless the store has it already); its digest."""
    if client.remote:
        return client.remote.upload_file(path)
    return client.artifacts.put_file(path)


def get_blob(client: Client, digest: str) -> bytes:
    """The bytes of blob ``digest``, verified against it wherever they come from."""
    if client.remote:
        with tempfile.TemporaryDirectory(prefix="shipway-fetch-") as tmp:
            return client.remote.download(digest, Path(tmp) / "blob").read_bytes()
    return client.artifacts.get_bytes(digest)
