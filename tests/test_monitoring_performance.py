"""Model metrics: sklearn-equal values, undefined metrics as None, time buckets, segments."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from shipway.errors import InvalidInputError
from shipway.monitoring.performance import (
    CLASSIFICATION_METRICS,
    MAX_SEGMENT_VALUES,
    PerformanceReport,
    performance,
)

SEEDS = [0, 1, 2, 3, 4]


def _all_metrics(report: PerformanceReport) -> list[float | None]:
    found = list(report.metrics.values()) + list((report.reference_metrics or {}).values())
    for point in report.over_time:
        found += point.metrics.values()
    for segment in report.segments:
        found += segment.metrics.values()
    return found


def _assert_no_nan(report: PerformanceReport) -> None:
    assert all(v is None or math.isfinite(v) for v in _all_metrics(report))
    json.dumps(report.to_dict(), allow_nan=False)


def _binary(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    prob = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    y[rng.uniform(size=n) < 0.2] = np.nan  # labels not arrived yet
    return pd.DataFrame({"y": y, "p": (prob > 0.5).astype(int), "prob": prob})


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_matches_sklearn(seed: int) -> None:
    df = _binary(seed)
    report = performance(df, target="y", prediction="p", scores=["prob"])
    lab = df[df["y"].notna()]
    y, p, prob = lab["y"].astype(int), lab["p"], lab["prob"]
    assert report.task == "classification"
    assert report.positive_label == "1"
    assert (report.rows, report.labelled) == (len(df), len(lab))
    assert report.metrics == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y, p),
            "precision": skm.precision_score(y, p),
            "recall": skm.recall_score(y, p),
            "f1": skm.f1_score(y, p),
            "roc_auc": skm.roc_auc_score(y, prob),
            "log_loss": skm.log_loss(y, prob),
        }
    )
    # One column per class gives the same numbers as P(positive) alone.
    two = performance(
        df.assign(prob0=1 - df["prob"]), target="y", prediction="p", scores=["prob0", "prob"]
    )
    assert two.metrics == pytest.approx(report.metrics)
    _assert_no_nan(report)


@pytest.mark.parametrize("seed", SEEDS)
def test_string_labels_positive_is_the_greater_or_the_given_one(seed: int) -> None:
    df = _binary(seed)
    names = {0: "no", 1: "yes"}
    df = pd.DataFrame({"y": df["y"].map(names), "p": df["p"].map(names), "prob": df["prob"]})
    lab = df[df["y"].notna()]
    report = performance(df, target="y", prediction="p", scores=["prob"])
    assert report.positive_label == "yes"
    assert report.metrics["precision"] == pytest.approx(
        skm.precision_score(lab["y"], lab["p"], pos_label="yes")
    )
    assert report.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(lab["y"], lab["prob"]))
    flipped = performance(
        df.assign(prob=1 - df["prob"]),
        target="y",
        prediction="p",
        scores=["prob"],
        positive_label="no",
    )
    assert flipped.positive_label == "no"
    assert flipped.metrics["recall"] == pytest.approx(
        skm.recall_score(lab["y"], lab["p"], pos_label="no")
    )
    assert flipped.metrics["roc_auc"] == pytest.approx(report.metrics["roc_auc"])


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_matches_sklearn_macro_and_ovr(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, classes = 400, ["a", "b", "c"]
    proba = rng.dirichlet([1, 1, 1], n)
    y = np.array([rng.choice(classes, p=row) for row in proba], dtype=object)
    p = np.array(classes, dtype=object)[proba.argmax(axis=1)]
    y[:30] = None
    df = pd.DataFrame({"y": y, "p": p, "pa": proba[:, 0], "pb": proba[:, 1], "pc": proba[:, 2]})
    report = performance(df, target="y", prediction="p", scores=["pa", "pb", "pc"])
    lab = df[df["y"].notna()]
    yl, pl, scores = lab["y"].astype(str), lab["p"].astype(str), lab[["pa", "pb", "pc"]]
    assert report.positive_label is None
    assert report.metrics == pytest.approx(
        {
            "accuracy": skm.accuracy_score(yl, pl),
            "precision": skm.precision_score(yl, pl, average="macro"),
            "recall": skm.recall_score(yl, pl, average="macro"),
            "f1": skm.f1_score(yl, pl, average="macro"),
            "roc_auc": skm.roc_auc_score(yl, scores, multi_class="ovr", labels=classes),
            "log_loss": skm.log_loss(yl, scores, labels=classes),
        }
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_matches_sklearn_and_is_inferred(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, 200)
    df = pd.DataFrame({"y": y, "p": y + rng.normal(0, 1, 200)})
    df.loc[::7, "y"] = np.nan
    report = performance(df, target="y", prediction="p")
    lab = df.dropna()
    assert report.task == "regression"
    assert any("inferred as regression" in n for n in report.notes)
    assert report.metrics == pytest.approx(
        {
            "mae": skm.mean_absolute_error(lab["y"], lab["p"]),
            "rmse": skm.root_mean_squared_error(lab["y"], lab["p"]),
        }
    )


def test_tiny_example_by_hand() -> None:
    df = pd.DataFrame({"y": [1, 0, 1, 1, 0], "p": [1, 0, 0, 1, 1], "s": [0.9, 0.2, 0.4, 0.8, 0.6]})
    m = performance(df, target="y", prediction="p", scores=["s"]).metrics
    # TP=2, FP=1, FN=1, TN=1; 5 of the 6 (positive, negative) score pairs are ordered right.
    log_loss = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.8) + math.log(0.4))
    assert m == pytest.approx(
        {
            "accuracy": 3 / 5,
            "precision": 2 / 3,
            "recall": 2 / 3,
            "f1": 2 / 3,
            "roc_auc": 5 / 6,
            "log_loss": log_loss / 5,
        }
    )
    reg = performance(
        pd.DataFrame({"y": [1.0, 2.0, 3.0], "p": [2.0, 2.0, 5.0]}),
        target="y",
        prediction="p",
        task="regression",
    )
    assert reg.metrics == pytest.approx({"mae": 1.0, "rmse": math.sqrt(5 / 3)})


def test_task_inference_keeps_whole_float_predictions_as_classes() -> None:
    df = pd.DataFrame({"y": [0, 1, 1, 0], "p": [0.0, 1.0, 1.0, 1.0]})
    report = performance(df, target="y", prediction="p")
    assert report.task == "classification"
    assert report.metrics["accuracy"] == 0.75


def test_empty_frame_gives_a_report_of_nones() -> None:
    df = pd.DataFrame({"y": pd.Series([], dtype=float), "p": pd.Series([], dtype=int)})
    report = performance(df, target="y", prediction="p", segments=["p"])
    assert (report.rows, report.labelled) == (0, 0)
    assert set(report.metrics) == set(CLASSIFICATION_METRICS)
    assert all(v is None for v in report.metrics.values())
    assert report.segments == []
    timed = performance(
        df.assign(t=pd.Series([], dtype="datetime64[ns]")), target="y", prediction="p", time="t"
    )
    assert timed.over_time == [] and timed.rows == 0
    assert "The window has no rows." in report.notes


def test_no_labels_yet_is_not_an_error() -> None:
    df = _binary(0).assign(y=np.nan)
    report = performance(df, target="y", prediction="p", scores=["prob"])
    assert (report.rows, report.labelled) == (300, 0)
    assert all(v is None for v in report.metrics.values())
    assert any("No labels yet" in n for n in report.notes)
    obj = performance(df.assign(y=None).astype({"y": object}), target="y", prediction="p")
    assert obj.labelled == 0 and all(v is None for v in obj.metrics.values())


def test_one_row_and_one_class_leave_roc_auc_undefined() -> None:
    one = performance(
        pd.DataFrame({"y": [1], "p": [1], "s": [0.7]}), target="y", prediction="p", scores=["s"]
    )
    assert one.metrics["accuracy"] == 1.0
    assert one.metrics["roc_auc"] is None
    assert one.metrics["log_loss"] == pytest.approx(-math.log(0.7))
    assert any("roc_auc is undefined" in n for n in one.notes)
    negatives = performance(
        pd.DataFrame({"y": [0, 0, 0], "p": [0, 0, 0], "s": [0.1, 0.2, 0.3]}),
        target="y",
        prediction="p",
        scores=["s"],
    )
    assert negatives.positive_label == "1"
    assert negatives.metrics["accuracy"] == 1.0
    assert negatives.metrics["precision"] is None
    assert negatives.metrics["recall"] is None
    assert negatives.metrics["f1"] is None
    assert any("nothing was predicted positive" in n for n in negatives.notes)
    _assert_no_nan(negatives)


def test_missing_scores_and_predictions_are_left_out_with_notes() -> None:
    df = pd.DataFrame(
        {
            "y": [1, 0, 1, 0, 1],
            "p": [1, 0, None, 1, 1],
            "s": [0.9, 0.1, 0.5, np.nan, 0.8],
        }
    )
    report = performance(df, target="y", prediction="p", scores=["s"])
    assert report.labelled == 5
    assert report.metrics["accuracy"] == pytest.approx(3 / 4)
    assert report.metrics["roc_auc"] == 1.0  # rows 0, 1, 4
    assert any("without a prediction" in n for n in report.notes)
    assert any("without scores" in n for n in report.notes)
    no_scores = performance(df, target="y", prediction="p")
    assert no_scores.metrics["roc_auc"] is None and no_scores.metrics["log_loss"] is None
    assert any("need probability scores" in n for n in no_scores.notes)


def test_multiclass_score_problems_become_notes() -> None:
    df = pd.DataFrame(
        {"y": ["a", "b", "a"], "p": ["a", "c", "a"], "s1": [0.6, 0.3, 0.9], "s2": [0.4, 0.7, 0.1]}
    )
    wrong_count = performance(df, target="y", prediction="p", scores=["s1", "s2"])
    assert wrong_count.metrics["roc_auc"] is None
    assert any("one score column per class" in n for n in wrong_count.notes)
    df["s3"] = [0.2, 0.2, 0.2]  # rows do not sum to 1; class "c" never labelled
    report = performance(df, target="y", prediction="p", scores=["s1", "s2", "s3"])
    assert report.metrics["roc_auc"] is None
    assert any("no label is 'c'" in n for n in report.notes)
    assert report.metrics["accuracy"] == pytest.approx(2 / 3)
    _assert_no_nan(report)


def test_sklearn_rejections_and_warnings_become_notes() -> None:
    df = pd.DataFrame(
        {
            "y": ["a", "b", "c", "a"],
            "p": ["a", "b", "b", "a"],
            "s1": [0.5, 0.1, 0.1, 0.6],
            "s2": [0.1, 0.5, 0.1, 0.1],
            "s3": [0.1, 0.1, 0.5, 0.1],
        }
    )  # score rows do not sum to 1
    report = performance(df, target="y", prediction="p", scores=["s1", "s2", "s3"])
    assert report.metrics["roc_auc"] is None
    assert any(n.startswith("roc_auc could not be computed") for n in report.notes)
    assert report.metrics["log_loss"] is not None
    assert any(n.startswith("log_loss: ") and "sum to one" in n for n in report.notes)
    assert report.metrics["accuracy"] == 0.75
    binary = pd.DataFrame({"y": [0, 1], "p": [0, 1], "s": [0.2, 1.5]})
    bad = performance(binary, target="y", prediction="p", scores=["s"])
    assert bad.metrics["roc_auc"] == 1.0  # any ranking scores will do
    assert bad.metrics["log_loss"] is None
    assert any("greater than 1" in n for n in bad.notes)


def test_missing_column_names_it_and_the_existing_ones() -> None:
    df = _binary(0)
    with pytest.raises(InvalidInputError, match="'label'") as info:
        performance(df, target="label", prediction="p")
    assert "y, p, prob" in str(info.value)
    with pytest.raises(InvalidInputError, match="'proba' is not in the current window"):
        performance(df, target="y", prediction="p", scores=["proba"])
    with pytest.raises(InvalidInputError, match="'region' is not in the current window"):
        performance(df, target="y", prediction="p", segments=["region"])
    with pytest.raises(InvalidInputError, match="'ts' is not in the current window"):
        performance(df, target="y", prediction="p", time="ts")
    with pytest.raises(InvalidInputError, match="pandas DataFrame"):
        performance(df.to_dict(), target="y", prediction="p")


def test_invalid_inputs_are_clear_errors() -> None:
    df = pd.DataFrame({"y": ["a", "b", "c"], "p": ["a", "b", "b"]})
    with pytest.raises(InvalidInputError, match="binary classification"):
        performance(df, target="y", prediction="p", positive_label="a")
    with pytest.raises(InvalidInputError, match="different types"):
        performance(pd.DataFrame({"y": [1, 0], "p": ["1", "0"]}), target="y", prediction="p")
    with pytest.raises(InvalidInputError, match="numbers"):
        performance(df, target="y", prediction="p", task="regression")


def test_positive_label_given_as_text_matches_the_label() -> None:
    df = pd.DataFrame({"y": [1, 0, 1], "p": [1, 1, 1]})
    report = performance(df, target="y", prediction="p", positive_label="0")
    assert report.positive_label == "0"
    assert report.metrics["precision"] is None  # nothing predicted 0
    assert report.metrics["recall"] == 0.0


def test_reference_metrics() -> None:
    cur, ref = _binary(1), _binary(2)
    report = performance(cur, target="y", prediction="p", scores=["prob"], reference=ref)
    alone = performance(ref, target="y", prediction="p", scores=["prob"])
    assert report.reference_metrics == pytest.approx(alone.metrics)
    unscored = performance(
        cur, target="y", prediction="p", scores=["prob"], reference=ref.drop(columns="prob")
    )
    assert unscored.reference_metrics is not None
    assert unscored.reference_metrics["roc_auc"] is None
    assert unscored.reference_metrics["accuracy"] == alone.metrics["accuracy"]
    unlabelled = performance(cur, target="y", prediction="p", reference=ref.drop(columns="y"))
    assert unlabelled.reference_metrics is None
    assert any("reference lacks 'y'" in n for n in unlabelled.notes)


def test_over_time_buckets_with_a_given_freq() -> None:
    start = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    minutes = [5, 20, 50, 65, 70, 185, 190]  # nothing between 10:10 and 12:05
    df = pd.DataFrame(
        {
            "t": [start + timedelta(minutes=m) for m in minutes],
            "y": [1, 0, 1, 1, 0, 0, 0],
            "p": [1, 0, 0, 1, 1, 0, 0],
        }
    )
    report = performance(df.iloc[::-1], target="y", prediction="p", time="t", freq="1h")
    hours = [(p.start.hour, p.end.hour, p.rows) for p in report.over_time]
    assert hours == [(9, 10, 3), (10, 11, 2), (12, 13, 2)]
    assert all(
        p.start.tzinfo is not None and p.start.utcoffset() == timedelta(0) for p in report.over_time
    )
    assert [p.metrics["accuracy"] for p in report.over_time] == pytest.approx([2 / 3, 1 / 2, 1])
    assert report.over_time[0].metrics["recall"] == pytest.approx(1 / 2)
    assert report.over_time[2].metrics["recall"] is None  # no positive label in that hour


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (timedelta(minutes=10), timedelta(minutes=1)),
        (timedelta(minutes=30), timedelta(minutes=5)),
        (timedelta(hours=10), timedelta(hours=1)),
        (timedelta(days=3), timedelta(hours=6)),
        (timedelta(days=20), timedelta(days=1)),
        (timedelta(days=100), timedelta(days=7)),
    ],
)
def test_over_time_chooses_at_most_24_buckets(span: timedelta, width: timedelta) -> None:
    times = pd.date_range("2024-01-01 00:00:30", periods=200, end=None, freq=span / 199)
    df = pd.DataFrame({"t": times, "y": 1, "p": 1})  # naive times are taken as UTC
    report = performance(df, target="y", prediction="p", time="t")
    points = report.over_time
    assert 1 <= len(points) <= 24
    assert all(p.end - p.start == width for p in points)
    assert sum(p.rows for p in points) == 200
    assert [p.start for p in points] == sorted(p.start for p in points)
    assert points[0].start == pd.Timestamp("2024-01-01 00:00:30", tz="UTC").floor(width)


def test_over_time_parses_text_and_skips_untimed_rows() -> None:
    df = pd.DataFrame(
        {
            "t": ["2024-01-01T00:30:00+01:00", "2024-01-01T00:10:00Z", None],
            "y": [1, 0, 1],
            "p": [1, 1, 1],
        }
    )
    report = performance(df, target="y", prediction="p", time="t", freq="1h")
    assert [(p.start, p.rows) for p in report.over_time] == [
        (datetime(2023, 12, 31, 23, tzinfo=UTC), 1),
        (datetime(2024, 1, 1, 0, tzinfo=UTC), 1),
    ]
    assert any("1 row(s) without a time" in n for n in report.notes)
    with pytest.raises(InvalidInputError, match="fixed positive duration"):
        performance(df, target="y", prediction="p", time="t", freq="MS")
    with pytest.raises(InvalidInputError, match="holds numbers"):
        performance(df.assign(t=1.0), target="y", prediction="p", time="t")


def test_segments_match_metrics_of_their_rows() -> None:
    df = _binary(3).assign(region=lambda d: np.where(d.index % 3 == 0, "north", "south"))
    df.loc[df.index % 10 == 1, "region"] = None
    report = performance(df, target="y", prediction="p", scores=["prob"], segments=["region"])
    assert [s.value for s in report.segments] == ["south", "north", "(missing)"]
    for seg in report.segments:
        part = (
            df[df["region"].isna()] if seg.value == "(missing)" else df[df["region"] == seg.value]
        )
        alone = performance(part, target="y", prediction="p", scores=["prob"])
        assert (seg.column, seg.rows, seg.labelled) == ("region", len(part), alone.labelled)
        assert seg.metrics == pytest.approx(alone.metrics)


def test_segments_keep_the_most_frequent_values() -> None:
    n = MAX_SEGMENT_VALUES + 5
    codes = [i for i in range(n) for _ in range(i + 1)]  # value i occurs i + 1 times
    df = pd.DataFrame({"code": codes, "y": 1, "p": 1})
    report = performance(df, target="y", prediction="p", segments=["code"])
    assert [s.value for s in report.segments] == [str(i) for i in range(n - 1, 4, -1)]
    assert any(f"holds {n} values" in note for note in report.notes)
