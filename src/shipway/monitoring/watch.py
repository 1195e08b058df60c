"""Monitoring on a schedule, calling a webhook or a command when an alert fires.

``shipway monitor watch`` runs a :class:`~shipway.monitoring.job.MonitorSpec` every interval
(or on a cron schedule, via croniter) and hands each result whose alerts reach a severity to
the configured hooks. The hooks are how later work reacts to drift, for example by starting
a retraining pipeline. A run that fails (no traffic in the window, a store outage) is
reported and the watch goes on: one quiet hour must not stop the monitoring.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from shipway.client import Client, get_client
from shipway.errors import InvalidInputError, ShipwayError
from shipway.monitoring.job import MonitorSpec, run_job
from shipway.monitoring.quality import Severity
from shipway.monitoring.result import MonitorResult

__all__ = ["Hooks", "Schedule", "alert_payload", "fire_hooks", "watch"]

log = logging.getLogger("shipway.monitor")

_LEVELS: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
WEBHOOK_ATTEMPTS = 3


@dataclass(frozen=True)
class Schedule:
    """Every ``every``, or at the times of the cron expression ``cron`` (UTC)."""

    every: timedelta | None = None
    cron: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise InvalidInputError("Give a schedule: --every 1h or --cron '0 * * * *'.")
        if self.every is not None and self.every <= timedelta(0):
            raise InvalidInputError("--every must be a positive duration.")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise InvalidInputError(
                    f"'{self.cron}' is not a cron expression.",
                    "Use five fields: minute hour day month weekday, e.g. '0 * * * *'.",
                )

    def next_after(self, moment: datetime) -> datetime:
        if self.every is not None:
            return moment + self.every
        from croniter import croniter

        assert self.cron is not None
        nxt: datetime = croniter(self.cron, moment).get_next(datetime)
        return nxt


@dataclass(frozen=True)
class Hooks:
    """Where alerts go: a webhook URL (POSTed JSON) and/or a command (JSON on stdin)."""

    webhook: str | None = None
    command: str | None = None
    min_severity: Severity = "warning"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise InvalidInputError(f"The webhook '{self.webhook}' is not an http(s) URL.")
        if self.min_severity not in _LEVELS:
            raise InvalidInputError(f"Unknown severity '{self.min_severity}'.")


def alert_payload(result: MonitorResult, report: Path | None = None) -> dict[str, object]:
    """What a webhook receives (and a command reads on stdin)."""
    return {
        "event": "shipway.monitor.alert",
        "result_id": result.id,
        "time": result.created_at.isoformat(),
        "model": result.model,
        "version": result.version,
        "severity": result.worst,
        "dataset_drift": result.drift.drifted,
        "drifted_columns": result.drift.drifted_columns,
        "alerts": [a.model_dump(mode="json") for a in result.alerts],
        "current": result.current.model_dump(mode="json"),
        "report": str(report) if report is not None else None,
    }


def fire_hooks(result: MonitorResult, hooks: Hooks, report: Path | None = None) -> list[str]:
    """Call the hooks if the result's alerts reach ``hooks.min_severity``; what was called."""
    worst = result.worst
    if worst is None or _LEVELS[worst] < _LEVELS[hooks.min_severity]:
        return []
    payload = alert_payload(result, report)
    called: list[str] = []
    if hooks.webhook is not None:
        _post(hooks.webhook, payload, hooks.timeout_s)
        called.append("webhook")
    if hooks.command is not None:
        _run_command(hooks.command, payload, result, hooks.timeout_s)
        called.append("command")
    return called


def _post(url: str, payload: dict[str, object], timeout_s: float) -> None:
    error: Exception | None = None
    for attempt in range(WEBHOOK_ATTEMPTS):
        try:
            response = httpx.post(url, json=payload, timeout=timeout_s)
            if response.status_code < 500:
                response.raise_for_status()
                return
            error = httpx.HTTPStatusError(
                f"{response.status_code}", request=response.request, response=response
            )
        except httpx.HTTPStatusError as exc:  # a 4xx: retrying will not help
            raise ShipwayError(f"The webhook {url} refused the alert: {exc}") from exc
        except httpx.HTTPError as exc:
            error = exc
        _time.sleep(0.5 * 2**attempt)
    raise ShipwayError(f"The webhook {url} failed {WEBHOOK_ATTEMPTS} times: {error}")


def _run_command(
    command: str, payload: dict[str, object], result: MonitorResult, timeout_s: float
) -> None:
    env = os.environ | {
        "SHIPWAY_MONITOR_RESULT_ID": result.id,
        "SHIPWAY_MONITOR_MODEL": result.model or "",
        "SHIPWAY_MONITOR_VERSION": "" if result.version is None else str(result.version),
        "SHIPWAY_MONITOR_SEVERITY": result.worst or "",
    }
    done = subprocess.run(
        shlex.split(command),
        input=json.dumps(payload).encode(),
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-500:]
        raise ShipwayError(f"The alert command exited with {done.returncode}: {tail}")


def watch(
    spec: MonitorSpec,
    schedule: Schedule,
    hooks: Hooks,
    *,
    runs: int | None = None,
    report: Path | None = None,
    on_result: Callable[[MonitorResult | None, str | None], None] | None = None,
    client: Client | None = None,
    sleep: Callable[[float], None] = _time.sleep,
) -> int:
    """Run ``spec`` now and then on ``schedule``, ``runs`` times (forever when ``None``).

    ``on_result`` hears each result, or ``None`` and the error of a run that failed. Returns
    the number of runs whose hooks fired.
    """
    client = client or get_client()
    fired = 0
    done = 0
    while runs is None or done < runs:
        started = datetime.now(UTC)
        result: MonitorResult | None = None
        try:
            result = run_job(spec, client=client)
            if report is not None:
                from shipway.monitoring.html import write_html

                write_html(result, report)
            if fire_hooks(result, hooks, report):
                fired += 1
            if on_result is not None:
                on_result(result, None)
        except ShipwayError as exc:
            log.warning("monitoring run failed: %s", exc)
            if on_result is not None:
                on_result(result, str(exc))
        done += 1
        if runs is not None and done >= runs:
            break
        wait = (schedule.next_after(started) - datetime.now(UTC)).total_seconds()
        sleep(max(wait, 0.0))
    return fired
