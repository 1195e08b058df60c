"""Drift statistics: known answers against scipy and hand computations, detection, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from shipway.errors import InvalidInputError
from shipway.monitoring import PSI_EPSILON, ColumnProfile, column_drift, dataset_drift, profile
from shipway.monitoring.drift import wasserstein_1d


def _col(values: object, name: str = "v") -> ColumnProfile:
    return profile(pd.DataFrame({name: values})).column(name)


def test_ks_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 500), rng.normal(0.2, 1, 300)
    result = column_drift(profile(pd.DataFrame({"v": ref})).column("v"), cur)
    expected = stats.ks_2samp(ref, cur)
    assert result.method == "ks"
    assert result.statistic == expected.statistic and result.p_value == expected.pvalue
    assert result.drifted == (expected.pvalue < 0.05)


def test_chisquare_equals_scipy() -> None:
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 30 + ["b"] * 40 + ["c"] * 30
    result = column_drift(profile(pd.DataFrame({"v": ref})).column("v"), cur)
    expected = stats.chisquare([30, 40, 30], np.array([0.5, 0.3, 0.2]) * 100)
    assert result.method == "chisquare"
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)


def test_chisquare_pools_unseen_categories() -> None:
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 30 + ["b"] * 30 + ["c"] * 30 + ["d"] * 6 + ["e"] * 4
    result = column_drift(profile(pd.DataFrame({"v": ref})).column("v"), cur)
    ref_cells = np.array([50, 30, 20, 0.5])
    expected = stats.chisquare([30, 30, 30, 10], ref_cells / ref_cells.sum() * 100)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.drifted and result.note is not None and "pseudo-count" in result.note


def test_ztest_hand_computed() -> None:
    ref = ["yes"] * 60 + ["no"] * 40
    cur = ["yes"] * 40 + ["no"] * 60
    result = column_drift(profile(pd.DataFrame({"v": ref})).column("v"), cur)
    # p1 = 0.6, p2 = 0.4, pooled 0.5: z = -0.2 / sqrt(0.25 * (1/100 + 1/100)) = -2 * sqrt(2)
    z = -0.2 / math.sqrt(0.25 * 0.02)
    assert result.method == "ztest"
    assert result.statistic == pytest.approx(-2 * math.sqrt(2), rel=1e-12)
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert result.drifted


def test_ztest_falls_back_to_chisquare_on_a_third_value() -> None:
    ref = ["yes"] * 60 + ["no"] * 40
    result = column_drift(_col(ref), ["yes", "no", "maybe"])
    assert result.method == "chisquare"


def test_wasserstein_equals_scipy_when_sample_is_whole_reference() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(5, 2, 3000), rng.normal(5.5, 2, 1000)
    result = column_drift(profile(pd.DataFrame({"v": ref})).column("v"), cur)
    expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert result.method == "wasserstein" and result.p_value is None
    assert result.statistic == expected
    assert result.drifted


def test_wasserstein_uses_the_stored_sample_for_large_references() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0, 1, 2000)
    col = profile(pd.DataFrame({"v": ref}), sample_rows=5000).column("v")
    assert col.sample is not None
    exact = stats.wasserstein_distance(col.sample, cur) / np.std(ref)
    assert column_drift(col, cur).statistic == exact


@pytest.mark.parametrize("n", [1, 2, 37, 5000, 200_000])
def test_fast_wasserstein_is_bit_for_bit_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    u, v = rng.normal(0, 1, 5000), rng.normal(0.3, 2, n)
    assert wasserstein_1d(u, v) == stats.wasserstein_distance(u, v)
    assert wasserstein_1d(v, u) == stats.wasserstein_distance(v, u)
    ties_u, ties_v = rng.integers(0, 5, 300).astype(float), rng.integers(0, 5, n).astype(float)
    assert wasserstein_1d(ties_u, ties_v) == stats.wasserstein_distance(ties_u, ties_v)
    assert wasserstein_1d(ties_v, ties_u) == stats.wasserstein_distance(ties_v, ties_u)
    zeros_u, zeros_v = rng.choice([-0.0, 0.0, 1.5], 40), rng.choice([0.0, -0.0, 2.5], n)
    assert wasserstein_1d(zeros_u, zeros_v) == stats.wasserstein_distance(zeros_u, zeros_v)


def test_jensenshannon_equals_scipy_over_union() -> None:
    ref = ["a"] * 1000 + ["b"] * 600 + ["c"] * 400
    cur = ["a"] * 300 + ["b"] * 300 + ["d"] * 100
    result = column_drift(_col(ref), cur)
    p = np.array([1000, 600, 400, 0]) / 2000
    q = np.array([300, 300, 0, 100]) / 700
    assert result.method == "jensenshannon"
    assert result.statistic == pytest.approx(distance.jensenshannon(p, q, base=2), rel=1e-12)
    assert result.drifted


def test_psi_hand_computed() -> None:
    ref = np.arange(100, dtype=float)  # ten deciles of ten values each
    cur = np.arange(50, dtype=float)  # the lower five deciles only, 20% each
    result = column_drift(_col(ref), cur, method="psi")
    hand = 5 * (0.2 - 0.1) * math.log(0.2 / 0.1) + 5 * (PSI_EPSILON - 0.1) * math.log(
        PSI_EPSILON / 0.1
    )
    assert result.method == "psi"
    assert result.statistic == pytest.approx(hand, rel=1e-12)
    assert result.drifted and result.note == "significant shift"
    same = column_drift(_col(ref), ref, method="psi")
    assert same.statistic == 0.0 and not same.drifted


def _synthetic(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(3, 2, n) + shift * 2,
            "y": rng.normal(0, 1, n),
            "c": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "b": rng.choice([0, 1], n, p=[0.7, 0.3]),
        }
    )


@pytest.mark.parametrize("n_ref", [800, 20_000])
@pytest.mark.parametrize("seed", range(5))
def test_one_std_shift_is_detected_and_an_unchanged_feature_is_not(n_ref: int, seed: int) -> None:
    ref = profile(_synthetic(n_ref, seed, 0.0))
    cur = _synthetic(n_ref, seed + 100, 1.0)
    result = dataset_drift(ref, cur)
    drifted = set(result.drifted_columns)
    assert "x" in drifted and "y" not in drifted
    methods = {c.column: c.method for c in result.columns}
    if n_ref <= 1000:
        assert methods == {"x": "ks", "y": "ks", "c": "chisquare", "b": "ztest"}
    else:
        assert methods == {
            "x": "wasserstein",
            "y": "wasserstein",
            "c": "jensenshannon",
            "b": "jensenshannon",
        }
        assert drifted == {"x"}
        assert result.share_drifted == 0.25 and not result.drifted
        assert dataset_drift(ref, cur, share=0.25).drifted


def test_p_value_tests_rarely_flag_unchanged_features() -> None:
    """At p < 0.05 a test flags about 1 in 20 unchanged columns; allow 2 of 20."""
    flagged = 0
    for seed in range(5):
        ref = profile(_synthetic(800, seed, 0.0))
        result = dataset_drift(ref, _synthetic(800, seed + 100, 0.0))
        flagged += result.n_drifted
        assert result.n_tested == 4
    assert flagged <= 2


def test_empty_window_is_an_error() -> None:
    ref = profile(_synthetic(100, 0, 0.0))
    with pytest.raises(InvalidInputError, match="no rows"):
        dataset_drift(ref, _synthetic(100, 1, 0.0).iloc[:0])
    with pytest.raises(InvalidInputError, match="empty"):
        column_drift(ref.column("x"), [])


@pytest.mark.parametrize("n_ref", [500, 5000])
def test_one_row_window_gives_finite_results(n_ref: int) -> None:
    ref = profile(_synthetic(n_ref, 0, 0.0))
    for col in dataset_drift(ref, _synthetic(1, 1, 0.0)).columns:
        assert col.statistic is not None and math.isfinite(col.statistic), col
        if col.p_value is not None:
            assert 0 <= col.p_value <= 1


def test_all_missing_columns_are_skipped_with_a_reason() -> None:
    ref = profile(pd.DataFrame({"x": np.arange(50.0), "gone": [np.nan] * 50}))
    cur = pd.DataFrame({"x": [np.nan] * 10, "gone": [np.nan] * 10})
    result = dataset_drift(ref, cur)
    assert [c.method for c in result.columns] == ["skipped", "skipped"]
    assert result.columns[0].note == "the current window has no non-missing values"
    assert result.columns[1].note == "the reference column has no non-missing values"
    assert result.n_tested == 0 and result.share_drifted is None and not result.drifted


def test_constant_reference() -> None:
    big = profile(pd.DataFrame({"k": np.full(2000, 7.0)})).column("k")
    assert column_drift(big, np.full(10, 8.0)).method == "jensenshannon"  # one distinct value
    same = column_drift(big, np.full(10, 7.0), method="wasserstein")
    assert same.statistic == 0.0 and not same.drifted
    moved = column_drift(big, np.full(10, 8.0), method="wasserstein")
    assert moved.statistic == math.inf and moved.drifted and moved.note is not None
    small = _col(np.full(100, 7.0))
    assert column_drift(small, np.full(10, 7.0)).p_value == 1.0
    assert column_drift(small, np.full(10, 8.0)).drifted


def test_mismatched_schemas() -> None:
    ref = profile(_synthetic(100, 0, 0.0))
    with pytest.raises(InvalidInputError, match="numeric in the reference"):
        column_drift(ref.column("x"), ["a", "b"])
    cur = _synthetic(50, 1, 0.0).drop(columns=["y"]).assign(extra=1.0)
    result = dataset_drift(ref, cur)
    assert result.missing_columns == ["y"] and result.n_tested == 3
    with pytest.raises(InvalidInputError, match="not in the profile"):
        dataset_drift(ref, cur, methods={"nope": "ks"})
    wide = profile(_synthetic(500, 0, 0.0)).column("x")
    with pytest.raises(InvalidInputError, match="numeric method"):
        column_drift(wide, [1.0, 2.0], method="chisquare")
    with pytest.raises(InvalidInputError, match="share"):
        dataset_drift(ref, cur, share=0)


def test_results_are_json_and_inf_survives() -> None:
    ref = profile(pd.DataFrame({"k": np.full(2000, 7.0), "w": np.arange(2000.0)}))
    result = dataset_drift(
        ref, pd.DataFrame({"k": [8.0], "w": [3.0]}), methods={"k": "wasserstein"}
    )
    text = json.dumps(result.to_dict())
    assert json.loads(text)["columns"][0]["statistic"] == math.inf


def test_bad_windows_are_clear_errors() -> None:
    ref = profile(_synthetic(100, 0, 0.0))
    with pytest.raises(InvalidInputError, match="duplicate column names"):
        dataset_drift(ref, pd.DataFrame([[1.0, 2.0]], columns=["x", "x"]))
    with pytest.raises(InvalidInputError, match="must be a pandas DataFrame"):
        dataset_drift(ref, [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="needs a binary column"):
        column_drift(ref.column("x"), [1.0], method="ztest")
    untyped = pd.Series([None, None], dtype=object)
    assert column_drift(ref.column("x"), untyped).method == "skipped"


def test_datetime_columns_are_skipped_with_a_note() -> None:
    times = pd.date_range("2024-01-01", periods=2000, freq="min")
    ref = profile(pd.DataFrame({"t": times, "x": np.arange(2000.0)}))
    later = pd.DataFrame({"t": times + pd.Timedelta(days=30), "x": np.arange(2000.0)})
    result = dataset_drift(ref, later)
    t = result.columns[0]
    assert t.method == "skipped" and t.kind == "datetime" and t.statistic is None
    assert t.note == "datetime column: not tested for drift" and not t.drifted
    assert result.n_tested == 1 and result.n_drifted == 0
    with pytest.raises(InvalidInputError, match="not tested for drift"):
        column_drift(ref.column("t"), later["t"], method="psi")
