"""Tests of the canary analysis (``shipway.deploy.analysis``).

The checks are pure logic, tested over a small in-memory ``MetricsSource``; one test reads the
real gateway's counters through ``GatewayMetrics`` (the gateway itself is tested in
``test_deploy_gateway.py``, whose helpers this one reuses).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from shipway.deploy.analysis import (
    Checks,
    GatewayMetrics,
    MetricsSource,
    ScoreShift,
    TrackStats,
    Verdict,
    analyse,
)
from shipway.deploy.gateway import Gateway, Track
from test_deploy_gateway import gateway_at, upstreams, url


class Numbers:
    """A MetricsSource holding fixed stats per track; records what it was asked."""

    def __init__(self, stable: TrackStats, canary: TrackStats) -> None:
        self.by_track = {"stable": stable, "canary": canary}
        self.asked: list[tuple[str, float, float]] = []

    def stats(self, track: str, start: float, end: float) -> TrackStats:
        self.asked.append((track, start, end))
        return self.by_track[track]


GOOD_STABLE = TrackStats(requests=800, errors=4, p99_ms=100.0)


def judge(canary: TrackStats, stable: TrackStats = GOOD_STABLE, **checks: Any) -> Verdict:
    return analyse(Numbers(stable, canary), Checks(**checks), 1000.0, 1030.0)


def test_a_good_canary_passes_and_says_why() -> None:
    source = Numbers(GOOD_STABLE, TrackStats(200, 2, 120.0))
    verdict = analyse(source, Checks(), 1000.0, 1030.0)
    assert verdict.passed and not verdict.inconclusive
    assert verdict.reasons == [
        "canary error rate 1% over 30 s <= 5% (2 of 200 requests failed)",
        "canary p99 latency 120 ms over 30 s <= 1.5 x stable 100 ms + 50 ms = 200 ms",
    ]
    assert verdict.measurements == {
        "interval_s": 30.0,
        "canary_requests": 200,
        "canary_errors": 2,
        "canary_error_rate": 0.01,
        "canary_p99_ms": 120.0,
        "stable_requests": 800,
        "stable_errors": 4,
        "stable_error_rate": 0.005,
        "stable_p99_ms": 100.0,
    }
    # like with like: both tracks over the same interval
    assert sorted(source.asked) == [("canary", 1000.0, 1030.0), ("stable", 1000.0, 1030.0)]


def test_a_high_error_rate_fails() -> None:
    verdict = judge(TrackStats(200, 42, 90.0))
    assert not verdict.passed and not verdict.inconclusive
    assert verdict.reasons == ["canary error rate 21% over 30 s > 5% (42 of 200 requests failed)"]
    assert verdict.measurements["canary_error_rate"] == 0.21
    # the threshold itself passes; a stricter one fails with its own number
    assert judge(TrackStats(100, 5, 90.0)).passed
    assert judge(TrackStats(100, 5, 90.0), max_error_rate=0.025).reasons == [
        "canary error rate 5% over 30 s > 2.5% (5 of 100 requests failed)"
    ]


def test_too_few_canary_requests_is_inconclusive_not_a_failure() -> None:
    verdict = judge(TrackStats(12, 12, 900.0))
    assert verdict.inconclusive and not verdict.passed
    assert verdict.reasons == [
        "inconclusive: the canary saw 12 requests over 30 s, fewer than the 20 needed to judge"
    ]
    assert verdict.measurements["canary_requests"] == 12
    empty = judge(TrackStats(0, 0, None), min_requests=0)
    assert empty.inconclusive and empty.measurements["canary_error_rate"] is None


def test_latency_relative_to_stable() -> None:
    verdict = judge(TrackStats(200, 0, 310.0))
    assert not verdict.passed
    assert verdict.reasons == [
        "canary p99 latency 310 ms over 30 s > 1.5 x stable 100 ms + 50 ms = 200 ms"
    ]
    assert judge(TrackStats(200, 0, 200.0)).passed
    assert not judge(TrackStats(200, 0, 160.0), max_p99_ratio=1.0, p99_slack_ms=20).passed


def test_latency_absolute_bound_wins_over_the_relative_one() -> None:
    verdict = judge(TrackStats(200, 0, 310.0), max_p99_ms=400)
    assert verdict.passed
    assert "canary p99 latency 310 ms over 30 s <= 400 ms" in verdict.reasons
    failed = judge(TrackStats(200, 0, 450.0), TrackStats(0, 0, None), max_p99_ms=400)
    assert failed.reasons == ["canary p99 latency 450 ms over 30 s > 400 ms"]


def test_latency_is_not_compared_without_enough_stable_traffic() -> None:
    for stable in (TrackStats(0, 0, None), TrackStats(5, 0, 10.0)):
        verdict = judge(TrackStats(200, 0, 5000.0), stable)
        assert verdict.passed
        assert verdict.reasons[1] == (
            f"latency not compared: stable saw {stable.requests} requests over 30 s, "
            "fewer than 20, and no absolute p99 bound is set"
        )


def test_both_failures_are_reported_together() -> None:
    verdict = judge(TrackStats(100, 30, 1000.0))
    assert not verdict.passed
    assert [r.split(" ")[1] for r in verdict.reasons] == ["error", "p99"]


def test_score_shift_through_the_callable() -> None:
    asked: list[tuple[float, float]] = []

    def shift(value: float | None) -> ScoreShift:
        def score_shift(start: float, end: float) -> float | None:
            asked.append((start, end))
            return value

        return score_shift

    canary = TrackStats(200, 0, 100.0)
    checks = Checks(max_score_shift=0.05)
    source = Numbers(GOOD_STABLE, canary)

    verdict = analyse(source, checks, 1000.0, 1030.0, score_shift=shift(-0.12))
    assert not verdict.passed
    assert verdict.reasons == [
        "the canary's mean predicted score differs from stable's by 0.12 over 30 s, more than 0.05"
    ]
    assert verdict.measurements["score_shift"] == -0.12
    assert asked == [(1000.0, 1030.0)]

    ok = analyse(source, checks, 1000.0, 1030.0, score_shift=shift(0.01))
    assert ok.passed and ok.reasons[-1].endswith("by 0.01 over 30 s, within 0.05")

    unknown = analyse(source, checks, 1000.0, 1030.0, score_shift=shift(None))
    assert unknown.passed and unknown.measurements["score_shift"] is None
    assert unknown.reasons[-1].startswith("score shift not checked")
    assert analyse(source, checks, 1000.0, 1030.0).passed  # no callable: not checked

    asked.clear()
    unset = analyse(source, Checks(), 1000.0, 1030.0, score_shift=shift(9.0))
    assert unset.passed and asked == [] and "score_shift" not in unset.measurements


def test_long_intervals_read_in_minutes() -> None:
    verdict = analyse(Numbers(GOOD_STABLE, TrackStats(200, 42, 90.0)), Checks(), 0.0, 330.0)
    assert verdict.reasons[0].startswith("canary error rate 21% over 5.5 min > 5%")


def test_checks_round_trip_through_a_plain_dict() -> None:
    checks = Checks(max_p99_ms=250.0, min_requests=50)
    assert Checks(**checks.__dict__) == checks  # the rollout stores them as JSON


def test_the_real_gateway_is_a_metrics_source() -> None:
    with upstreams("stable", "canary") as up:
        up["canary"][0].status = 500  # every canary answer fails
        gateway = Gateway("production", "credit")
        gateway.set_tracks(
            [
                Track("stable", 4, 80, [url(up, "stable")]),
                Track("canary", 5, 20, [url(up, "canary")]),
            ]
        )
        source: MetricsSource = GatewayMetrics(gateway)
        with gateway_at(gateway) as client:
            start = time.time()
            for _ in range(60):
                client.get("/predict")
            end = time.time()

            inconclusive = analyse(source, Checks(), start, end)  # 12 canary requests
            assert inconclusive.inconclusive
            assert "the canary saw 12 requests" in inconclusive.reasons[0]

            for _ in range(100):
                client.get("/predict")
            verdict = analyse(source, Checks(), start, time.time())
            assert not verdict.passed and not verdict.inconclusive
            assert verdict.reasons[0].startswith("canary error rate 100% over ")
            assert verdict.reasons[0].endswith("> 5% (32 of 32 requests failed)")
            assert verdict.measurements["stable_requests"] == 128
            assert verdict.measurements["stable_errors"] == 0


@pytest.mark.parametrize(("requests", "errors", "rate"), [(0, 0, None), (10, 0, 0.0), (4, 1, 0.25)])
def test_track_stats_error_rate(requests: int, errors: int, rate: float | None) -> None:
    assert TrackStats(requests, errors, None).error_rate == rate
