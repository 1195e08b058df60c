"""Reference profiles: kinds, statistics, bounds and the JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipway.errors import InvalidInputError
from shipway.monitoring import MAX_CATEGORIES, QUANTILE_LEVELS, Profile, profile


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n)
    x[:5] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "i": rng.integers(0, 4, n),
            "flag": rng.integers(0, 2, n),
            "c": rng.choice(["a", "b", "c"], n),
            "yn": rng.choice([True, False], n),
        }
    )


def test_kinds_and_statistics() -> None:
    df = _frame()
    p = profile(df)
    kinds = {c.name: c.kind for c in p.columns}
    assert kinds == {
        "x": "numeric",
        "i": "numeric",
        "flag": "binary",
        "c": "categorical",
        "yn": "binary",
    }
    x = p.column("x")
    values = df["x"].dropna().to_numpy()
    assert x.row_count == 300 and x.missing_count == 5
    assert x.missing_rate == pytest.approx(5 / 300)
    assert x.min == values.min() and x.max == values.max()
    assert x.mean == pytest.approx(values.mean()) and x.std == pytest.approx(values.std())
    assert x.quantiles == pytest.approx(np.quantile(values, QUANTILE_LEVELS).tolist())
    assert x.histogram_counts is not None and sum(x.histogram_counts) == 295
    assert x.decile_counts is not None and sum(x.decile_counts) == 295
    assert x.sample is not None and sorted(x.sample) == sorted(values.tolist())
    assert x.categories is None  # too many distinct values to keep frequencies
    i = p.column("i")
    assert i.distinct_count == 4 and i.categories is not None and len(i.categories) == 4
    c = p.column("c")
    assert c.categories is not None and sorted(c.categories) == ["a", "b", "c"]
    assert sum(c.category_counts or []) == 300 and c.other_count == 0


def test_sample_is_bounded_and_seeded() -> None:
    df = pd.DataFrame({"x": np.arange(10_000, dtype=float)})
    a = profile(df, sample_rows=100, seed=1).column("x").sample
    b = profile(df, sample_rows=100, seed=1).column("x").sample
    assert a is not None and len(a) == 100 and a == b
    assert len(set(a)) == 100


def test_categories_bounded_with_other() -> None:
    values = [f"v{i}" for i in range(MAX_CATEGORIES + 50)] * 2 + ["v0"]
    col = profile(pd.DataFrame({"c": values})).column("c")
    assert col.categories is not None and len(col.categories) == MAX_CATEGORIES
    assert col.categories[0] == "v0"
    assert col.other_count == 100 and col.distinct_count == MAX_CATEGORIES + 50
    assert not col.categories_complete


def test_json_round_trip() -> None:
    p = profile(_frame())
    text = json.dumps(p.to_dict())
    assert Profile.from_dict(json.loads(text)) == p


def test_all_missing_and_empty_columns() -> None:
    df = pd.DataFrame({"x": [np.nan, np.nan], "s": pd.Series([None, None], dtype=object)})
    p = profile(df)
    x, s = p.column("x"), p.column("s")
    assert x.missing_rate == 1.0 and x.count == 0 and x.mean is None
    assert s.missing_rate == 1.0 and s.distinct_count == 0
    empty = profile(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    assert empty.row_count == 0 and empty.column("x").missing_rate == 0.0


def test_infinite_values_count_as_missing() -> None:
    col = profile(pd.DataFrame({"x": [1.0, np.inf, 2.0, 3.0, 4.0, 5.0, 6.0]})).column("x")
    assert col.missing_count == 1 and col.max == 6.0


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="datetime64"):
        profile(pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3)}))
    with pytest.raises(InvalidInputError, match="sample_rows"):
        profile(pd.DataFrame({"x": [1.0]}), sample_rows=0)
    with pytest.raises(InvalidInputError, match="duplicate column names"):
        profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(InvalidInputError, match="not in the reference profile"):
        profile(pd.DataFrame({"x": [1.0]})).column("y")
