"""One monitoring run over frames: column roles, distributions, outputs, alerts, stored form."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shipway.errors import InvalidInputError
from shipway.monitoring import profile
from shipway.monitoring.monitor import AlertPolicy, Roles, monitor
from shipway.monitoring.result import MonitorResult


def _frames(seed: int = 0, rows: int = 4000, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows) + shift
    z = rng.normal(5, 2, rows)
    color = rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2])
    group = rng.choice(["a", "b"], rows)
    score = 1 / (1 + np.exp(-(x + 0.5 * (z - 5) / 2)))
    label = (rng.random(rows) < score).astype(int)
    return pd.DataFrame(
        {
            "x": x,
            "z": z,
            "color": color,
            "group": group,
            "score": score,
            "prediction": (score > 0.5).astype(int),
            "label": label,
        }
    )


ROLES = Roles(target="label", prediction="prediction", scores=("score",), sensitive="group")


def test_roles_are_not_features_and_a_shifted_feature_is_the_one_that_drifts() -> None:
    result = monitor(_frames(0), _frames(1, shift=1.0), roles=ROLES)
    assert result.features == ["x", "z", "color", "group"]
    assert result.drift.drifted_columns == ["x"]
    assert {c.column for c in result.drift.columns} == set(result.features)
    # the outputs moved with x: the model's score drift is reported apart from features
    assert [c.column for c in result.score_drift] == ["prediction", "score"]
    assert any(c.drifted for c in result.score_drift)
    names = [(a.name, a.column) for a in result.alerts]
    assert ("column_drift", "x") in names and ("score_drift", "score") in names
    assert "dataset_drift" not in [a.name for a in result.alerts]  # 1 of 4 < share 0.5


def test_dataset_drift_alert_follows_the_share() -> None:
    ref, cur = _frames(0), _frames(1, shift=1.0)
    strict = monitor(ref, cur, roles=ROLES, policy=AlertPolicy(share=0.25))
    assert strict.drift.drifted and strict.alerts[0].name == "dataset_drift"
    assert strict.alerts[0].severity == "critical"
    assert strict.worst == "critical"


def test_unchanged_data_raises_no_drift_alert_across_seeds() -> None:
    for seed in range(3):
        result = monitor(_frames(10 + seed), _frames(20 + seed), roles=ROLES)
        assert result.drift.drifted_columns == []
        assert not [a for a in result.alerts if "drift" in a.name]


def test_distributions_line_up_with_the_reference_bins() -> None:
    ref, cur = _frames(0), _frames(1, shift=1.0)
    result = monitor(ref, cur, roles=ROLES)
    by_name = {d.column: d for d in result.distributions}
    x = by_name["x"]
    assert x.edges is not None and len(x.edges) == len(x.reference_counts) + 1
    inside = sum(x.current_counts) + x.current_below + x.current_above
    assert inside == len(cur)
    expected, _ = np.histogram(cur["x"], bins=np.asarray(x.edges))
    assert x.current_counts == expected.tolist()
    assert x.current_above == int((cur["x"] > x.edges[-1]).sum())
    color = by_name["color"]
    assert color.labels == ["red", "green", "blue"]
    assert color.current_counts == [int((cur["color"] == c).sum()) for c in color.labels]
    assert "score" in by_name  # outputs are plotted too


def test_performance_uses_labelled_rows_and_alerts_on_a_drop() -> None:
    ref, cur = _frames(0), _frames(1)
    good = monitor(ref, cur, roles=ROLES)
    assert good.performance is not None and good.performance.reference_metrics is not None
    assert good.performance.labelled == len(cur)
    assert "performance_drop" not in [a.name for a in good.alerts]
    flipped = cur.assign(prediction=1 - cur["prediction"], score=1 - cur["score"])
    bad = monitor(ref, flipped, roles=ROLES)
    drops = [a for a in bad.alerts if a.name == "performance_drop"]
    assert drops and any("accuracy" in a.message for a in drops)


def test_a_window_without_labels_reports_no_metrics_rather_than_failing() -> None:
    cur = _frames(1).drop(columns=["label"])
    result = monitor(_frames(0), cur, roles=ROLES)
    assert result.performance is not None
    assert result.performance.labelled == 0
    assert all(v is None for v in result.performance.metrics.values())


def test_fairness_alert_below_four_fifths() -> None:
    cur = _frames(1)
    cur.loc[cur["group"] == "b", "prediction"] = 0  # group b is never selected
    result = monitor(_frames(0), cur, roles=ROLES)
    assert result.fairness is not None and result.fairness.four_fifths_violated
    fairness = [a for a in result.alerts if a.name == "fairness"]
    assert fairness and fairness[0].column == "group"


def test_a_stored_profile_gives_the_same_drift_as_the_frame() -> None:
    ref, cur = _frames(0), _frames(1, shift=0.5)
    from_frame = monitor(ref, cur, roles=Roles())
    from_profile = monitor(profile(ref), cur, roles=Roles())
    assert from_profile.drift == from_frame.drift
    assert from_profile.quality == from_frame.quality


def test_bad_input_is_a_clear_error() -> None:
    ref = _frames(0)
    with pytest.raises(InvalidInputError, match="no rows"):
        monitor(ref, ref.head(0), roles=ROLES)
    with pytest.raises(InvalidInputError, match=r"'score'.*Its columns"):
        monitor(ref, ref.drop(columns=["score"]), roles=ROLES)
    with pytest.raises(InvalidInputError, match="Features not in the reference: nope"):
        monitor(ref, ref, features=["x", "nope"])


def test_a_missing_feature_is_a_critical_quality_alert() -> None:
    result = monitor(_frames(0), _frames(1).drop(columns=["z"]), roles=ROLES)
    assert result.drift.missing_columns == ["z"]
    critical = [a for a in result.alerts if a.severity == "critical"]
    assert [(a.name, a.column) for a in critical] == [("data_quality", "z")]


def test_result_survives_a_json_round_trip_with_infinite_statistics() -> None:
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50, "v": np.arange(100.0)})
    cur = pd.DataFrame({"c": ["a"] * 100, "v": np.arange(100.0)})
    result = monitor(ref, cur)
    text = result.to_json()
    again = MonitorResult.from_dict(json.loads(text))
    assert again == result
    assert "NaN" not in text
