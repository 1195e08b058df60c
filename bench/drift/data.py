"""The benchmark's synthetic reference and current windows, written once as Parquet.

run.py runs this module in its own process, so that its memory never counts in the peak
memory of the jobs run afterwards.

Numeric columns cycle through six shapes (normal, log-normal, uniform, Poisson counts, a 0-3
code, a 0/1 flag), some with missing values; categorical columns are strings over 2 to 1,000
categories with Zipf-like frequencies. The current window is drawn from the same distributions
with another seed, except for the columns in :data:`SHIFTS`, each changed in one known way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

CARDINALITIES = (2, 3, 5, 10, 30, 100, 1000)

SHIFTS: dict[str, str] = {
    "num_00": "mean + 0.5 std",
    "num_01": "mean + 0.05 std (below the 0.1 threshold)",
    "num_02": "std x 1.5",
    "num_03": "missing rate 2% -> 10%",
    "num_06": "5% of values above the reference max",
    "cat_00": "frequencies swapped (0.9/0.1 -> 0.6/0.4)",
    "cat_03": "3% of a category the reference never held",
    "cat_05": "the most frequent category halved",
}
"""What changes between reference and current, by column; every other column is unchanged."""

Draw = Callable[[np.random.Generator, int], np.ndarray]

_NUMERIC: tuple[Draw, ...] = (
    lambda rng, n: rng.normal(10.0, 2.0, n),
    lambda rng, n: rng.lognormal(0.0, 1.0, n),
    lambda rng, n: rng.uniform(-5.0, 5.0, n),
    lambda rng, n: rng.poisson(30, n),
    lambda rng, n: rng.integers(0, 4, n),
    lambda rng, n: (rng.random(n) < 0.3).astype(np.int64),
)
_MISSING_EVERY = 4  # every fourth numeric column (3, 7, 11, ...) has 2% missing values


def _zipf(k: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1)
    return weights / weights.sum()


def numeric_column(i: int, rng: np.random.Generator, n: int, current: bool) -> np.ndarray:
    name = f"num_{i:02d}"
    values = _NUMERIC[i % len(_NUMERIC)](rng, n)
    shift = SHIFTS.get(name) if current else None
    if shift and shift.startswith("mean"):
        # num_00 is normal with std 2, num_01 log-normal with std 2.2
        values = values + (1.0 if "0.5" in shift else 0.1)
    elif shift and shift.startswith("std"):
        values = values * 1.5  # uniform(-5, 5) around 0
    elif shift and "above the reference max" in shift:
        outside = rng.random(n) < 0.05
        values = np.where(outside, values.max() * 2 + 1, values)
    missing = 0.10 if shift and shift.startswith("missing") else 0.02
    if i % _MISSING_EVERY == 3 or (shift and shift.startswith("missing")):
        values = values.astype(np.float64)
        values[rng.random(n) < missing] = np.nan
    return values


def categorical_column(i: int, rng: np.random.Generator, n: int, current: bool) -> pd.Series:
    name = f"cat_{i:02d}"
    k = CARDINALITIES[i % len(CARDINALITIES)]
    labels = np.array([f"{name}_v{j}" for j in range(k)] + [f"{name}_new"], dtype=object)
    probs = np.append(_zipf(k) if k > 2 else [0.9, 0.1], 0.0)
    shift = SHIFTS.get(name) if current else None
    if shift and shift.startswith("frequencies"):
        probs = np.array([0.6, 0.4, 0.0])
    elif shift and "never held" in shift:
        probs = np.append(probs[:-1] * 0.97, 0.03)
    elif shift and "halved" in shift:
        probs[0] /= 2
        probs /= probs.sum()
    codes = rng.choice(len(labels), size=n, p=probs)
    return pd.Series(labels[codes], dtype="str")


def frame(rows: int, numeric: int, categorical: int, seed: int, current: bool) -> pd.DataFrame:
    rng = np.random.default_rng([seed, int(current)])
    data: dict[str, object] = {}
    for i in range(numeric):
        data[f"num_{i:02d}"] = numeric_column(i, rng, rows, current)
    for i in range(categorical):
        data[f"cat_{i:02d}"] = categorical_column(i, rng, rows, current)
    return pd.DataFrame(data)


def write(folder: Path, rows: int, numeric: int, categorical: int, seed: int) -> dict[str, Path]:
    """Write ``reference.parquet`` and ``current.parquet`` into ``folder``; return their paths."""
    paths = {}
    for which in ("reference", "current"):
        df = frame(rows, numeric, categorical, seed, current=which == "current")
        path = folder / f"{which}.parquet"
        df.to_parquet(path, index=False)
        paths[which] = path
        del df
    return paths


if __name__ == "__main__":  # python data.py FOLDER ROWS NUMERIC CATEGORICAL SEED
    folder, *sizes = sys.argv[1:6]
    rows, numeric, categorical, seed = (int(x) for x in sizes)
    write(Path(folder), rows, numeric, categorical, seed)
