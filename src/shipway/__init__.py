"""Shipway: take a model from a notebook to a dependable production service.

import shipway

with shipway.start_run(experiment="credit", seed=7) as run:
    ...
    run.log_model(model, input_example=X.head())
version = shipway.register_model(run, "credit")
shipway.set_alias(version.uri, "champion")
model = shipway.load_model("models:/credit@champion")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipway.client import Client
    from shipway.config import Settings
    from shipway.errors import (
        ConflictError,
        CorruptArtifactError,
        IntegrityError,
        InvalidInputError,
        NotFoundError,
        ShipwayError,
        UntrustedModelError,
    )
    from shipway.flavors import LoadedModel, PythonModel
    from shipway.governance.audit import VerifyReport, audit_log, verify_audit
    from shipway.governance.lineage import lineage
    from shipway.monitoring.monitor import monitor
    from shipway.monitoring.result import MonitorResult
    from shipway.records import (
        AuditEntry,
        DatasetInfo,
        LoggedModel,
        ModelVersionInfo,
        RegisteredModelInfo,
        RunInfo,
    )
    from shipway.registry.registry import (
        archive_version,
        delete_alias,
        get_model_version,
        list_models,
        list_versions,
        load_model,
        register_model,
        set_alias,
        update_model_card,
    )
    from shipway.tracking import Run, get_run, list_runs, start_run
    from shipway.tracking.reproduce import ReproduceReport, reproduce
    from shipway.types import ColumnSpec, OutputSpec, Signature, infer_signature

__version__ = "0.1.0"

# Imported on first use, so that `shipway --help` and `import shipway` stay instant.
_LAZY = {
    "AuditEntry": "shipway.records",
    "Client": "shipway.client",
    "ColumnSpec": "shipway.types",
    "ConflictError": "shipway.errors",
    "CorruptArtifactError": "shipway.errors",
    "DatasetInfo": "shipway.records",
    "IntegrityError": "shipway.errors",
    "InvalidInputError": "shipway.errors",
    "LoadedModel": "shipway.flavors",
    "LoggedModel": "shipway.records",
    "ModelVersionInfo": "shipway.records",
    "MonitorResult": "shipway.monitoring.result",
    "NotFoundError": "shipway.errors",
    "OutputSpec": "shipway.types",
    "PythonModel": "shipway.flavors",
    "RegisteredModelInfo": "shipway.records",
    "ReproduceReport": "shipway.tracking.reproduce",
    "Run": "shipway.tracking",
    "RunInfo": "shipway.records",
    "Settings": "shipway.config",
    "ShipwayError": "shipway.errors",
    "Signature": "shipway.types",
    "UntrustedModelError": "shipway.errors",
    "VerifyReport": "shipway.governance.audit",
    "archive_version": "shipway.registry.registry",
    "audit_log": "shipway.governance.audit",
    "delete_alias": "shipway.registry.registry",
    "get_model_version": "shipway.registry.registry",
    "get_run": "shipway.tracking",
    "infer_signature": "shipway.types",
    "lineage": "shipway.governance.lineage",
    "list_models": "shipway.registry.registry",
    "list_runs": "shipway.tracking",
    "list_versions": "shipway.registry.registry",
    "load_model": "shipway.registry.registry",
    "monitor": "shipway.monitoring.monitor",
    "register_model": "shipway.registry.registry",
    "reproduce": "shipway.tracking.reproduce",
    "set_alias": "shipway.registry.registry",
    "start_run": "shipway.tracking",
    "update_model_card": "shipway.registry.registry",
    "verify_audit": "shipway.governance.audit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'shipway' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
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
