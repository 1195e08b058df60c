"""Evaluate a model version on held-out data: the metrics and fairness figures that the
`validate` stage and retraining compare, computed by the monitoring issue's own functions so
a threshold in the pipeline means what the same name means in a monitoring report."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pandas as pd

from shipway.blobs import get_blob
from shipway.client import Client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.monitoring.fairness import FairnessReport, fairness
from shipway.monitoring.performance import performance
from shipway.monitoring.sources import read_table, with_outputs
from shipway.records import ModelVersionInfo
from shipway.registry.registry import get_model_version, load_model

__all__ = ["Evaluation", "evaluate", "held_out"]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One version's figures on one held-out frame."""

    uri: str
    rows: int
    metrics: dict[str, float]
    fairness: FairnessReport | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "rows": self.rows,
            "metrics": self.metrics,
            "fairness": self.fairness.to_dict() if self.fairness else None,
        }


def held_out(
    version: ModelVersionInfo, dataset: str, directory: Path, client: Client
) -> tuple[pd.DataFrame, str]:
    """The frame ``dataset`` names and a description of it: a role among the datasets the
    version's training run logged (``evaluation``), or a CSV/Parquet file (relative to
    ``directory``)."""
    if "/" in dataset or "." in dataset:
        path = (directory / dataset).resolve()
        return read_table(path, "held-out data"), str(path)
    if version.run_id is None:
        raise NotFoundError(
            f"{version.uri} has no training run, so it has no '{dataset}' dataset.",
            "Name a file instead: `dataset: data/holdout.parquet`.",
        )
    from shipway.tracking.run import get_run

    logged = get_run(version.run_id, client=client).datasets
    found = [d for d in logged if d.role == dataset or d.name == dataset]
    if not found:
        roles = ", ".join(sorted({str(d.role or d.name) for d in logged})) or "none"
        raise NotFoundError(
            f"The run of {version.uri} logged no dataset with the role '{dataset}' "
            f"(it logged: {roles}).",
            "Log it with run.log_dataset(df, name=..., role='evaluation'), or name a file.",
        )
    chosen = found[0]
    frame = pd.read_parquet(io.BytesIO(get_blob(client, chosen.blob_digest)))
    return frame, f"dataset {chosen.name} (sha256 {chosen.content_hash[:12]}) of {version.uri}"


def evaluate(
    uri: str,
    frame: pd.DataFrame,
    *,
    label: str,
    sensitive: str | None = None,
    client: Client,
) -> Evaluation:
    """Predict ``frame`` with the version ``uri`` names and measure it against ``label``."""
    version = get_model_version(uri, client=client)
    loaded = load_model(version.uri, client=client)
    inputs = [c.name for c in loaded.signature.inputs] if loaded.signature else []
    if not inputs:
        raise InvalidInputError(f"{version.uri} has no signature, so its inputs are unknown.")
    for column in (label, *([sensitive] if sensitive else [])):
        if column not in frame.columns:
            raise InvalidInputError(
                f"The held-out data has no column '{column}'.",
                f"Its columns: {', '.join(map(str, frame.columns))}.",
            )
    missing = [c for c in inputs if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"The held-out data lacks the input column(s) {', '.join(missing)} of {version.uri}."
        )
    scored = with_outputs(loaded, frame, inputs)
    scores = [str(c) for c in scored.columns if str(c).startswith("proba.")]
    report = performance(scored, target=label, prediction="prediction", scores=scores)
    metrics = {k: float(v) for k, v in report.metrics.items() if v is not None}
    fair = (
        fairness(scored, sensitive=sensitive, prediction="prediction", target=label)
        if sensitive
        else None
    )
    return Evaluation(uri=version.uri, rows=len(frame), metrics=metrics, fairness=fair)
