"""What starts a retraining: `shipway scheduler run` checks the triggers of the `retrain:`
section and retrains when one fires.

* **data**: the content hash of the files ``triggers.data`` matches differs from the one the
  last retraining recorded (every retraining keeps the hash in its pipeline run's context, so
  the store is the memory: nothing to lose when the scheduler restarts);
* **drift**: the model's newest monitoring result, newer than the last retraining, shows
  dataset drift;
* **schedule**: a time of the cron expression has passed since the last retraining (the
  scheduler's start, for a long-running scheduler).

`--once` checks once and exits, for a Kubernetes CronJob or cron itself. A retraining still
running (a drift alert from `shipway monitor watch` may have started one) holds the others
back. A drift alert can also start a retraining directly: ``shipway monitor watch ...
--command "shipway retrain MODEL --trigger drift --detach"``.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipway.client import Client
from shipway.errors import ShipwayError
from shipway.pipeline.records import PipelineRunInfo, list_pipeline_runs
from shipway.pipeline.retrain import RetrainResult, data_hash, retrain
from shipway.pipeline.retrain_spec import RetrainSpec, load_retrain_spec

__all__ = ["due", "last_retraining", "run_scheduler"]


STALE = timedelta(hours=12)
"""A retraining `running` longer than this crashed; it no longer holds the others back."""


def last_retraining(model: str, client: Client) -> PipelineRunInfo | None:
    """The newest retraining of ``model`` on record."""
    runs = list_pipeline_runs(model=model, limit=200, client=client)
    return next((r for r in runs if r.trigger.startswith("retrain:")), None)


def due(
    spec: RetrainSpec, *, client: Client, now: datetime, since: datetime | None = None
) -> tuple[str | None, str]:
    """Which trigger fires now (None: none) and why. ``since``: when a long-running scheduler
    started (its schedule counts from there when nothing was retrained since)."""
    last = last_retraining(spec.model, client)
    if last is not None and last.status == "running" and now - last.started_at < STALE:
        return None, f"retraining {last.id} is still running"
    triggers = spec.triggers
    if triggers.drift:
        drifted = _drift_since(spec.model, last.started_at if last else None, client)
        if drifted is not None:
            return "drift", drifted
    if triggers.data is not None:
        current = data_hash(triggers.data, spec.directory)
        seen = last.context.get("data_hash") if last else None
        if current is not None and current != seen:
            before = f"{seen[:12]}" if isinstance(seen, str) else "never retrained"
            return "data", f"the data changed: sha256 {current[:12]} (was {before})"
    if triggers.schedule is not None:
        from croniter import croniter

        previous: datetime = croniter(triggers.schedule, now).get_prev(datetime)
        marks = [m for m in (last.started_at if last else None, since) if m is not None]
        reference = max(marks) if marks else None
        if reference is None or previous > reference:
            return "schedule", f"'{triggers.schedule}' was due at {previous:%Y-%m-%d %H:%M} UTC"
    return None, "no trigger fired"


def _drift_since(model: str, since: datetime | None, client: Client) -> str | None:
    from shipway.monitoring.history import list_results

    newest = list_results(model, limit=1, client=client)
    if not newest or not newest[0].drift.drifted:
        return None
    result = newest[0]
    if since is not None and result.created_at <= since:
        return None
    columns = ", ".join(result.drift.drifted_columns[:5])
    return f"monitoring result {result.id} shows dataset drift ({columns})"


def run_scheduler(
    directory: Path,
    *,
    client: Client,
    once: bool = False,
    poll_s: float = 60.0,
    say: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = _time.sleep,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[RetrainResult]:
    """Check the triggers every ``poll_s`` seconds (once with ``once``) and retrain when one
    fires; the retrainings it ran. A retraining that fails is reported and the loop goes on
    (with ``once``, its error is raised: the one check failed)."""
    spec = load_retrain_spec(directory)
    _describe(spec, say)
    started = None if once else clock()
    done: list[RetrainResult] = []
    while True:
        trigger, why = due(spec, client=client, now=clock(), since=started)
        if trigger is None:
            say(why)
        else:
            say(f"retraining {spec.model}: {why}")
            try:
                result = retrain(spec.model, trigger=trigger, directory=spec.directory,
                                 client=client, say=say, spec=spec,
                                 context={"trigger_reason": why})  # fmt: skip
                done.append(result)
                say(f"{result.decision}: {result.summary}")
            except ShipwayError as exc:
                if once:  # one check (a CronJob, a cron line): its failure is the command's
                    raise
                say(f"retraining failed: {exc}")
        if once:
            return done
        sleep(poll_s)


def _describe(spec: RetrainSpec, say: Callable[[str], None]) -> None:
    t = spec.triggers
    parts = [f"schedule '{t.schedule}'" if t.schedule else None,
             f"data {t.data}" if t.data else None, "drift" if t.drift else None]  # fmt: skip
    chosen = [p for p in parts if p]
    say(f"triggers of {spec.model}: " + (", ".join(chosen) if chosen else "none configured"))
