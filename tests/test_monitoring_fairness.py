"""Group fairness: fairlearn-equal rates and gaps, undefined rates as None, time buckets."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from shipway.errors import InvalidInputError
from shipway.monitoring.fairness import FairnessReport, fairness

SEEDS = [0, 1, 2, 3, 4, 5]


def _frame(seed: int, n: int = 400, groups: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice([f"g{i}" for i in range(groups)], n, p=rng.dirichlet([2] * groups))
    y = rng.integers(0, 2, n).astype(float)
    bias = np.array([int(g[1:]) for g in group]) * 0.1
    p = (rng.uniform(size=n) + 0.3 * y + bias > 0.8).astype(int)
    y[rng.uniform(size=n) < 0.25] = np.nan  # labels not arrived yet
    return pd.DataFrame({"group": group, "y": y, "p": p})


def _numbers(report: FairnessReport) -> list[float | None]:
    found = [
        report.demographic_parity_difference,
        report.demographic_parity_ratio,
        report.equalized_odds_difference,
    ]
    for g in report.groups:
        found += [g.selection_rate, g.true_positive_rate, g.false_positive_rate]
    for p in report.over_time:
        found += [
            p.demographic_parity_difference,
            p.demographic_parity_ratio,
            p.equalized_odds_difference,
        ]
    return found


def _assert_no_nan(report: FairnessReport) -> None:
    assert all(v is None or math.isfinite(v) for v in _numbers(report))
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_fairlearn(seed: int) -> None:
    df = _frame(seed)
    report = fairness(df, sensitive="group", prediction="p", target="y")
    lab = df[df["y"].notna()]
    y, p, a = lab["y"].astype(int), lab["p"], lab["group"]
    everyone = MetricFrame(
        metrics=selection_rate, y_true=df["p"], y_pred=df["p"], sensitive_features=df["group"]
    )
    rates = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y,
        y_pred=p,
        sensitive_features=a,
    )
    assert report.positive_label == "1"
    assert [g.group for g in report.groups] == list(everyone.by_group.index)
    for g in report.groups:
        assert g.count == int((df["group"] == g.group).sum())
        assert g.labelled == int((a == g.group).sum())
        assert g.selection_rate == pytest.approx(everyone.by_group[g.group])
        # fairlearn gives 0 where a rate is undefined; the report gives None.
        mine = lab[lab["group"] == g.group]["y"]
        assert (g.true_positive_rate is None) == (not (mine == 1).any())
        assert (g.false_positive_rate is None) == (not (mine == 0).any())
        assert (g.true_positive_rate or 0.0) == pytest.approx(rates.by_group.loc[g.group, "tpr"])
        assert (g.false_positive_rate or 0.0) == pytest.approx(rates.by_group.loc[g.group, "fpr"])
    # y_true is ignored by the parity metrics; selection uses every row.
    parity = {"y_true": df["p"], "y_pred": df["p"], "sensitive_features": df["group"]}
    assert report.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(**parity)
    )
    assert report.demographic_parity_ratio == pytest.approx(demographic_parity_ratio(**parity))
    assert report.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(y, p, sensitive_features=a)
    )
    assert report.four_fifths_violated == (demographic_parity_ratio(**parity) < 0.8)
    _assert_no_nan(report)


@pytest.mark.parametrize("seed", SEEDS)
def test_small_groups_without_positives_match_fairlearn_gaps(seed: int) -> None:
    df = _frame(seed, n=30, groups=6)
    lab = df[df["y"].notna()]
    report = fairness(df, sensitive="group", prediction="p", target="y")
    assert report.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(lab["y"].astype(int), lab["p"], sensitive_features=lab["group"])
    )
    for g in report.groups:
        rows = lab[lab["group"] == g.group]
        if g.labelled and not (rows["y"] == 1).any():
            assert g.true_positive_rate is None
            assert any(f"'{g.group}'" in n and "true positive rate" in n for n in report.notes)
        if g.labelled and not (rows["y"] == 0).any():
            assert g.false_positive_rate is None
    _assert_no_nan(report)


def test_undefined_tpr_counts_as_zero_like_fairlearn() -> None:
    df = pd.DataFrame(
        {
            "a": ["x", "x", "x", "z", "z"],
            "y": [1, 1, 0, 0, 0],  # group z has no positive label
            "p": [1, 1, 0, 0, 0],
        }
    )
    report = fairness(df, sensitive="a", prediction="p", target="y")
    x, z = report.groups
    assert (x.true_positive_rate, x.false_positive_rate) == (1.0, 0.0)
    assert (z.true_positive_rate, z.false_positive_rate) == (None, 0.0)
    # z's TPR counts as 0: the TPR gap is 1 although no group is treated worse.
    assert report.equalized_odds_difference == 1.0
    assert report.equalized_odds_difference == equalized_odds_difference(
        df["y"], df["p"], sensitive_features=df["a"]
    )


def test_tiny_example_by_hand() -> None:
    df = pd.DataFrame(
        {
            "sex": ["f", "f", "f", "f", "m", "m", "m", "m"],
            "y": [1, 1, 0, 0, 1, 1, 0, 0],
            "p": [1, 0, 0, 0, 1, 1, 1, 0],
        }
    )
    report = fairness(df, sensitive="sex", prediction="p", target="y")
    f, m = report.groups
    assert (f.selection_rate, f.true_positive_rate, f.false_positive_rate) == (0.25, 0.5, 0.0)
    assert (m.selection_rate, m.true_positive_rate, m.false_positive_rate) == (0.75, 1.0, 0.5)
    assert report.demographic_parity_difference == 0.5
    assert report.demographic_parity_ratio == pytest.approx(1 / 3)
    assert report.equalized_odds_difference == 0.5
    assert report.four_fifths_violated
    assert report.notes == []


def test_string_labels_and_a_given_positive_label() -> None:
    df = _frame(7)
    names = {0: "deny", 1: "approve"}
    text = pd.DataFrame({"group": df["group"], "y": df["y"].map(names), "p": df["p"].map(names)})
    lab = text[text["y"].notna()]
    report = fairness(text, sensitive="group", prediction="p", target="y", positive_label="approve")
    assert report.positive_label == "approve"
    frame = MetricFrame(
        metrics={
            "sel": partial(selection_rate, pos_label="approve"),
            "tpr": partial(true_positive_rate, pos_label="approve"),
            "fpr": partial(false_positive_rate, pos_label="approve"),
        },
        y_true=lab["y"],
        y_pred=lab["p"],
        sensitive_features=lab["group"],
    )
    for g in report.groups:
        assert g.true_positive_rate == pytest.approx(frame.by_group.loc[g.group, "tpr"])
        assert g.false_positive_rate == pytest.approx(frame.by_group.loc[g.group, "fpr"])
    # The same numbers as the 0/1 frame with 1 = approve.
    numeric = fairness(df, sensitive="group", prediction="p", target="y")
    assert report.demographic_parity_ratio == pytest.approx(numeric.demographic_parity_ratio)
    assert report.equalized_odds_difference == pytest.approx(numeric.equalized_odds_difference)
    # "approve" is not the greater label, so the default picks "deny".
    assert fairness(text, sensitive="group", prediction="p").positive_label == "deny"


def test_missing_sensitive_values_form_their_own_group() -> None:
    df = _frame(8)
    df.loc[df.index % 7 == 0, "group"] = None
    report = fairness(df, sensitive="group", prediction="p", target="y")
    assert report.groups[-1].group == "(missing)"
    assert report.groups[-1].count == int(df["group"].isna().sum())
    filled = df.assign(group=df["group"].fillna("(missing)"))
    lab = filled[filled["y"].notna()]
    assert report.demographic_parity_ratio == pytest.approx(
        demographic_parity_ratio(filled["p"], filled["p"], sensitive_features=filled["group"])
    )
    assert report.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(lab["y"].astype(int), lab["p"], sensitive_features=lab["group"])
    )


def test_without_labels_only_parity_is_reported() -> None:
    df = _frame(9)
    no_target = fairness(df, sensitive="group", prediction="p")
    unlabelled = fairness(df.assign(y=np.nan), sensitive="group", prediction="p", target="y")
    for report in (no_target, unlabelled):
        assert report.equalized_odds_difference is None
        assert report.demographic_parity_ratio is not None
        assert all(g.true_positive_rate is None and g.labelled == 0 for g in report.groups)
        _assert_no_nan(report)
    assert any("No target column" in n for n in no_target.notes)
    assert any("No labels yet" in n for n in unlabelled.notes)


def test_edge_cases_give_nones_not_errors() -> None:
    empty = fairness(
        pd.DataFrame({"a": [], "p": [], "y": []}), sensitive="a", prediction="p", target="y"
    )
    assert empty.groups == [] and empty.demographic_parity_difference is None
    assert empty.positive_label == "1" and not empty.four_fifths_violated
    assert "The frame has no rows." in empty.notes
    nobody = fairness(
        pd.DataFrame({"a": ["x", "y", "y"], "p": [0, 0, 0]}), sensitive="a", prediction="p"
    )
    assert nobody.demographic_parity_difference == 0.0
    assert nobody.demographic_parity_ratio is None and not nobody.four_fifths_violated
    assert any("demographic_parity_ratio is undefined" in n for n in nobody.notes)
    one = fairness(
        pd.DataFrame({"a": ["x"], "p": [1], "y": [1]}), sensitive="a", prediction="p", target="y"
    )
    assert (one.demographic_parity_difference, one.demographic_parity_ratio) == (0.0, 1.0)
    assert one.equalized_odds_difference == 0.0
    assert one.groups[0].false_positive_rate is None
    unpredicted = fairness(
        pd.DataFrame({"a": ["x", "x", "y"], "p": [1, None, 0]}), sensitive="a", prediction="p"
    )
    assert [g.selection_rate for g in unpredicted.groups] == [1.0, 0.0]
    assert [g.count for g in unpredicted.groups] == [2, 1]
    assert any("without a prediction" in n for n in unpredicted.notes)
    for report in (empty, nobody, one, unpredicted):
        _assert_no_nan(report)


def test_four_fifths_rule_threshold() -> None:
    df = pd.DataFrame({"a": ["x"] * 5 + ["y"] * 5, "p": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]})
    at = fairness(df, sensitive="a", prediction="p")
    assert at.demographic_parity_ratio == pytest.approx(0.8)
    assert not at.four_fifths_violated
    stricter = fairness(df, sensitive="a", prediction="p", ratio_threshold=0.9)
    assert stricter.four_fifths_violated and stricter.ratio_threshold == 0.9


def test_clear_errors() -> None:
    df = _frame(0)
    with pytest.raises(InvalidInputError, match="'sex' is not in the frame") as info:
        fairness(df, sensitive="sex", prediction="p")
    assert "group, y, p" in str(info.value)
    with pytest.raises(InvalidInputError, match="'label'"):
        fairness(df, sensitive="group", prediction="p", target="label")
    with pytest.raises(InvalidInputError, match="ratio_threshold"):
        fairness(df, sensitive="group", prediction="p", ratio_threshold=1.5)
    three = pd.DataFrame({"a": ["x", "y", "y"], "p": ["low", "mid", "high"]})
    with pytest.raises(InvalidInputError, match="positive_label"):
        fairness(three, sensitive="a", prediction="p")
    assert fairness(three, sensitive="a", prediction="p", positive_label="high").groups[
        1
    ].selection_rate == pytest.approx(0.5)


def test_positive_label_given_as_text_matches_the_label() -> None:
    df = pd.DataFrame({"a": ["x", "x", "y", "y"], "p": [1, 0, 0, 0]})
    report = fairness(df, sensitive="a", prediction="p", positive_label="0")
    assert report.positive_label == "0"
    assert [g.selection_rate for g in report.groups] == [0.5, 1.0]


def test_over_time_points_equal_reports_of_their_rows() -> None:
    df = _frame(11, n=240)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    df["t"] = [start + timedelta(minutes=7 * i) for i in range(len(df))]  # 28 hours
    report = fairness(df, sensitive="group", prediction="p", target="y", time="t", freq="6h")
    assert [p.start for p in report.over_time] == [start + timedelta(hours=6 * i) for i in range(5)]
    assert sum(p.rows for p in report.over_time) == len(df)
    for point in report.over_time:
        rows = df[(df["t"] >= point.start) & (df["t"] < point.end)]
        alone = fairness(rows, sensitive="group", prediction="p", target="y")
        assert point.rows == len(rows)
        assert point.demographic_parity_difference == pytest.approx(
            alone.demographic_parity_difference
        )
        assert point.demographic_parity_ratio == pytest.approx(alone.demographic_parity_ratio)
        assert point.equalized_odds_difference == pytest.approx(alone.equalized_odds_difference)
    # 28 hours are 29 one-hour buckets, over 24: six hours is the automatic choice.
    automatic = fairness(df, sensitive="group", prediction="p", target="y", time="t")
    assert automatic.over_time == report.over_time
