"""The canary state machine: traffic steps, analysis at each interval, promotion or rollback.

A :class:`Controller` owns no replicas and no sockets. It moves traffic through the
:class:`Traffic` seam and reads measurements through the analysis
:class:`~shipway.deploy.analysis.MetricsSource` seam, so the same code drives the local
gateway here and a Kubernetes target later. The agent calls :meth:`Controller.tick` every
second and persists the returned state.

Steps are canary traffic percentages, or ``"pause"`` (wait for ``promote``)::

    10, 25, 50, 100     # analyse at the end of every interval, then go on
    10, pause, 50, 100  # after 10 % passes, wait for `shipway rollout promote`

After the last step passes, the canary is promoted: it becomes the stable track and the old
stable version is drained. ``failure_limit`` failed analyses abort the rollout: the canary's
weight drops to 0 at once and its replicas stop.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict

from shipway.deploy.analysis import Checks, MetricsSource, Verdict, analyse
from shipway.errors import ConflictError, InvalidInputError

__all__ = [
    "Controller",
    "RolloutState",
    "Status",
    "Step",
    "Traffic",
    "new_rollout",
    "parse_steps",
]

Step: TypeAlias = int | Literal["pause"]
Status: TypeAlias = Literal["running", "paused", "promoted", "aborted", "failed"]
ACTIVE: tuple[Status, ...] = ("running", "paused")
INCONCLUSIVE_INTERVALS = 5
"""Intervals a step may stay inconclusive (too little canary traffic) before it pauses."""


class Traffic(Protocol):
    """Where the canary's traffic and replicas live: the local agent, or a cluster."""

    def set_canary_weight(self, percent: float) -> None: ...

    def promote_canary(self) -> None:
        """The canary becomes stable (all traffic); the old stable is drained and stopped."""

    def stop_canary(self) -> None:
        """Canary weight to 0 at once, then its replicas stop."""


class RolloutState(BaseModel):
    """Everything a rollout is; stored as JSON, so a restarted agent carries on."""

    model_config = ConfigDict(extra="forbid")

    id: str
    environment: str
    model: str
    stable_version: int
    canary_version: int
    steps: list[Step]
    interval_s: float
    failure_limit: int
    checks: dict[str, Any]
    step_index: int = 0
    weight: float = 0.0
    step_started: float | None = None
    failures: int = 0
    status: Status = "running"
    reason: str | None = None
    history: list[dict[str, Any]] = []
    started_at: float
    updated_at: float

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def step(self) -> Step:
        return self.steps[self.step_index]


def parse_steps(text: str) -> list[Step]:
    """``"10,25,pause,100"`` as steps; percentages must rise and stay within 1..100."""
    steps: list[Step] = []
    last = 0
    for raw in (s.strip() for s in text.split(",")):
        if raw == "pause":
            steps.append("pause")
            continue
        try:
            value = int(raw.removesuffix("%"))
        except ValueError:
            raise InvalidInputError(
                f"Cannot read the step '{raw}' in '{text}'.",
                "Steps are percentages or 'pause', for example 10,25,pause,50,100.",
            ) from None
        if not last < value <= 100:
            raise InvalidInputError(
                f"Step {value} in '{text}' must be above the previous one and at most 100."
            )
        steps.append(value)
        last = value
    if not any(isinstance(s, int) for s in steps):
        raise InvalidInputError(f"The steps '{text}' give the canary no traffic.")
    return steps


def new_rollout(
    *,
    environment: str,
    model: str,
    stable_version: int,
    canary_version: int,
    steps: Sequence[Step],
    interval_s: float,
    failure_limit: int = 1,
    checks: Checks | None = None,
    now: float,
) -> RolloutState:
    if stable_version == canary_version:
        raise ConflictError(
            f"Version {canary_version} of '{model}' is already stable in {environment}."
        )
    if interval_s <= 0 or failure_limit < 1:
        raise InvalidInputError("The interval must be positive and the failure limit >= 1.")
    return RolloutState(
        id=uuid.uuid4().hex[:12],
        environment=environment,
        model=model,
        stable_version=stable_version,
        canary_version=canary_version,
        steps=list(steps),
        interval_s=interval_s,
        failure_limit=failure_limit,
        checks=dataclasses.asdict(checks or Checks()),
        started_at=now,
        updated_at=now,
    )


class Controller:
    """Advances one rollout; every method returns the new state (also in ``self.state``)."""

    def __init__(
        self,
        state: RolloutState,
        source: MetricsSource,
        traffic: Traffic,
        *,
        score_shift: Callable[[float, float], float | None] | None = None,
    ) -> None:
        self.state = state
        self.source = source
        self.traffic = traffic
        self.score_shift = score_shift
        self.checks = Checks(**state.checks)

    def begin(self, now: float) -> RolloutState:
        """Start at the first step (the canary's replicas are ready by now)."""
        return self._enter(0, now)

    def tick(self, now: float) -> RolloutState:
        s = self.state
        if s.status != "running" or s.step_started is None:
            return s
        if now - s.step_started < s.interval_s:
            return s
        verdict = analyse(
            self.source, self.checks, s.step_started, now, score_shift=self.score_shift
        )
        self._record(verdict, now)
        if verdict.inconclusive:
            if now - s.step_started >= INCONCLUSIVE_INTERVALS * s.interval_s:
                return self._update(
                    now,
                    status="paused",
                    reason="inconclusive: too little canary traffic to judge; "
                    "promote or abort by hand",
                )
            return self.state  # keep measuring the same, longer window
        if not verdict.passed:
            failures = s.failures + 1
            if failures >= s.failure_limit:
                self.traffic.stop_canary()
                return self._update(
                    now,
                    failures=failures,
                    weight=0.0,
                    status="failed",
                    reason="analysis failed: " + "; ".join(verdict.reasons),
                )
            return self._update(now, failures=failures, step_started=now)
        return self._next(now)

    def promote(self, now: float, *, full: bool = False) -> RolloutState:
        """Resume a paused rollout at its next step, or (``full``) promote the canary now."""
        s = self.state
        if not s.active:
            raise ConflictError(f"Rollout {s.id} is {s.status}; nothing to promote.")
        if full:
            return self._promote(now, "promoted by hand")
        if s.status != "paused":
            raise ConflictError(
                f"Rollout {s.id} is running step {s.step_index + 1} of {len(s.steps)}; "
                "it is not waiting for promote.",
                "Use --full to promote the canary now.",
            )
        return self._next(now)

    def abort(self, now: float, reason: str = "aborted by hand") -> RolloutState:
        s = self.state
        if not s.active:
            raise ConflictError(f"Rollout {s.id} is already {s.status}.")
        self.traffic.stop_canary()
        return self._update(now, weight=0.0, status="aborted", reason=reason)

    def _next(self, now: float) -> RolloutState:
        if self.state.step_index + 1 >= len(self.state.steps):
            return self._promote(now, "every step passed")
        return self._enter(self.state.step_index + 1, now)

    def _enter(self, index: int, now: float) -> RolloutState:
        step = self.state.steps[index]
        if step == "pause":
            return self._update(
                now, step_index=index, status="paused", reason="waiting for promote"
            )
        self.traffic.set_canary_weight(float(step))
        return self._update(
            now, step_index=index, weight=float(step), step_started=now, status="running",
            reason=None,
        )  # fmt: skip

    def _promote(self, now: float, why: str) -> RolloutState:
        self.traffic.promote_canary()
        return self._update(now, weight=100.0, status="promoted", reason=why)

    def _record(self, verdict: Verdict, now: float) -> None:
        entry = {
            "time": now,
            "step": self.state.step_index,
            "weight": self.state.weight,
            "passed": verdict.passed,
            "inconclusive": verdict.inconclusive,
            "reasons": list(verdict.reasons),
            "measurements": dict(verdict.measurements),
        }
        self.state = self.state.model_copy(update={"history": [*self.state.history, entry]})

    def _update(self, now: float, **changes: Any) -> RolloutState:
        self.state = self.state.model_copy(update={**changes, "updated_at": now})
        return self.state
