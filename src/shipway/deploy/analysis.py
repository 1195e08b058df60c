"""Canary analysis: compare the canary with stable over one interval, from one source of numbers.

The checks are pure logic over a :class:`MetricsSource`, the seam between "where traffic is
measured" and "what a good canary is":

* locally, :class:`GatewayMetrics` reads the gateway's own per-second counters;
* on Kubernetes, a ``PrometheusMetricsSource`` will implement the same ``stats`` method with
  queries over the model servers' ``shipway_requests_total`` (``increase`` by track, and 5xx
  statuses for errors) and ``histogram_quantile(0.99, ...)`` over
  ``shipway_request_duration_seconds_bucket``, so the controller and these checks
  are reused unchanged.

Both tracks are always measured over the same interval from the same source: like with like.
Checks (each with its threshold in :class:`Checks`):

* **error rate**: the canary's share of 5xx answers and gateway timeouts/connection failures;
* **latency**: the canary's p99 against an absolute bound, or else against stable's p99 times
  a ratio plus some slack (skipped while stable has too little traffic to compare with);
* **score shift** (optional): how far the canary's mean predicted score moved from stable's,
  through a callable the agent supplies (it reads the prediction log; this module does no I/O).

Too little canary traffic makes the verdict *inconclusive*: neither a pass nor a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from shipway.deploy.gateway import Gateway

__all__ = [
    "Checks",
    "GatewayMetrics",
    "MetricsSource",
    "ScoreShift",
    "TrackStats",
    "Verdict",
    "analyse",
]

ScoreShift: TypeAlias = Callable[[float, float], float | None]
"""``(start, end) -> mean canary score - mean stable score`` over the interval, or None when the
prediction log holds too few scores to tell."""


@dataclass(frozen=True)
class TrackStats:
    """What one track saw over an interval."""

    requests: int
    errors: int
    """5xx answers from the replicas, plus the gateway's own 502/504 for this track."""
    p99_ms: float | None
    """None with no requests."""

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class MetricsSource(Protocol):
    """Per-track request counts, errors and p99 latency over ``[start, end)`` (epoch seconds)."""

    def stats(self, track: str, start: float, end: float) -> TrackStats: ...


class GatewayMetrics:
    """The local gateway's counters as a :class:`MetricsSource` (one-second resolution)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def stats(self, track: str, start: float, end: float) -> TrackStats:
        return self.gateway.stats(track, start, end)


@dataclass(frozen=True)
class Checks:
    """Thresholds of the analysis; each default suits a typical online model."""

    max_error_rate: float = 0.05
    """The canary's error rate above this fails."""
    max_p99_ms: float | None = None
    """An absolute p99 bound; when unset the canary is compared with stable instead:"""
    max_p99_ratio: float = 1.5
    """canary p99 above stable p99 x this ratio + ``p99_slack_ms`` fails."""
    p99_slack_ms: float = 50.0
    min_requests: int = 20
    """Fewer canary requests than this in the interval: inconclusive. Stable needs as many for
    the relative latency check to be meaningful."""
    max_score_shift: float | None = None
    """|mean canary score - mean stable score| above this fails (needs a score-shift callable)."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one analysis.

    ``reasons`` explain the verdict in plain words with the numbers: the failed checks when it
    failed, why it could not judge when inconclusive, each check's result when it passed.
    """

    passed: bool
    inconclusive: bool
    reasons: list[str]
    measurements: dict[str, float | None] = field(default_factory=dict)


def analyse(
    source: MetricsSource,
    checks: Checks,
    start: float,
    end: float,
    *,
    score_shift: ScoreShift | None = None,
) -> Verdict:
    """Judge the canary against stable over ``[start, end)``."""
    canary = source.stats("canary", start, end)
    stable = source.stats("stable", start, end)
    over = f"over {_duration(end - start)}"
    measurements: dict[str, float | None] = {
        "interval_s": end - start,
        "canary_requests": float(canary.requests),
        "canary_errors": float(canary.errors),
        "canary_error_rate": canary.error_rate,
        "canary_p99_ms": canary.p99_ms,
        "stable_requests": float(stable.requests),
        "stable_errors": float(stable.errors),
        "stable_error_rate": stable.error_rate,
        "stable_p99_ms": stable.p99_ms,
    }
    needed = max(1, checks.min_requests)
    if canary.requests < needed:
        reason = (
            f"inconclusive: the canary saw {canary.requests} requests {over}, "
            f"fewer than the {needed} needed to judge"
        )
        return Verdict(False, True, [reason], measurements)

    failed: list[str] = []
    passed: list[str] = []
    for ok, reason in (
        _error_rate(canary, checks, over),
        _latency(canary, stable, checks, over),
        _score_shift(score_shift, checks, start, end, over, measurements),
    ):
        if reason:
            (passed if ok else failed).append(reason)
    if failed:
        return Verdict(False, False, failed, measurements)
    return Verdict(True, False, passed, measurements)


def _error_rate(canary: TrackStats, checks: Checks, over: str) -> tuple[bool, str]:
    rate = canary.errors / canary.requests
    ok = rate <= checks.max_error_rate
    return ok, (
        f"canary error rate {_pct(rate)} {over} {'<=' if ok else '>'} "
        f"{_pct(checks.max_error_rate)} ({canary.errors} of {canary.requests} requests failed)"
    )


def _latency(canary: TrackStats, stable: TrackStats, checks: Checks, over: str) -> tuple[bool, str]:
    p99 = canary.p99_ms if canary.p99_ms is not None else 0.0  # it has requests by now
    if checks.max_p99_ms is not None:
        ok = p99 <= checks.max_p99_ms
        sign = "<=" if ok else ">"
        return ok, f"canary p99 latency {_ms(p99)} {over} {sign} {_ms(checks.max_p99_ms)}"
    if stable.p99_ms is None or stable.requests < checks.min_requests:
        return True, (
            f"latency not compared: stable saw {stable.requests} requests {over}, fewer than "
            f"{checks.min_requests}, and no absolute p99 bound is set"
        )
    bound = stable.p99_ms * checks.max_p99_ratio + checks.p99_slack_ms
    ok = p99 <= bound
    return ok, (
        f"canary p99 latency {_ms(p99)} {over} {'<=' if ok else '>'} "
        f"{checks.max_p99_ratio:g} x stable {_ms(stable.p99_ms)} + {_ms(checks.p99_slack_ms)}"
        f" = {_ms(bound)}"
    )


def _score_shift(
    score_shift: ScoreShift | None,
    checks: Checks,
    start: float,
    end: float,
    over: str,
    measurements: dict[str, float | None],
) -> tuple[bool, str]:
    if checks.max_score_shift is None:
        return True, ""
    shift = score_shift(start, end) if score_shift is not None else None
    measurements["score_shift"] = shift
    if shift is None:
        return True, f"score shift not checked: no prediction-log scores to compare {over}"
    ok = abs(shift) <= checks.max_score_shift
    return ok, (
        f"the canary's mean predicted score differs from stable's by {abs(shift):.3g} {over}, "
        f"{'within' if ok else 'more than'} {checks.max_score_shift:g}"
    )


def _pct(x: float) -> str:
    return f"{x * 100:.1f}".removesuffix(".0") + "%"


def _ms(x: float) -> str:
    return f"{x:.0f} ms" if x >= 10 else f"{x:.2g} ms"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
