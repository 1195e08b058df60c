"""The prediction-log check of a rollout: how far the canary's mean score moved from stable's.

Both versions' predictions over the same interval are read from the prediction log the
replicas write. The score is the probability of the last class (the positive one of a binary
classifier), or the prediction itself for a regressor.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from shipway.client import Client

__all__ = ["mean_score", "mean_score_shift"]


def mean_score(frame: pd.DataFrame) -> float | None:
    """The mean score of logged predictions, ``None`` when there are none or no numbers."""
    if frame.empty:
        return None
    proba = sorted(c for c in frame.columns if str(c).startswith("proba."))
    column = frame[proba[-1]] if proba else frame.get("prediction")
    if column is None or not pd.api.types.is_numeric_dtype(column.dtype):
        return None
    values = column.dropna()
    return float(values.mean()) if len(values) else None


def mean_score_shift(
    client: Client, model: str, stable: int, canary: int, start: float, end: float
) -> float | None:
    """|mean score of canary - mean score of stable| over [start, end) (epoch seconds)."""
    from shipway.serving.predlog import read_predictions

    lo, hi = (datetime.fromtimestamp(t, UTC) for t in (start, end))
    base = client.settings.resolved_artifact_url
    options = client.settings.artifact_options or None

    def score(version: int) -> float | None:
        frame = read_predictions(
            base, model, version=version, start=lo, end=hi, storage_options=options
        )
        return mean_score(frame)

    a, b = score(stable), score(canary)
    return None if a is None or b is None else abs(b - a)
