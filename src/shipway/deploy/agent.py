"""The agent: the one process that owns an environment on this machine.

It binds the environment's port and runs the gateway there, keeps the replicas of each track
alive, carries out rolling updates and canary rollouts, and reports to the store. Commands
never talk to it directly: they write the desired state (a deployment, a rollout, a request
to promote or abort) and the agent, polling the store every ``tick_s``, makes it so. Replicas
are the agent's children; they die with it, and an agent started again rebuilds the
environment from the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from shipway.addresses import explain_bind_error
from shipway.client import Client, get_client
from shipway.deploy import records
from shipway.deploy.analysis import GatewayMetrics
from shipway.deploy.gateway import Gateway, Track
from shipway.deploy.replicas import ReplicaSet, ReplicaSpec
from shipway.deploy.rollout import Controller, RolloutState
from shipway.errors import DeployError, ShipwayError

__all__ = ["Agent", "logs_dir", "run_agent"]

log = logging.getLogger("shipway.deploy")

READY_TIMEOUT_S = 180.0
HEARTBEAT_S = 2.0


def logs_dir(client: Client, environment: str) -> Path:
    path = Path(client.settings.home) / "deployments" / environment
    path.mkdir(parents=True, exist_ok=True)
    return path


def bind(host: str, port: int) -> socket.socket:
    """The environment's listening socket, bound before anything starts: a taken port is a
    clear error rather than a half-started environment."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        problem = explain_bind_error(exc, host, port)
        raise DeployError(problem.message, problem.hint) from exc
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class Agent:
    """Reconciles one environment (see the module docstring)."""

    def __init__(
        self,
        environment: str,
        *,
        client: Client | None = None,
        tick_s: float = 0.5,
        drain_s: float = 30.0,
        health_interval_s: float = 1.0,
    ) -> None:
        self.environment = environment
        self.client = client or get_client()
        self.tick_s = tick_s
        self.drain_s = drain_s
        self.health_interval_s = health_interval_s
        dep = records.get_deployment(environment, client=self.client)
        self.model = dep.model
        self.gateway = Gateway(environment, dep.model)
        self.stable: ReplicaSet | None = None
        self.stable_version: int | None = None
        self.canary: ReplicaSet | None = None
        self.canary_weight = 0.0
        self.controller: Controller | None = None
        self._task: asyncio.Task[None] | None = None  # an update or a canary start under way
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._last_beat = 0.0
        self._last_health = 0.0

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            self.gateway.app(),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=10,
            proxy_headers=False,  # the gateway writes X-Forwarded-* itself
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self._report(agent_pid=os.getpid())
        try:
            while not self._stopping.is_set():
                try:
                    await self.step()
                except ShipwayError as exc:
                    log.error("%s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.tick_s)
        finally:
            await self._shutdown()
            server.should_exit = True
            await serving

    async def step(self) -> None:
        dep = await asyncio.to_thread(records.get_deployment, self.environment, client=self.client)
        now = time.monotonic()
        if now - self._last_health >= self.health_interval_s:
            self._last_health = now
            await self._supervise()
        if self._task is None or self._task.done():
            self._collect()
            rollout = await asyncio.to_thread(
                records.active_rollout, self.environment, client=self.client
            )
            if rollout is not None:
                await self._drive_rollout(rollout)
            elif dep.version != self.stable_version or (
                self.stable is not None and dep.replicas != len(self.stable.replicas)
            ):
                self._task = asyncio.create_task(self._roll_to(dep.version, dep.replicas))
        if now - self._last_beat >= HEARTBEAT_S:
            self._last_beat = now
            self._report()

    def _collect(self) -> None:
        if self._task is not None and self._task.done():
            exc = self._task.exception()
            if exc is not None:
                log.error("update failed: %s", exc)
            self._task = None

    async def _supervise(self) -> None:
        for replica_set in (self.stable, self.canary):
            if replica_set is not None:
                await replica_set.supervise_once()
        self._publish()

    # -- traffic ----------------------------------------------------------------------------

    def _publish(self) -> None:
        tracks = []
        if self.stable is not None and self.stable_version is not None:
            weight = 100.0 - (self.canary_weight if self.canary is not None else 0.0)
            tracks.append(Track("stable", self.stable_version, weight, self.stable.ready_urls()))
        if self.canary is not None and self.controller is not None:
            version = self.controller.state.canary_version
            tracks.append(Track("canary", version, self.canary_weight, self.canary.ready_urls()))
        self.gateway.set_tracks(tracks)

    def set_canary_weight(self, percent: float) -> None:
        self.canary_weight = percent
        self._publish()

    def stop_canary(self) -> None:
        self.canary_weight = 0.0
        old, self.canary = self.canary, None
        self._publish()
        if old is not None:
            self._in_background(self._drain_and_stop(old))

    def promote_canary(self) -> None:
        assert self.canary is not None and self.controller is not None
        old = self.stable
        self.stable, self.canary = self.canary, None
        self.stable_version = self.controller.state.canary_version
        self.canary_weight = 0.0
        self._publish()
        if old is not None:
            self._in_background(self._drain_and_stop(old))
        self._report(status="running", live_version=self.stable_version, set_version=True)
        self._move_alias(self.stable_version)

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain_and_stop(self, replica_set: ReplicaSet) -> None:
        """Wait for the requests in flight through ``replica_set`` (it is out of the gateway
        already), then stop it."""
        deadline = time.monotonic() + self.drain_s
        urls = [r.url for r in replica_set.replicas]
        while time.monotonic() < deadline and any(self.gateway.in_flight(u) for u in urls):
            await asyncio.sleep(0.05)
        await replica_set.stop(grace_s=self.drain_s)

    # -- rolling updates --------------------------------------------------------------------

    def _spec(self, version: int) -> ReplicaSpec:
        dep = records.get_deployment(self.environment, client=self.client)
        return ReplicaSpec(
            uri=f"models:/{self.model}/{version}",
            runtime=dep.runtime,  # type: ignore[arg-type]
            image=dep.image,
        )

    def _new_set(self, version: int, replicas: int) -> ReplicaSet:
        return ReplicaSet(
            self._spec(version),
            replicas,
            health_interval_s=self.health_interval_s,
            logs=logs_dir(self.client, self.environment) / "logs",
        )

    async def _roll_to(self, version: int, replicas: int) -> None:
        """Start ``version``, move all traffic to it once ready, then drain the old replicas.
        A version that does not become ready changes nothing that runs."""
        first = self.stable is None
        self._report(
            status="starting" if first else "updating",
            message=f"starting {replicas} replica(s) of version {version}",
        )
        new = self._new_set(version, replicas)
        try:
            await new.start()
            await new.wait_ready(READY_TIMEOUT_S)
        except DeployError as exc:
            await new.stop(grace_s=5)
            self._report(
                status="failed" if first else "running",
                message=f"version {version} did not start: {exc}",
                revert=True,
            )
            if first:
                self.stable_version = version  # do not retry in a loop; a new deploy will
            return
        old = self.stable
        self.stable, self.stable_version = new, version
        self._publish()
        self._report(status="running", live_version=version, message=None)
        self._move_alias(version)
        if old is not None:
            await self._drain_and_stop(old)

    def _move_alias(self, version: int) -> None:
        """Point the environment's alias at what it now serves. The deployment or rollout
        that got here was checked for approval when it started (`control`), so this move,
        its consequence, is not checked again."""
        from shipway.registry.registry import set_alias

        try:
            set_alias(
                f"models:/{self.model}/{version}",
                self.environment,
                client=self.client,
                approved=True,
            )
        except ShipwayError as exc:  # an environment name that is no valid alias
            log.warning("alias %s not moved: %s", self.environment, exc)

    # -- canary rollouts --------------------------------------------------------------------

    async def _drive_rollout(self, state: RolloutState) -> None:
        if self.controller is None or self.controller.state.id != state.id:
            self._task = asyncio.create_task(self._start_canary(state))
            return
        request = await asyncio.to_thread(records.take_request, state.id, client=self.client)
        before = self.controller.state
        wall = time.time()
        try:
            if request == "abort":
                after = self.controller.abort(wall)
            elif request in ("promote", "promote-full"):
                after = self.controller.promote(wall, full=request == "promote-full")
            else:
                after = self.controller.tick(wall)
        except ShipwayError as exc:
            log.warning("rollout request %s refused: %s", request, exc)
            return
        if after != before:
            records.save_rollout(after, client=self.client, previous=before)
        if not after.active:
            self.controller = None
        if (after.status, after.weight) != (before.status, before.weight):
            self._report()  # what runs now, at once rather than at the next heartbeat

    async def _start_canary(self, state: RolloutState) -> None:
        dep = records.get_deployment(self.environment, client=self.client)
        canary = self._new_set(state.canary_version, dep.replicas)
        try:
            await canary.start()
            await canary.wait_ready(READY_TIMEOUT_S)
        except DeployError as exc:
            await canary.stop(grace_s=5)
            failed = state.model_copy(
                update={"status": "failed", "reason": f"canary did not start: {exc}"}
            )
            records.save_rollout(failed, client=self.client, previous=state)
            return
        self.canary = canary
        self.controller = Controller(
            state,
            GatewayMetrics(self.gateway),
            self,
            score_shift=self._score_shift(state),
        )
        if state.step_started is None:
            after = self.controller.begin(time.time())
        else:  # an agent restarted mid-rollout: carry on at the recorded weight
            self.set_canary_weight(state.weight)
            after = state
        records.save_rollout(after, client=self.client, previous=state)

    def _score_shift(self, state: RolloutState) -> Callable[[float, float], float | None] | None:
        if state.checks.get("max_score_shift") is None:
            return None
        from shipway.deploy.scores import mean_score_shift

        def shift(start: float, end: float) -> float | None:
            return mean_score_shift(
                self.client, state.model, state.stable_version, state.canary_version, start, end
            )

        return shift

    # -- reports and shutdown ---------------------------------------------------------------

    def _observed(self) -> dict[str, Any]:
        def describe(rs: ReplicaSet | None, version: int | None) -> dict[str, Any] | None:
            if rs is None:
                return None
            return {
                "version": version,
                "replicas": [
                    {
                        "id": r.id,
                        "pid": r.pid,
                        "url": r.url,
                        "state": r.state,
                        "restarts": r.restarts,
                        "last_error": r.last_error,
                    }
                    for r in rs.replicas
                ],
            }

        canary_version = self.controller.state.canary_version if self.controller else None
        return {
            "stable": describe(self.stable, self.stable_version),
            "canary": describe(self.canary, canary_version),
            "weights": {"stable": 100.0 - self.canary_weight, "canary": self.canary_weight}
            if self.canary is not None
            else {"stable": 100.0},
        }

    def _report(
        self,
        *,
        status: str | None = None,
        message: str | None = None,
        live_version: int | None = None,
        agent_pid: int | None = None,
        revert: bool = False,
        set_version: bool = False,
    ) -> None:
        records.report(
            self.environment,
            client=self.client,
            status=status,
            message=message,
            live_version=live_version,
            agent_pid=agent_pid,
            observed=self._observed(),
            revert_version=revert,
            set_version=live_version if set_version else None,
        )

    async def _shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await task
        sets = [s for s in (self.canary, self.stable) if s is not None]
        self.gateway.set_tracks([])
        await asyncio.gather(*(s.stop(grace_s=self.drain_s) for s in sets))
        records.mark_stopped(self.environment, client=self.client)


def run_agent(environment: str, *, client: Client | None = None) -> None:
    """Run the agent of ``environment`` in this process until SIGTERM."""
    client = client or get_client()
    dep = records.get_deployment(environment, client=client)
    try:
        sock = bind(dep.host, dep.port)
    except DeployError as exc:
        records.report(environment, client=client, status="failed", message=str(exc))
        raise
    agent = Agent(environment, client=client)
    asyncio.run(agent.run(sock))
