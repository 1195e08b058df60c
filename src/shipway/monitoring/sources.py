"""Where monitoring data comes from: files, a model version's datasets, the prediction log.

The prediction log stores inputs as ``input.<name>``, outputs as ``prediction`` and
``proba.<class>``, and labels arrive through ``/feedback``. :func:`prediction_window` renames
them so a window lines up with the reference: inputs by their own names, the label under the
target's name. :func:`model_reference` gives the reference the same output columns by running
the model version on its own training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from shipway.client import Client, get_client
from shipway.durations import parse_duration
from shipway.errors import InvalidInputError, NotFoundError
from shipway.monitoring.history import stored_profile
from shipway.monitoring.profile import Profile, profile
from shipway.monitoring.result import Source
from shipway.registry.registry import _resolve
from shipway.registry.uri import parse
from shipway.store import tables as t

__all__ = [
    "ModelReference",
    "model_reference",
    "parse_window",
    "prediction_window",
    "read_table",
    "with_outputs",
]

PROFILE_FORMAT = 1
"""Bump when a profile computed by older code must not be reused."""
OUTPUT_ROWS = 200_000
"""Reference rows the model predicts to profile its outputs (a seeded sample beyond that)."""



def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; anything else is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"No {what} file at {path}.", "Pass a CSV or Parquet file.")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() in (".csv", ".tsv") or suffix.endswith((".csv.gz", ".tsv.gz")):
            return pd.read_csv(path, sep="\t" if ".tsv" in suffix else ",")
    except Exception as exc:  # a malformed file of a known type
        raise InvalidInputError(f"Cannot read the {what} file {path}: {exc}") from exc
    raise InvalidInputError(
        f"Cannot read the {what} file {path}: unknown format '{path.suffix}'.",
        "Use .csv, .tsv or .parquet.",
    )


def parse_window(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` as a duration."""
    return parse_duration(text, "window")


@dataclass(frozen=True)
class ModelReference:
    """A model version's reference: its stored profile, and labelled outputs for metrics."""

    model: str
    version: int
    profile: Profile
    source: Source
    inputs: list[str]
    target: str | None
    scores: list[str]
    performance_reference: pd.DataFrame | None
    """The evaluation dataset (else training) with the model's outputs, for reference metrics."""


def model_reference(
    uri: str, *, target: str | None = None, client: Client | None = None
) -> ModelReference:
    """The training dataset of the version ``uri`` names, profiled once with its outputs."""
    client = client or get_client()
    with client.store.read() as session:
        model, mv = _resolve(session, parse(uri))
        name, version, run_id = model.name, mv.version, mv.run_id
        rows = session.execute(
            select(t.Dataset, t.RunInput.role)
            .join(t.RunInput, t.RunInput.dataset_id == t.Dataset.id)
            .where(t.RunInput.run_id == run_id)
        ).all()
    datasets = {role: ds for ds, role in rows}
    training = datasets.get("training") or next(iter(datasets.values()), None)
    if training is None:
        raise NotFoundError(
            f"models:/{name}/{version} has no logged dataset to use as the reference.",
            "Log the training data with run.log_dataset(df, name=...), or pass --reference FILE.",
        )
    from shipway.registry.registry import load_model

    loaded = load_model(f"models:/{name}/{version}", client=client)
    inputs = [c.name for c in loaded.signature.inputs] if loaded.signature else []
    if not inputs:
        raise InvalidInputError(
            f"models:/{name}/{version} has no signature, so its inputs are unknown.",
            "Register it from a run that logged the model with an input example.",
        )
    frame = _read_dataset(client, training)
    target = _target(frame, inputs, target, f"dataset '{training.name}'")

    def compute() -> Profile:
        sample = frame if len(frame) <= OUTPUT_ROWS else frame.sample(OUTPUT_ROWS, random_state=0)
        predicted = with_outputs(loaded, sample, inputs)
        # features from all rows; outputs from the (sampled) rows the model predicted
        full = profile(frame[[*inputs, *([target] if target else [])]])
        outputs = profile(predicted[[c for c in predicted if c not in frame.columns]])
        return full.model_copy(update={"columns": [*full.columns, *outputs.columns]})

    key = f"{training.content_hash}|models:/{name}/{version}|{target}|v{PROFILE_FORMAT}"
    ref_profile = stored_profile(key, compute, dataset_id=training.id, client=client)
    scores = [c.name for c in ref_profile.columns if c.name.startswith("proba.")]
    evaluation = datasets.get("evaluation")
    perf_frame = _read_dataset(client, evaluation) if evaluation is not None else frame
    if target is not None and target in perf_frame:
        perf_frame = with_outputs(loaded, perf_frame.head(OUTPUT_ROWS), inputs)
    else:
        perf_frame = None
    return ModelReference(
        model=name,
        version=version,
        profile=ref_profile,
        source=Source(
            kind="dataset",
            description=f"dataset {training.name} (sha256 {training.content_hash[:12]}) "
            f"of models:/{name}/{version}",
            rows=training.num_rows,
        ),
        inputs=inputs,
        target=target,
        scores=scores,
        performance_reference=perf_frame,
    )


def _read_dataset(client: Client, dataset: t.Dataset) -> pd.DataFrame:
    import io

    return pd.read_parquet(io.BytesIO(client.artifacts.get_bytes(dataset.blob_digest)))


def _target(frame: pd.DataFrame, inputs: list[str], target: str | None, what: str) -> str | None:
    if target is not None:
        if target not in frame:
            raise InvalidInputError(
                f"The target column '{target}' is not in {what}.",
                f"Its columns: {', '.join(map(str, frame.columns))}.",
            )
        return target
    extra = [str(c) for c in frame.columns if c not in inputs]
    return extra[0] if len(extra) == 1 else None  # ambiguous or absent: no label metrics


def with_outputs(loaded: Any, frame: pd.DataFrame, inputs: list[str]) -> pd.DataFrame:
    """``frame`` plus ``prediction`` and ``proba.<class>`` as the server logs them."""
    x = frame[inputs]
    out = frame.copy()
    if loaded.has_proba:
        proba = loaded.predict_proba(x)
        classes = list(getattr(loaded.impl, "classes_", range(proba.shape[1])))
        for i, cls in enumerate(classes):
            out[f"proba.{cls}"] = proba[:, i]
        out["prediction"] = pd.Series(classes, dtype=object).iloc[proba.argmax(axis=1)].to_numpy()
        out["prediction"] = out["prediction"].infer_objects()
    else:
        out["prediction"] = loaded.predict(x)
    return out


def prediction_window(
    model: str,
    *,
    version: int | None,
    target: str | None,
    window: timedelta | None = None,
    since: datetime | None = None,
    rows: int | None = None,
    now: datetime | None = None,
    client: Client | None = None,
) -> tuple[pd.DataFrame, Source]:
    """Logged predictions of ``model`` (one version, or all), joined with their labels."""
    from shipway.serving.predlog import join_feedback, read_feedback, read_predictions

    client = client or get_client()
    now = now or datetime.now(UTC)
    start = since if since is not None else (now - window if window is not None else None)
    base = client.settings.resolved_artifact_url
    options = client.settings.artifact_options or None
    logged = read_predictions(base, model, version=version, start=start, storage_options=options)
    of = f"{model}" + (f" version {version}" if version is not None else "")
    span = _describe_span(window, since, rows)
    if logged.empty:
        raise InvalidInputError(
            f"No predictions of {of} are logged {span}.",
            "Send traffic to a server started with the prediction log on, or widen the window.",
        )
    if rows is not None:
        logged = logged.tail(rows)
    feedback = read_feedback(base, model, start=start, storage_options=options)
    joined = join_feedback(logged, feedback)
    frame = joined.rename(columns=lambda c: c.removeprefix("input."))
    frame = frame.rename(columns={"label": target}) if target is not None else frame
    dropped = (
        "prediction_id",
        "model",
        "version",
        "feedback_time",
        *(() if target else ("label",)),
    )
    frame = frame.drop(columns=[c for c in dropped if c in frame])
    source = Source(
        kind="predictions",
        description=f"predictions of {of} {span}",
        rows=len(frame),
        start=logged["time"].min().to_pydatetime(),
        end=logged["time"].max().to_pydatetime(),
    )
    return frame, source


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(delta)


def _describe_span(window: timedelta | None, since: datetime | None, rows: int | None) -> str:
    if since is not None:
        span = f"since {since.isoformat()}"
    elif window is not None:
        span = f"in the last {_duration(window)}"
    else:
        span = "in the whole log"
    return span + (f" (latest {rows} rows)" if rows is not None else "")
