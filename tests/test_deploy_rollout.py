"""The canary state machine: steps, analysis verdicts, failure limit, pause, promote, abort.

The controller is pure logic between two seams; here both are small in-memory recorders
(the agent tests drive it with the real gateway and real replicas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shipway.deploy.analysis import Checks, TrackStats
from shipway.deploy.rollout import Controller, RolloutState, new_rollout, parse_steps
from shipway.errors import ConflictError, InvalidInputError


@dataclass
class Numbers:
    """Stats per track that the test sets as traffic 'happens'."""

    canary: TrackStats = field(default_factory=lambda: TrackStats(100, 0, 20.0))
    stable: TrackStats = field(default_factory=lambda: TrackStats(900, 0, 20.0))

    def stats(self, track: str, start: float, end: float) -> TrackStats:
        return self.canary if track == "canary" else self.stable


@dataclass
class Moves:
    log: list[str] = field(default_factory=list)

    def set_canary_weight(self, percent: float) -> None:
        self.log.append(f"weight {percent:g}")

    def promote_canary(self) -> None:
        self.log.append("promote")

    def stop_canary(self) -> None:
        self.log.append("stop")


def _rollout(steps: str = "10,25,50,100", failure_limit: int = 1) -> RolloutState:
    return new_rollout(
        environment="production",
        model="credit",
        stable_version=1,
        canary_version=2,
        steps=parse_steps(steps),
        interval_s=30,
        failure_limit=failure_limit,
        checks=Checks(),
        now=0.0,
    )


def _controller(state: RolloutState, numbers: Numbers | None = None) -> tuple[Controller, Moves]:
    moves = Moves()
    return Controller(state, numbers or Numbers(), moves), moves


def test_a_good_canary_walks_every_step_and_is_promoted() -> None:
    c, moves = _controller(_rollout())
    assert c.begin(0).weight == 10
    assert c.tick(29).step_index == 0  # the interval has not passed
    for t, weight in ((30, 25), (60, 50), (90, 100)):
        state = c.tick(t)
        assert state.weight == weight and state.status == "running"
    final = c.tick(120)
    assert final.status == "promoted" and final.reason == "every step passed"
    assert moves.log == ["weight 10", "weight 25", "weight 50", "weight 100", "promote"]
    assert [h["passed"] for h in final.history] == [True] * 4


def test_errors_roll_back_at_once_and_say_why() -> None:
    numbers = Numbers(canary=TrackStats(100, 20, 20.0))
    c, moves = _controller(_rollout(), numbers)
    c.begin(0)
    state = c.tick(30)
    assert state.status == "failed" and state.weight == 0
    assert moves.log == ["weight 10", "stop"]
    assert state.reason is not None and "error rate" in state.reason and "20" in state.reason


def test_latency_against_stable_fails_the_step() -> None:
    numbers = Numbers(canary=TrackStats(100, 0, 230.0), stable=TrackStats(900, 0, 20.0))
    c, _ = _controller(_rollout(), numbers)
    c.begin(0)
    assert c.tick(30).status == "failed"
    assert "p99" in (c.state.reason or "")


def test_failure_limit_allows_retries_of_the_same_step() -> None:
    numbers = Numbers(canary=TrackStats(100, 20, 20.0))
    c, _ = _controller(_rollout(failure_limit=2), numbers)
    c.begin(0)
    state = c.tick(30)
    assert state.status == "running" and state.failures == 1 and state.weight == 10
    numbers.canary = TrackStats(100, 0, 20.0)  # the errors were a blip
    assert c.tick(45).step_index == 0  # a new interval started at the failure
    assert c.tick(60).weight == 25


def test_too_little_traffic_is_inconclusive_then_pauses() -> None:
    numbers = Numbers(canary=TrackStats(3, 0, 20.0))
    c, _ = _controller(_rollout(), numbers)
    c.begin(0)
    state = c.tick(30)
    assert state.status == "running" and state.history[-1]["inconclusive"]
    assert c.tick(150).status == "paused"
    assert "inconclusive" in (c.state.reason or "")
    assert c.promote(151).weight == 25  # a person decides: go on


def test_pause_step_waits_for_promote_and_abort_returns_traffic() -> None:
    c, moves = _controller(_rollout("10,pause,50,100"))
    c.begin(0)
    assert c.tick(30).status == "paused"
    assert c.tick(1000).status == "paused"  # waits however long it takes
    assert c.promote(1001).weight == 50
    with pytest.raises(ConflictError, match="not waiting for promote"):
        c.promote(1002)
    aborted = c.abort(1003)
    assert aborted.status == "aborted" and moves.log[-1] == "stop"
    with pytest.raises(ConflictError, match="already aborted"):
        c.abort(1004)


def test_promote_full_skips_the_remaining_steps() -> None:
    c, moves = _controller(_rollout())
    c.begin(0)
    assert c.promote(5, full=True).status == "promoted"
    assert moves.log == ["weight 10", "promote"]


def test_state_survives_json_and_a_new_controller_carries_on() -> None:
    c, _ = _controller(_rollout())
    c.begin(0)
    c.tick(30)
    again = RolloutState.model_validate_json(c.state.model_dump_json())
    c2, moves = _controller(again)
    assert c2.tick(60).weight == 50 and moves.log == ["weight 50"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10,5,100", "above the previous"),
        ("10,abc", "Cannot read the step"),
        ("pause", "no traffic"),
        ("0,100", "above the previous"),
        ("10,150", "at most 100"),
    ],
)
def test_bad_steps_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_steps(text)


def test_steps_parse() -> None:
    assert parse_steps("10, 25%,pause,100") == [10, 25, "pause", 100]


def test_a_rollout_of_the_stable_version_is_refused() -> None:
    with pytest.raises(ConflictError, match="already stable"):
        new_rollout(
            environment="p", model="m", stable_version=2, canary_version=2, steps=[100],
            interval_s=1, now=0,
        )  # fmt: skip
