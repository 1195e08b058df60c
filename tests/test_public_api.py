"""Pins the public API: adding or removing a name from `shipway` must be a deliberate change."""

from __future__ import annotations

import importlib
from importlib import metadata

import pytest

import shipway

PUBLIC_API = [
    "AuditEntry",
    "Client",
    "ColumnSpec",
    "ConflictError",
    "CorruptArtifactError",
    "DatasetInfo",
    "IntegrityError",
    "InvalidInputError",
    "LoadedModel",
    "LoggedModel",
    "ModelVersionInfo",
    "MonitorResult",
    "NotFoundError",
    "OutputSpec",
    "PythonModel",
    "RegisteredModelInfo",
    "ReproduceReport",
    "Run",
    "RunInfo",
    "Settings",
    "ShipwayError",
    "Signature",
    "UntrustedModelError",
    "VerifyReport",
    "__version__",
    "archive_version",
    "audit_log",
    "delete_alias",
    "get_model_version",
    "get_run",
    "infer_signature",
    "lineage",
    "list_models",
    "list_runs",
    "list_versions",
    "load_model",
    "monitor",
    "register_model",
    "reproduce",
    "set_alias",
    "start_run",
    "update_model_card",
    "verify_audit",
]


def test_all_is_pinned_and_sorted() -> None:
    assert shipway.__all__ == PUBLIC_API
    assert sorted(shipway.__all__) == shipway.__all__


@pytest.mark.parametrize("name", PUBLIC_API)
def test_each_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("shipway")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from shipway import {name}", namespace)
    assert namespace[name] is getattr(shipway, name)


def test_star_import_exports_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from shipway import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_API


def test_errors_share_one_root() -> None:
    for name in PUBLIC_API:
        obj = getattr(shipway, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, shipway.ShipwayError), name
    assert issubclass(shipway.CorruptArtifactError, shipway.IntegrityError)
    assert issubclass(shipway.UntrustedModelError, shipway.IntegrityError)


def test_version_matches_package_metadata() -> None:
    assert shipway.__version__ == metadata.version("shipway")
