"""The `promote` stage: a canary rollout of the candidate into an environment, watched until
it is promoted or rolled back. The first release into an empty environment is a plain deploy."""

from __future__ import annotations

from collections.abc import Callable

from shipway.client import Client
from shipway.deploy.analysis import Checks
from shipway.deploy.control import deploy, rollout_start, wait_rollout
from shipway.deploy.records import find_deployment
from shipway.deploy.rollout import RolloutState, parse_steps
from shipway.durations import parse_duration
from shipway.pipeline.spec import PromoteOptions
from shipway.pipeline.stages import Outcome
from shipway.registry.registry import get_model_version

__all__ = ["promote"]


def promote(uri: str, o: PromoteOptions, client: Client, say: Callable[[str], None]) -> Outcome:
    version = get_model_version(uri, client=client)
    running = find_deployment(o.environment, client=client)
    if running is None or not running.agent_alive or running.live_version is None:
        info = deploy(version.uri, o.environment, port=o.port, client=client, progress=say)
        return Outcome(True, f"first release: {version.uri} serves {o.environment} at {info.url}")
    if running.live_version == version.version:
        return Outcome(True, f"{version.uri} already serves {o.environment}")
    checks = Checks(
        max_error_rate=Checks.max_error_rate if o.max_error_rate is None else o.max_error_rate,
        max_p99_ms=o.max_p99_ms,
        min_requests=Checks.min_requests if o.min_requests is None else o.min_requests,
    )
    state = rollout_start(
        version.uri,
        o.environment,
        steps=parse_steps(o.steps),
        interval_s=parse_duration(o.interval, "interval").total_seconds(),
        checks=checks,
        client=client,
    )
    say(f"canary {state.id}: v{state.canary_version} against v{state.stable_version}")

    def moved(st: RolloutState) -> None:
        say(f"rollout {st.status}: {st.weight:g}% to v{st.canary_version}")

    limit = parse_duration(o.timeout, "timeout").total_seconds()
    final = wait_rollout(o.environment, state.id, client=client, on_change=moved,
                         timeout_s=limit, until_paused=False)  # fmt: skip
    if final.active:
        return Outcome(
            False,
            f"the canary of {version.uri} is still {final.status} at {final.weight:g}% after "
            f"{o.timeout} (too little traffic to analyse?); it carries on: follow it with "
            f"`shipway rollout status --env {o.environment}`",
        )
    if final.status == "promoted":
        return Outcome(True, f"{version.uri} promoted to {o.environment} by canary")
    return Outcome(
        False,
        f"canary of {version.uri} in {o.environment} ended {final.status}"
        + (f": {final.reason}" if final.reason else ""),
    )
