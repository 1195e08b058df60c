"""Data quality findings: schema shifts, missing rates, ranges, categories, row counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipway.monitoring import QualityReport, profile, quality


def _ref() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    return pd.DataFrame(
        {
            "x": rng.uniform(0, 10, n),
            "n": rng.integers(0, 100, n),
            "c": rng.choice(["a", "b", "c"], n),
            "d": rng.choice(["u", "v"], n),
        }
    )


def _checks(report: QualityReport) -> set[tuple[str, str | None, str]]:
    return {(f.check, f.column, f.severity) for f in report.findings}


def test_clean_window_has_only_info() -> None:
    ref = profile(_ref())
    report = quality(ref, _ref())
    assert report.worst == "info"
    assert _checks(report) == {("row_count", None, "info")}
    assert all(c.missing_rate == 0 and c.out_of_range_share in (0.0, None) for c in report.columns)


def test_schema_shifts() -> None:
    ref = profile(_ref())
    cur = _ref().drop(columns=["d"]).assign(extra=1)
    cur["n"] = cur["n"].astype("float64")
    cur["c"] = np.arange(len(cur), dtype=float)
    report = quality(ref, cur)
    checks = _checks(report)
    assert ("missing_column", "d", "critical") in checks
    assert ("new_column", "extra", "warning") in checks
    assert ("dtype_change", "n", "info") in checks  # int to float: missing values, usually
    assert ("kind_change", "c", "critical") in checks
    assert report.worst == "critical"
    messages = " ".join(f.message for f in report.findings)
    assert "Column 'd' is missing" in messages and "int64 to float64" in messages


def test_missing_rates_and_all_missing_column() -> None:
    ref = profile(_ref())
    cur = _ref()
    cur.loc[:49, "x"] = np.nan  # 12.5% missing: a warning
    cur["c"] = None  # entirely missing: critical
    report = quality(ref, cur)
    x = next(c for c in report.columns if c.column == "x")
    assert x.missing_rate == 0.125 and x.missing_rate_change == 0.125
    checks = _checks(report)
    assert ("missing_rate", "x", "warning") in checks
    assert ("missing_rate", "c", "critical") in checks
    assert not any(check == "kind_change" for check, _, _ in checks)


def test_out_of_range_share() -> None:
    ref = profile(_ref())
    cur = _ref()
    cur.loc[:19, "x"] = 50.0  # 5% above the reference max: a warning
    cur.loc[:99, "n"] = -1  # 25% below the reference min: critical
    report = quality(ref, cur)
    shares = {c.column: c.out_of_range_share for c in report.columns}
    assert shares["x"] == 0.05 and shares["n"] == 0.25 and shares["c"] is None
    checks = _checks(report)
    assert ("out_of_range", "x", "warning") in checks and (
        "out_of_range",
        "n",
        "critical",
    ) in checks


def test_new_categories() -> None:
    ref = profile(_ref())
    cur = _ref()
    cur.loc[:9, "c"] = "zzz"
    report = quality(ref, cur)
    c = next(col for col in report.columns if col.column == "c")
    assert c.new_categories == ["zzz"] and c.new_category_count == 1
    finding = next(f for f in report.findings if f.check == "new_categories")
    assert finding.severity == "warning" and "'zzz'" in finding.message


def test_empty_and_one_row_windows() -> None:
    ref = profile(_ref())
    empty = quality(ref, _ref().iloc[:0])
    assert empty.row_count == 0 and empty.columns == []
    assert ("row_count", None, "critical") in _checks(empty)
    one = quality(ref, _ref().iloc[:1])
    assert one.row_count == 1 and len(one.columns) == 4
    assert one.to_dict()["row_count"] == 1


def _times(tz: str | None = None) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz=tz)
    return pd.DataFrame({"t": pd.date_range(start, periods=400, freq="h"), "x": np.arange(400.0)})


@pytest.mark.parametrize("tz", [None, "UTC"])
def test_datetime_missing_and_range(tz: str | None) -> None:
    ref = profile(_times(tz))
    same = quality(ref, _times(tz))
    assert _checks(same) == {("row_count", None, "info")}
    t = next(c for c in same.columns if c.column == "t")
    assert t.out_of_range_share == 0.0 and t.missing_rate == 0.0
    later = _times(tz)
    later["t"] = later["t"] + pd.Timedelta(days=10)  # 240 of 400 hours after the reference
    later.loc[:39, "t"] = pd.NaT  # 10% missing: a warning
    report = quality(ref, later)
    checks = _checks(report)
    assert ("out_of_range", "t", "info") in checks
    assert ("missing_rate", "t", "warning") in checks
    assert not any(c == "out_of_range" and s != "info" for c, _, s in checks)
    t = next(c for c in report.columns if c.column == "t")
    assert t.out_of_range_share == pytest.approx(240 / 360)
    info = next(f for f in report.findings if f.check == "out_of_range")
    assert "after the reference's latest time" in info.message
    earlier = _times(tz)
    earlier.loc[:19, "t"] = earlier.loc[:19, "t"] - pd.Timedelta(days=365)  # 5% before
    before = next(f for f in quality(ref, earlier).findings if f.check == "out_of_range")
    assert before.severity == "warning" and "before the reference's earliest" in before.message


def test_storage_changes_within_a_kind_of_data_are_no_finding() -> None:
    ref = pd.DataFrame({"c": pd.Categorical(["a", "b"] * 50), "i": np.arange(100)})
    cur = pd.DataFrame({"c": ["a", "b"] * 50, "i": pd.array(np.arange(100), dtype="Int64")})
    assert _checks(quality(profile(ref), cur)) == {("row_count", None, "info")}
    flags = pd.DataFrame({"c": ["a", "b"] * 50, "i": [True, False] * 50})
    assert ("kind_change", "i", "critical") in _checks(quality(profile(ref), flags))


def test_datetime_schema_changes() -> None:
    ref = profile(_times())
    coarser = _times()
    coarser["t"] = coarser["t"].astype("datetime64[s]")  # another unit: no finding
    assert _checks(quality(ref, coarser)) == {("row_count", None, "info")}
    zoned = _times("Europe/Paris")
    report = quality(ref, zoned)
    finding = next(f for f in report.findings if f.column == "t")
    assert (finding.check, finding.severity) == ("dtype_change", "warning")
    assert "time zone from none to Europe/Paris" in finding.message
    assert next(c for c in report.columns if c.column == "t").out_of_range_share is None
    as_text = _times().astype({"t": str})
    assert ("kind_change", "t", "critical") in _checks(quality(ref, as_text))
    assert ("kind_change", "x", "critical") in _checks(quality(ref, _times().assign(x=_times().t)))
