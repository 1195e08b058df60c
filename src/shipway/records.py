"""Plain read-only records returned by the Python API (and printed by `--json`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class DatasetInfo(_Record):
    name: str
    content_hash: str
    blob_digest: str
    num_rows: int
    schema: list[dict[str, Any]]
    role: str | None = None


@dataclasses.dataclass(frozen=True)
class RunInfo(_Record):
    id: str
    experiment: str
    name: str | None
    status: str
    error: str | None
    actor: str
    start_time: datetime
    end_time: datetime | None
    environment: dict[str, Any]
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    datasets: list[DatasetInfo]
    artifacts: dict[str, str]
    models: dict[str, str]


@dataclasses.dataclass(frozen=True)
class LoggedModel(_Record):
    """A model saved into the artefact store, identified by the digest of its manifest."""

    manifest_digest: str
    flavor: str
    signature: dict[str, Any] | None
    run_id: str | None = None
    name: str = "model"

    @property
    def uri(self) -> str:
        return (
            f"runs:/{self.run_id}/{self.name}" if self.run_id else f"blobs:/{self.manifest_digest}"
        )


@dataclasses.dataclass(frozen=True)
class ModelVersionInfo(_Record):
    name: str
    version: int
    run_id: str | None
    flavor: str
    manifest_digest: str
    signature: dict[str, Any] | None
    card: dict[str, Any]
    archived: bool
    aliases: list[str]
    created_by: str
    created_at: datetime

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclasses.dataclass(frozen=True)
class RegisteredModelInfo(_Record):
    name: str
    description: str | None
    latest_version: int | None
    versions: int
    aliases: dict[str, int]
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class AuditEntry(_Record):
    seq: int
    time: datetime
    actor: str
    action: str
    subject: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    hash: str
    source: str | None = None  # the client address, for changes made through the server


@dataclasses.dataclass(frozen=True)
class ImageInfo(_Record):
    """A container image built from a model version, and where it was pushed."""

    model: str
    version: int
    kind: str
    tag: str
    image_id: str
    size_bytes: int
    base_image: str
    engine: str
    lock_digest: str
    sbom_digest: str | None
    pushed_ref: str | None
    created_by: str
    created_at: datetime
    pushed_at: datetime | None
    sbom_pushed_digest: str | None  # the SBOM artifact pushed beside the image
