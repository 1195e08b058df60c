"""What `shipway deploy`, `deployments` and `rollout` do: write the desired state, make sure
the environment's agent runs, and wait for it to report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from shipway.client import Client, get_client
from shipway.deploy import records
from shipway.deploy.agent import bind, logs_dir
from shipway.deploy.analysis import Checks
from shipway.deploy.records import DeploymentInfo
from shipway.deploy.rollout import RolloutState, Step, new_rollout
from shipway.errors import ConflictError, DeployError, InvalidInputError
from shipway.governance.approvals import check_approved
from shipway.registry.registry import get_model_version

__all__ = ["deploy", "down", "rollout_start", "up", "wait_rollout"]

DEFAULT_PORT = 8100
AGENT_START_S = 30.0


def _log_tail(path: os.PathLike[str] | str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


_LAUNCHED: list[subprocess.Popen[bytes]] = []
"""Agents this process started. They outlive the command on purpose; keeping their handles
(and polling them) reaps those that exited, instead of leaving zombies or warnings behind."""


def _start_agent(environment: str, client: Client) -> subprocess.Popen[bytes]:
    _LAUNCHED[:] = [p for p in _LAUNCHED if p.poll() is None]
    log_path = logs_dir(client, environment) / "agent.log"
    with open(log_path, "ab") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "shipway.cli", "deployments", "agent", "--env", environment],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI and its terminal
            env=client.child_env(PYTHONUNBUFFERED="1"),
        )
    _LAUNCHED.append(agent)
    return agent


def _reap(pid: int, timeout_s: float) -> None:
    """Wait for a stopping agent to be gone (and reaped, if this process started it)."""
    import psutil

    for agent in _LAUNCHED:
        if agent.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.wait(timeout_s)
            _LAUNCHED.remove(agent)
            return
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout_s)


def deploy(
    uri: str,
    environment: str,
    *,
    replicas: int | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    runtime: str = "process",
    image: str | None = None,
    wait_s: float = 300.0,
    client: Client | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> DeploymentInfo:
    """Run ``uri`` in ``environment``: start it, or roll the running version over to it.

    An environment whose policy requires approval takes only an approved version
    (ApprovalRequiredError, before anything is written). Through a team server it runs on the
    server's machine, listening on 127.0.0.1 with the version's latest image: another ``host``
    or an explicit ``image`` is refused there.
    """
    client = client or get_client()
    if runtime not in ("process", "container"):
        raise InvalidInputError(f"Unknown runtime '{runtime}'.", "Use process or container.")
    if replicas is not None and replicas < 1:
        raise InvalidInputError("--replicas must be at least 1.")
    if client.remote:
        from shipway.remote import operations as remote

        return remote.deploy(
            uri, environment, replicas=replicas, port=port, host=host, runtime=runtime,
            image=image, wait_s=wait_s, client=client, progress=progress,
        )  # fmt: skip
    version = get_model_version(uri, client=client)  # an unknown version fails here
    check_approved(environment, version.name, version.version, client=client)
    if runtime == "container" and image is None:
        image = _latest_image(version.uri, client)
    current = records.find_deployment(environment, client=client)
    if current is not None and current.model != version.name:
        raise ConflictError(
            f"Environment {environment} serves model '{current.model}', not '{version.name}'.",
            "Deploy it to another --env.",
        )
    running = records.active_rollout(environment, client=client)
    if running is not None:
        raise ConflictError(
            f"Rollout {running.id} is {running.status} in {environment}.",
            f"Finish it first: `shipway rollout status --env {environment}`.",
        )
    alive = current is not None and current.agent_alive
    if current is not None and alive and port is not None and port != current.port:
        raise ConflictError(
            f"{environment} listens on port {current.port}; it cannot move while running.",
            f"Stop it first: `shipway deployments down --env {environment}`.",
        )
    if (
        alive
        and current is not None
        and current.live_version == version.version
        and replicas in (None, current.replicas)
        and current.status == "running"
    ):
        progress(f"{version.uri} is already live in {environment}.")
        return current
    port = port or (current.port if current else DEFAULT_PORT)
    if not alive:
        bind(host, port).close()  # a taken port is a clear error before anything is written
    records.request_deployment(
        environment,
        model=version.name,
        version=version.version,
        replicas=replicas or (current.replicas if current else 1),
        host=host,
        port=port,
        runtime=runtime,
        image=image,
        client=client,
    )
    agent = None if alive else _start_agent(environment, client)
    return _wait_deployed(environment, version.version, agent, wait_s, client, progress)


def _latest_image(uri: str, client: Client) -> str:
    from shipway.packaging.images import list_images

    built = [i for i in list_images(uri, client=client) if i.kind == "inference"]
    if not built:
        raise InvalidInputError(
            f"{uri} has no inference image yet.", f"Build one first: `shipway build {uri}`."
        )
    return built[-1].tag


def _wait_deployed(
    environment: str,
    version: int,
    agent: subprocess.Popen[bytes] | None,
    wait_s: float,
    client: Client,
    progress: Callable[[str], None],
) -> DeploymentInfo:
    deadline = time.monotonic() + wait_s
    said = None
    while True:
        dep = records.get_deployment(environment, client=client)
        if dep.message and dep.message != said:
            progress(dep.message)
            said = dep.message
        if dep.live_version == version and dep.status == "running":
            return dep
        if dep.version != version or dep.status == "failed":  # the agent reverted or gave up
            raise DeployError(
                f"Deploying version {version} to {environment} failed: {dep.message}",
                "Nothing else changed: the environment runs what it ran before."
                if dep.live_version
                else None,
            )
        if agent is not None and agent.poll() is not None:
            tail = _log_tail(logs_dir(client, environment) / "agent.log")
            raise DeployError(f"The agent of {environment} exited with {agent.returncode}.", tail)
        if time.monotonic() > deadline:
            raise DeployError(
                f"Version {version} is not live in {environment} after {wait_s:g} s "
                f"(status {dep.status}).",
                f"See `shipway deployments show {environment}`.",
            )
        time.sleep(0.25)


def up(environment: str, *, wait_s: float = 300.0, client: Client | None = None) -> DeploymentInfo:
    """Start a stopped environment again from its records (after `down`, a crash, a reboot)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.up(environment, wait_s=wait_s, client=client)
    dep = records.get_deployment(environment, client=client)
    if dep.agent_alive:
        return dep
    bind(dep.host, dep.port).close()
    records.request_deployment(
        environment, model=dep.model, version=dep.version, replicas=dep.replicas,
        host=dep.host, port=dep.port, runtime=dep.runtime, image=dep.image, client=client,
    )  # fmt: skip
    agent = _start_agent(environment, client)
    return _wait_deployed(environment, dep.version, agent, wait_s, client, lambda _: None)


def down(environment: str, *, wait_s: float = 60.0, client: Client | None = None) -> None:
    """Stop the environment's agent (which drains and stops its replicas)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        remote.down(environment, wait_s=wait_s, client=client)
        return
    dep = records.get_deployment(environment, client=client)
    if dep.agent_pid is not None and dep.agent_alive:
        records.request_stop(environment, client=client)
        os.kill(dep.agent_pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while records.get_deployment(environment, client=client).status != "stopped":
            if time.monotonic() > deadline:
                raise DeployError(f"The agent of {environment} did not stop in {wait_s:g} s.")
            time.sleep(0.2)
        _reap(dep.agent_pid, max(deadline - time.monotonic(), 1.0))
    else:
        records.mark_stopped(environment, client=client)


def rollout_start(
    uri: str,
    environment: str,
    *,
    steps: Sequence[Step],
    interval_s: float,
    failure_limit: int = 1,
    checks: Checks | None = None,
    client: Client | None = None,
) -> RolloutState:
    """Start a canary of ``uri`` against the running stable version of ``environment``.

    The canary version needs an approval where the environment's policy requires one; the
    alias the agent moves on promotion follows from that approval.
    """
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.rollout_start(
            uri, environment, steps=steps, interval_s=interval_s, failure_limit=failure_limit,
            checks=checks, client=client,
        )  # fmt: skip
    version = get_model_version(uri, client=client)
    check_approved(environment, version.name, version.version, client=client)
    dep = records.get_deployment(environment, client=client)
    if not dep.agent_alive or dep.live_version is None:
        raise ConflictError(
            f"{environment} is not running (status {dep.status}).",
            f"Deploy a stable version first: `shipway deploy URI --env {environment}`.",
        )
    if dep.model != version.name:
        raise ConflictError(f"{environment} serves '{dep.model}', not '{version.name}'.")
    state = new_rollout(
        environment=environment,
        model=dep.model,
        stable_version=dep.live_version,
        canary_version=version.version,
        steps=steps,
        interval_s=interval_s,
        failure_limit=failure_limit,
        checks=checks,
        now=time.time(),
    )
    records.start_rollout(state, client=client)
    return state


def wait_rollout(
    environment: str,
    rollout_id: str,
    *,
    client: Client | None = None,
    on_change: Callable[[RolloutState], None] = lambda _: None,
    timeout_s: float | None = None,
    until_paused: bool = True,
) -> RolloutState:
    """Follow a rollout until it ends (or pauses), calling ``on_change`` at every move."""
    client = client or get_client()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen: tuple[object, ...] | None = None
    while True:
        state = records.latest_rollout(environment, client=client)
        if state is None or state.id != rollout_id:
            raise ConflictError(f"Rollout {rollout_id} is no longer the latest in {environment}.")
        key = (state.status, state.step_index, state.weight, len(state.history))
        if key != seen:
            seen = key
            on_change(state)
        if not state.active or (until_paused and state.status == "paused"):
            return state
        if deadline is not None and time.monotonic() > deadline:
            return state
        time.sleep(0.5)
