"""JSON from the team server back into the records the local API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shipway.records import (
    AuditEntry,
    DatasetInfo,
    ImageInfo,
    ModelVersionInfo,
    RegisteredModelInfo,
    RunInfo,
)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def dataset(d: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        d["name"], d["content_hash"], d["blob_digest"], d["num_rows"], d["schema"], d.get("role")
    )


def run(d: dict[str, Any]) -> RunInfo:
    return RunInfo(
        **d
        | {
            "start_time": _when(d["start_time"]),
            "end_time": _time(d["end_time"]),
            "datasets": [dataset(x) for x in d["datasets"]],
        }
    )


def version(d: dict[str, Any]) -> ModelVersionInfo:
    return ModelVersionInfo(**d | {"created_at": _when(d["created_at"])})


def model(d: dict[str, Any]) -> RegisteredModelInfo:
    return RegisteredModelInfo(**d | {"created_at": _when(d["created_at"])})


def audit_entry(d: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        d["seq"],
        _when(d["time"]),
        d["actor"],
        d["action"],
        d["subject"],
        d["before"],
        d["after"],
        d["hash"],
        d.get("source"),
    )


def image(d: dict[str, Any]) -> ImageInfo:
    return ImageInfo(
        **d
        | {
            "created_at": _when(d["created_at"]),
            "pushed_at": _time(d.get("pushed_at")),
        }
    )
