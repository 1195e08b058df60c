"""A model bundle: one model version as a self-contained directory, served without a store.

    bundle/
      model.json            the version's record (name, version, signature, card, digests)
      blobs/sha256/ab/...   its manifest and files, laid out as an artefact store

Because `blobs/` is itself a file-backed artefact store, loading a bundle verifies every
digest exactly as loading from the registry does. Container images carry a bundle.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from shipway.artifacts import ArtifactStore
from shipway.blobs import fetch_blob
from shipway.client import Client, get_client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.flavors.model import read_manifest
from shipway.records import ModelVersionInfo

PREFIX = "bundle:"
INFO_FILE = "model.json"


def is_bundle_uri(uri: str) -> bool:
    return uri.startswith(PREFIX)


def bundle_path(uri: str) -> Path:
    return Path(uri.removeprefix(PREFIX).removeprefix("//"))


def blob_store(directory: Path) -> ArtifactStore:
    return ArtifactStore((directory.resolve() / "blobs").as_uri())


def export_bundle(uri: str, dest: str | Path, *, client: Client | None = None) -> Path:
    """Copy the version `uri` names, with every blob it needs, into `dest`: from the local
    store, or downloaded from the team server (each digest checked on arrival) with one set."""
    from shipway.registry.registry import get_model_version

    client = client or get_client()
    info = get_model_version(uri, client=client)
    dest = Path(dest)
    target = blob_store(dest)
    with tempfile.TemporaryDirectory(prefix="shipway-bundle-") as tmp:

        def copy(digest: str) -> None:
            if not target.exists(digest):  # verified on the way out, hashed again on the way in
                target.put_file(fetch_blob(client, digest, Path(tmp) / digest))

        copy(info.manifest_digest)
        manifest = read_manifest(target, info.manifest_digest)
        for digest in [*manifest["files"].values(), *manifest.get("artifacts", {}).values()]:
            copy(digest)
    record = info.to_dict() | {"requirements": manifest.get("requirements", [])}
    (dest / INFO_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return dest


def read_bundle(directory: Path) -> ModelVersionInfo:
    path = directory / INFO_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(
            f"No model bundle at {directory}: {INFO_FILE} is missing.",
            "Create one with shipway.packaging.bundle.export_bundle().",
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}.") from None
    from datetime import datetime

    data.pop("requirements", None)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return ModelVersionInfo(**data)
