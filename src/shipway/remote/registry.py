"""The registry through the team server: versions, aliases, cards, loading, lineage, audit.

URIs are parsed here as locally, so a malformed one fails the same way before any request.
`load_model` fetches the manifest and every file it names into a blob cache under
`SHIPWAY_HOME/cache` (each blob hashed on arrival, fetched once per machine), then loads through
the same code as a local load, which verifies every digest again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from shipway.artifacts import ArtifactStore
from shipway.client import Client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.flavors import LoadedModel, load_from_manifest, save_to_store
from shipway.flavors.model import read_manifest
from shipway.governance.audit import VerifyReport
from shipway.records import (
    AuditEntry,
    LoggedModel,
    ModelVersionInfo,
    RegisteredModelInfo,
)
from shipway.registry.uri import check_alias, check_name, parse
from shipway.remote import records
from shipway.remote._http import RemoteApi, segment
from shipway.remote.tracking import api_of, get_run, upload_model
from shipway.tracking.run import Run


def _model(name: str) -> str:
    return f"/models/{segment(name)}"


def _source(source: object, client: Client, input_example: Any) -> dict[str, str]:
    """What a registration names: a run and the name of a model logged with it, or the
    manifest of a model with no run (a model object is saved here and uploaded first)."""
    if isinstance(source, Run):
        from shipway.registry.registry import run_model_name

        models = get_run(source.id, client=client).models
        return {"run_id": source.id, "artifact": run_model_name(source.id, models)}
    if isinstance(source, LoggedModel):
        if source.run_id is None:  # saved with no run: its blobs must be on the server
            return {"manifest_digest": source.manifest_digest}
        return {"run_id": source.run_id, "artifact": source.name}
    if isinstance(source, str):
        if not source.startswith("runs:/"):
            raise InvalidInputError(
                f"Cannot register '{source}'.", "Pass a run, a logged model or runs:/RUN_ID/NAME."
            )
        run_id, _, name = source.removeprefix("runs:/").partition("/")
        return {"run_id": run_id, "artifact": name or "model"}
    return {"manifest_digest": _upload(source, client, input_example)}


def _upload(model: object, client: Client, input_example: Any) -> str:
    """Save `model` as locally, into a staging store, and upload its blobs; its manifest."""
    with tempfile.TemporaryDirectory(prefix="shipway-stage-") as tmp:
        staging = ArtifactStore(Path(tmp).as_uri())
        logged = save_to_store(staging, model, input_example=input_example)
        upload_model(api_of(client), staging, logged.manifest_digest)
    return logged.manifest_digest


def register_model(
    source: object,
    name: str,
    *,
    description: str | None,
    input_example: Any = None,
    client: Client,
) -> ModelVersionInfo:
    check_name(name)
    body = _source(source, client, input_example) | {"description": description}
    return records.version(api_of(client).post(f"{_model(name)}/versions", body))


def get_model_version(uri: str, *, client: Client) -> ModelVersionInfo:
    ref = parse(uri)
    api = api_of(client)
    if ref.version is not None:
        return records.version(api.get(f"{_model(ref.name)}/versions/{ref.version}"))
    if ref.alias is not None:
        return records.version(api.get(f"{_model(ref.name)}/aliases/{segment(ref.alias)}"))
    live = [v for v in list_versions(ref.name, client=client) if not v.archived]
    if not live:
        raise NotFoundError(f"Model '{ref.name}' has no live versions.")
    return max(live, key=lambda v: v.version)


def _version_path(uri: str, client: Client) -> str:
    ref = parse(uri)
    number = ref.version or get_model_version(uri, client=client).version
    return f"{_model(ref.name)}/versions/{number}"


def list_versions(name: str, *, client: Client) -> list[ModelVersionInfo]:
    data = api_of(client).get_list(f"{_model(name)}/versions", None, _version)
    return [records.version(d) for d in data]


def _version(entry: dict[str, Any]) -> Any:
    return entry["version"]


def list_models(*, client: Client) -> list[RegisteredModelInfo]:
    return [records.model(d) for d in api_of(client).get_list("/models", None, _name)]


def _name(entry: dict[str, Any]) -> Any:
    return entry["name"]


def set_alias(uri: str, alias: str, *, client: Client) -> ModelVersionInfo:
    check_alias(alias)
    ref = parse(uri)
    number = ref.version or get_model_version(uri, client=client).version
    path = f"{_model(ref.name)}/aliases/{segment(alias)}"
    return records.version(api_of(client).put(path, {"version": number}))


def delete_alias(name: str, alias: str, *, client: Client) -> None:
    check_name(name)
    check_alias(alias)
    api_of(client).delete(f"{_model(name)}/aliases/{segment(alias)}")


def archive_version(uri: str, *, client: Client) -> ModelVersionInfo:
    path = _version_path(uri, client)
    return records.version(api_of(client).post(f"{path}/archive"))


def update_model_card(
    uri: str, fields: dict[str, str | None], *, client: Client
) -> ModelVersionInfo:
    path = _version_path(uri, client)
    return records.version(api_of(client).patch(f"{path}/card", fields))


def load_model(uri: str, *, client: Client) -> LoadedModel:
    info = get_model_version(uri, client=client)
    cache = ArtifactStore((client.settings.home / "cache" / "blobs").as_uri())
    fetch_model(api_of(client), cache, info.manifest_digest)
    return load_from_manifest(cache, info.manifest_digest)


def fetch_model(api: RemoteApi, into: ArtifactStore, manifest_digest: str) -> None:
    """The manifest and every blob it names, from the server into the local store `into`
    (what `into` holds already is not fetched again: blobs are immutable by digest)."""
    if not into.exists(manifest_digest):
        api.download(manifest_digest, into._path(manifest_digest))
    manifest = read_manifest(into, manifest_digest)
    digests = [*manifest["files"].values(), *(manifest.get("artifacts") or {}).values()]
    for digest in dict.fromkeys(digests):
        if not into.exists(digest):
            api.download(digest, into._path(digest))


def lineage(uri: str, *, client: Client) -> dict[str, Any]:
    parse(uri)
    data: dict[str, Any] = api_of(client).get("/lineage", uri=uri)
    return data


def audit_log(limit: int, subject: str | None, *, client: Client) -> list[AuditEntry]:
    """The newest `limit` entries, oldest first (read back from the newest, a page at a
    time: each page is oldest first, the pages newest first)."""
    data = api_of(client).get_list("/audit", max(1, limit), _seq, subject=subject or None)
    return [records.audit_entry(d) for d in sorted(data, key=_seq)]


def _seq(entry: dict[str, Any]) -> Any:
    return entry["seq"]


def verify_audit(*, client: Client) -> VerifyReport:
    return VerifyReport(**api_of(client).get("/audit/verify"))
