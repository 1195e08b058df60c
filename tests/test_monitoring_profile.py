"""Reference profiles: kinds, statistics, bounds and the JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipway.errors import InvalidInputError
from shipway.monitoring import MAX_CATEGORIES, QUANTILE_LEVELS, Profile, profile
from shipway.monitoring.profile import sorted_histogram, sorted_quantiles


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
    with pytest.raises(InvalidInputError, match="timedelta64"):
        profile(pd.DataFrame({"t": pd.to_timedelta([1, 2, 3], unit="s")}))
    with pytest.raises(InvalidInputError, match="sample_rows"):
        profile(pd.DataFrame({"x": [1.0]}), sample_rows=0)
    with pytest.raises(InvalidInputError, match="duplicate column names"):
        profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(InvalidInputError, match="not in the reference profile"):
        profile(pd.DataFrame({"x": [1.0]})).column("y")


@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_datetime_columns(tz: str | None) -> None:
    times = pd.Series(pd.date_range("2024-03-01", periods=6, freq="D", tz=tz))
    times[1] = pd.NaT
    times[4] = times[3]
    col = profile(pd.DataFrame({"t": times})).column("t")
    assert col.kind == "datetime" and not col.numeric and col.dtype == str(times.dtype)
    assert col.missing_count == 1 and col.missing_rate == pytest.approx(1 / 6)
    assert col.distinct_count == 4
    assert col.earliest == times[0].to_pydatetime() and col.latest == times[5].to_pydatetime()
    assert (col.earliest.tzinfo is None) == (tz is None)
    assert col.mean is None and col.quantiles is None and col.categories is None
    p = profile(pd.DataFrame({"t": times}))
    assert Profile.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_datetime_bounds_cover_nanoseconds_and_all_missing() -> None:
    times = pd.Series(pd.to_datetime(["2024-01-01 00:00:00.000000001", "2024-01-02 00:00:00.5"]))
    col = profile(pd.DataFrame({"t": times.astype("datetime64[ns]")})).column("t")
    assert col.earliest is not None and col.latest is not None
    assert pd.Timestamp(col.earliest) <= times.min() and pd.Timestamp(col.latest) >= times.max()
    empty = profile(pd.DataFrame({"t": pd.Series([pd.NaT] * 3, dtype="datetime64[us]")}))
    t = empty.column("t")
    assert t.kind == "datetime" and t.missing_rate == 1.0 and t.earliest is None


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = []
    for n in (1, 2, 3, 7, 20, 21, 101, 5000):
        out += [rng.normal(3, 2, n), rng.integers(-2, 3, n).astype(float), rng.lognormal(0, 3, n)]
    return [np.sort(a) for a in out]


def test_sorted_order_statistics_are_numpys_bit_for_bit() -> None:
    for ordered in _arrays():
        expected = np.quantile(ordered, QUANTILE_LEVELS)
        assert np.array_equal(sorted_quantiles(ordered, QUANTILE_LEVELS), expected)
        counts, edges = sorted_histogram(ordered, 20)
        np_counts, np_edges = np.histogram(ordered, bins=20)
        assert np.array_equal(edges, np_edges) and np.array_equal(counts, np_counts)


def test_histogram_of_a_range_too_narrow_to_split() -> None:
    """numpy refuses 20 bins over one ulp (or around one value above 2**53): one bin then."""
    p = profile(pd.DataFrame({"u": [1000.0, 1000.0000000000002] * 3, "big": [1e28] * 6}))
    for name in ("u", "big"):
        col = p.column(name)
        assert col.histogram_counts == [col.count]
        assert col.histogram_edges == [col.min, col.max]
