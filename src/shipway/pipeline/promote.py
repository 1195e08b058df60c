"""The `promote` stage: a canary rollout of the candidate into an environment, watched until
it is promoted or rolled back. The first release into an empty environment is a plain deploy.
An environment on Kubernetes (`shipway k8s apply`) gets the cluster canary (HTTPRoute weights,
Prometheus analysis) with the options it was applied with."""

from __future__ import annotations

from collections.abc import Callable

from shipway.client import Client
from shipway.deploy.analysis import Checks
from shipway.deploy.control import deploy, rollout_start, wait_rollout
from shipway.deploy.records import DeploymentInfo, find_deployment
from shipway.deploy.rollout import RolloutState, parse_steps
from shipway.durations import parse_duration
from shipway.pipeline.spec import PromoteOptions
from shipway.pipeline.stages import Outcome
from shipway.registry.registry import get_model_version

__all__ = ["promote"]


def _checks(o: PromoteOptions) -> Checks:
    return Checks(
        max_error_rate=Checks.max_error_rate if o.max_error_rate is None else o.max_error_rate,
        max_p99_ms=o.max_p99_ms,
        min_requests=Checks.min_requests if o.min_requests is None else o.min_requests,
    )


def promote(uri: str, o: PromoteOptions, client: Client, say: Callable[[str], None]) -> Outcome:
    version = get_model_version(uri, client=client)
    running = find_deployment(o.environment, client=client)
    if running is not None and running.runtime == "kubernetes":
        return _on_cluster(version.uri, running, o, client, say)
    if running is None or not running.agent_alive or running.live_version is None:
        info = deploy(version.uri, o.environment, port=o.port, client=client, progress=say)
        return Outcome(True, f"first release: {version.uri} serves {o.environment} at {info.url}")
    if running.live_version == version.version:
        return Outcome(True, f"{version.uri} already serves {o.environment}")
    checks = _checks(o)
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


def _on_cluster(
    uri: str, running: DeploymentInfo, o: PromoteOptions, client: Client, say: Callable[[str], None]
) -> Outcome:
    from dataclasses import replace
    from pathlib import Path

    from shipway.deploy.kubernetes import RenderOptions, rollouts
    from shipway.deploy.kubernetes.prometheus import PrometheusMetricsSource

    saved = running.observed.get("options")
    base = RenderOptions.from_saved(saved) if saved else RenderOptions(uri, Path("."))
    options = replace(base, uri=uri, image=None, canary=None, canary_image=None)
    url = o.prometheus_url or options.prometheus_url
    started = rollouts.start(
        options, o.environment, steps=parse_steps(o.steps),
        interval_s=parse_duration(o.interval, "interval").total_seconds(),
        checks=_checks(o), client=client,
        source=lambda ns, app: PrometheusMetricsSource(url, namespace=ns, app=app),
    )  # fmt: skip
    state = started.controller.state
    say(f"cluster canary {state.id}: v{state.canary_version} against v{state.stable_version}")
    final = rollouts.run(started, on_change=lambda st: say(
        f"rollout {st.status}: {st.weight:g}% to v{st.canary_version}"))  # fmt: skip
    if final.status == "promoted":
        return Outcome(True, f"{uri} promoted to {o.environment} on the cluster by canary")
    return Outcome(False, f"cluster canary of {uri} in {o.environment} ended {final.status}"
                   + (f": {final.reason}" if final.reason else ""))  # fmt: skip
