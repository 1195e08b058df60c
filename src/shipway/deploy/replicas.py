"""Model-server replicas on this machine, and the supervisor that keeps N of them alive.

A :class:`Replica` is one ``shipway serve`` on a loopback port: a child process
(``python -m shipway.cli serve URI --host 127.0.0.1 --port P``) or a container of an image
built by ``shipway build`` (``podman run -p 127.0.0.1:P:8080 IMAGE``, attached, so that the
engine's client is the child in both cases and its output goes to the same log file). A
:class:`ReplicaSet` starts N of them and, one health round at a time
(:meth:`ReplicaSet.supervise_once`), restarts the dead and the hung and keeps the not-ready
out of :meth:`ReplicaSet.ready_urls`::

    starting ──ready──▶ ready ◀──▶ unready    (live but not ready, or a liveness check failed)
       │                  │           │ `unready_after` failed liveness checks in a row
       │                  └──exited───┴──▶ killed, started again after a backoff (1 s … 30 s)
       └── exited, its model failed to load, or not ready within start_timeout_s ──▶ failed
           (started again with the same backoff; `wait_ready` raises with the reason at once)
    stop(): stopping ──SIGTERM, in-flight requests finish, SIGKILL after the grace──▶ stopped

Children never outlive their parent: each runs in its own process group (a terminal's Ctrl-C
does not reach it, and a kill reaches its workers too) with ``PR_SET_PDEATHSIG`` set to
SIGTERM, so they drain and exit when the agent dies; podman forwards that signal to the
container. Linux ties that signal to the *thread* that started the child: call ``start`` and
``supervise_once`` from the thread that runs the event loop, never from a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from shipway.errors import DeployError, InvalidInputError, PackagingError

if TYPE_CHECKING:
    from shipway.packaging.engines import Engine

__all__ = ["Replica", "ReplicaSet", "ReplicaSpec", "State", "container_command", "serve_command"]

State = Literal["starting", "ready", "unready", "stopping", "stopped", "failed"]

BACKOFF_MAX_S = 30.0
BACKOFF_RESET_S = 60.0  # ready this long, and the next crash restarts the backoff at 1 s
PORT_RETRIES = 5  # another process took the port between our choice and the server's bind
LOG_TAIL_LINES = 15
MARKER = b"=== shipway replica "
PR_SET_PDEATHSIG = 1
# Inherited by the agent but wrong for a replica: another server's spec, a shared metrics dir.
NOT_INHERITED = ("SHIPWAY_SERVE_SPEC", "PROMETHEUS_MULTIPROC_DIR")


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica of a set runs."""

    uri: str  # models:/NAME/VERSION: a pinned version, so every restart serves the same one
    runtime: Literal["process", "container"] = "process"
    image: str | None = None  # the container runtime's image, built by `shipway build`
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the inherited one
    serve_args: Sequence[str] = ()  # extra `shipway serve` flags

    def __post_init__(self) -> None:
        object.__setattr__(self, "serve_args", tuple(self.serve_args))
        if self.runtime not in ("process", "container"):
            raise InvalidInputError(
                f"Unknown replica runtime '{self.runtime}'.", "Use process or container."
            )
        if self.runtime == "container" and not self.image:
            raise InvalidInputError(
                f"The container runtime needs an image of {self.uri}.",
                f"Build one with `shipway build {self.uri}`.",
            )
        if self.uri.startswith("models:/") and "@" in self.uri:
            raise InvalidInputError(
                f"{self.uri} names an alias, which can move while replicas restart.",
                "Give the version it points to: models:/NAME/VERSION.",
            )


def serve_command(spec: ReplicaSpec, port: int) -> list[str]:
    """The process runtime's command line."""
    return [sys.executable, "-m", "shipway.cli", "serve", spec.uri,
            "--host", "127.0.0.1", "--port", str(port), *spec.serve_args]  # fmt: skip


def container_command(
    spec: ReplicaSpec, engine: Engine, *, name: str, port: int, container_port: int = 8080
) -> list[str]:
    """The container runtime's command line: attached (the client is our child and its output
    our log), removed on exit, the machine's run flags from shipway.yaml, the server's port
    published on loopback only, and no engine health check (the supervisor probes, and
    podman's checks need systemd). Extra variables are passed by name (`-e KEY`): the engine reads
    their values from its own environment, so they never show in `ps`."""
    if engine.name == "buildah":
        raise DeployError(
            "buildah builds images but does not run them.", "Use podman or docker (--engine)."
        )
    argv = [engine.binary, "run", "--rm", "--sig-proxy=true", "--no-healthcheck", "--name", name]
    argv += [*engine.config.run_args, "-p", f"127.0.0.1:{port}:{container_port}"]
    for key in sorted(spec.env):
        argv += ["-e", key]
    return [*argv, str(spec.image), *spec.serve_args]


def free_port() -> int:
    """A loopback port nothing listens on now (the server binding it may still lose a race:
    the replica notices and picks another)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel send the child SIGTERM when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Replica:
    """One model server on 127.0.0.1:`port` (see the module docstring for its states)."""

    def __init__(
        self,
        spec: ReplicaSpec,
        id: str,
        logs: Path,
        *,
        unready_after: int = 3,
        start_timeout_s: float = 120.0,
        engine: Engine | None = None,
        container_port: int = 8080,
    ) -> None:
        if spec.runtime == "container" and engine is None:
            raise DeployError(f"Replica {id} runs a container but was given no engine.")
        self.spec = spec
        self.id = id
        self.port = free_port()
        self.state: State = "stopped"
        self.restarts = 0
        self.last_error: str | None = None  # why it last failed, with its log's tail
        self.reason: str | None = None  # the same without the tail
        self._tail = ""
        self.log_path = logs / f"{id}.log"
        self.unready_after = unready_after
        self.start_timeout_s = start_timeout_s
        self._engine = engine
        self._container_port = container_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._ready_since: float | None = None
        self._live_failures = 0
        self._crashes = 0  # in a row: the backoff's exponent
        self._failed_starts = 0  # in a row: starts that never got to ready
        self._restart_at: float | None = None
        self._port_retries = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id (for a container, the engine client's)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def container(self) -> str:
        return f"shipway-{self.id}"

    def start(self) -> None:
        """Launch the server (returns at once; `check` follows it to ready)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        if self.spec.runtime == "container":
            assert self._engine is not None
            argv = container_command(
                self.spec,
                self._engine,
                name=self.container,
                port=self.port,
                container_port=self._container_port,
            )
        else:
            argv = serve_command(self.spec, self.port)
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env["COLUMNS"] = "200"  # the CLI's messages on one line each, not wrapped at 80
        env.update(self.spec.env)
        env["PYTHONUNBUFFERED"] = "1"  # the log's tail is what `last_error` quotes
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.state, self._started, self._restart_at = "starting", time.monotonic(), None
        self._ready_since, self._live_failures = None, 0
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(MARKER + f"{self.id}: starting on port {self.port} at {stamp}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    preexec_fn=_die_with_parent(),
                )
            except OSError as exc:
                self._proc = None
                self._crashed(f"could not run {argv[0]}: {exc}", never_ready=True)

    async def check(self, client: httpx.AsyncClient) -> bool:
        """One liveness and readiness probe; updates `state`. True when ready.

        A dead, hung (`unready_after` failed liveness checks) or never-ready replica is killed
        here and its restart scheduled; `ReplicaSet.supervise_once` carries that out."""
        proc = self._proc
        if proc is None or self.state in ("stopping", "stopped") or self._restart_at is not None:
            return False
        code = proc.poll()
        if code is not None:
            await self._exited(code)
            return False
        live, body = await self._probe(client, "/v2/health/live")
        if self._proc is not proc or self.state in ("stopping", "stopped"):
            return False  # stopped or restarted meanwhile
        if not live and (code := proc.poll()) is not None:  # died: no liveness check to count
            await self._exited(code)
            return False
        if body.get("error"):  # the server is up, but its model failed to load: the error
            await self._down(f"its model failed to load: {body['error']}", tail="")  # says all
            return False
        if self.state == "starting":
            ready = live and (await self._probe(client, "/v2/health/ready"))[0]
            if ready and self._listens():
                self.state, self._ready_since = "ready", time.monotonic()
                self._failed_starts = self._port_retries = 0
                return True
            if time.monotonic() - self._started > self.start_timeout_s:
                await self._down(f"it was not ready within {self.start_timeout_s:g} s")
            return False
        if not live:
            self._live_failures += 1
            self.state = "unready"
            if self._live_failures >= self.unready_after:
                n = self._live_failures
                await self._down(f"it failed {n} liveness checks in a row (hung?)")
            return False
        self._live_failures = 0
        ready = (await self._probe(client, "/v2/health/ready"))[0]
        if self.state in ("ready", "unready"):
            self.state = "ready" if ready else "unready"
        return ready

    def stop(self, grace_s: float) -> None:
        """SIGTERM (the server stops accepting, lets in-flight requests finish, exits), then
        SIGKILL to the whole process group after `grace_s`. Idempotent; blocks up to grace_s."""
        if self.state == "stopped":
            return
        self.state, self._restart_at = "stopping", None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)  # a stopped (hung) process gets to see it
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        self._kill()
        self.state = "stopped"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines its server wrote since it was last started."""
        try:
            with open(self.log_path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 32768))
                data = fh.read()
        except OSError:
            return ""
        cut = data.rfind(MARKER)
        if cut >= 0:
            data = data[cut:].partition(b"\n")[2]
        return "\n".join(data.decode(errors="replace").strip().splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------

    async def _probe(self, client: httpx.AsyncClient, path: str) -> tuple[bool, dict[str, Any]]:
        try:
            response = await client.get(self.url + path)
        except httpx.HTTPError:
            return False, {}
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code == 200, body if isinstance(body, dict) else {}

    def _listens(self) -> bool:
        """Whether our child (or one of its workers) is what listens on our port: a server
        that lost the port to another one must not be taken for ready. Containers are behind
        the engine's port forwarder, which is not our child: trusted."""
        if self.spec.runtime != "process" or self._proc is None:
            return True
        import psutil

        try:
            parent = psutil.Process(self._proc.pid)
            for proc in (parent, *parent.children(recursive=True)):
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port:
                        return True
        except psutil.Error:
            return False
        return False

    async def _exited(self, code: int) -> None:
        tail = self.log_tail()
        # uvicorn's "address already in use", or `shipway serve`'s own check, "is already in use"
        lost_port = re.search(r"already in use", tail, re.IGNORECASE)
        if self.state == "starting" and lost_port and self._port_retries < PORT_RETRIES:
            self._port_retries += 1
            await asyncio.to_thread(self._kill)
            self.port = free_port()
            self.start()  # at once, and not counted as a restart
            return
        await self._down(f"it {_describe_exit(code)}", tail)

    async def _down(self, reason: str, tail: str | None = None) -> None:
        never_ready = self.state == "starting"
        await asyncio.to_thread(self._kill)
        if self.state not in ("stopping", "stopped"):
            self._crashed(reason, never_ready, self.log_tail() if tail is None else tail)

    def _crashed(self, reason: str, never_ready: bool, tail: str = "") -> None:
        """Record why, and schedule the restart after the backoff."""
        now = time.monotonic()
        self.reason, self._tail = reason, tail
        self.last_error = f"{reason}. Its log ends:\n{tail}" if tail else f"{reason}."
        if self._ready_since is not None and now - self._ready_since >= BACKOFF_RESET_S:
            self._crashes = 0
        self._restart_at = now + min(BACKOFF_MAX_S, 2.0**self._crashes)
        self._crashes += 1
        if never_ready:
            self._failed_starts += 1
        self.state = "failed" if never_ready else "starting"

    def _restart_if_due(self, now: float) -> None:
        if self._restart_at is not None and now >= self._restart_at:
            self.restarts += 1
            self.start()

    def _kill(self) -> None:
        """SIGKILL the process group (the server and any workers) and reap it; a container is
        removed too, since killing the engine's client leaves it running."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if self.spec.runtime == "container" and self._engine is not None:
            self._engine.stop(self.container)


def _prefix(uri: str) -> str:
    """A replica id prefix from the URI (credit-v4), unique per set (several sets of one
    version can share a log directory, across rolling updates and agent restarts)."""
    name = uri.removeprefix("models:/")
    parts = name.split("/")
    if len(parts) == 2:
        name = f"{parts[0]}-v{parts[1]}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "replica"
    return f"{name[:40]}-{secrets.token_hex(2)}"


class ReplicaSet:
    """N replicas of one spec, kept alive by calling `supervise_once` every health interval.

    `wait_ready` supervises by itself while it waits, so a set can be brought up before
    anything else looks after it. `logs` is the directory of the replicas' log files (default
    $SHIPWAY_HOME/deployments/logs); `engine` the container engine (default: found, with the
    flags of shipway.yaml)."""

    def __init__(
        self,
        spec: ReplicaSpec,
        replicas: int,
        *,
        health_interval_s: float = 1.0,
        unready_after: int = 3,
        start_timeout_s: float = 120,
        logs: Path | None = None,
        probe_timeout_s: float = 2.0,
        engine: Engine | None = None,
    ) -> None:
        if replicas < 1:
            raise InvalidInputError(f"A deployment needs at least one replica, not {replicas}.")
        self.spec = spec
        self.replicas: list[Replica] = []
        self.health_interval_s = health_interval_s
        self.unready_after = unready_after
        self.start_timeout_s = start_timeout_s
        self.probe_timeout_s = probe_timeout_s
        if logs is None:
            from shipway.config import Settings

            logs = Settings().home / "deployments" / "logs"
        self.logs = logs
        self._wanted = replicas
        self._engine = engine
        self._container_port = 8080
        self._prefix = _prefix(spec.uri)
        self._next = 0
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._started = self._stopped = False

    async def start(self) -> None:
        """Start every replica and return at once; raises DeployError if the container
        runtime has no engine or no such image."""
        if self._started:
            return
        if self.spec.runtime == "container":
            await asyncio.to_thread(self._prepare_container)
        self._started = True
        for _ in range(self._wanted):
            self._add().start()

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once every replica is ready. Raises DeployError naming the URI and the
        replicas' errors as soon as one fails to start (its model fails to load, it exits,
        it is not ready within start_timeout_s), or when `timeout_s` has passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.supervise_once()
            failed = [r for r in self.replicas if r._failed_starts]
            if failed:
                raise self._error(failed, "could not start")
            if all(r.state == "ready" for r in self.replicas):
                return
            if self._stopped:
                raise DeployError(f"The replicas of {self.spec.uri} were stopped.")
            if time.monotonic() >= deadline:
                late = [r for r in self.replicas if r.state != "ready"]
                raise self._error(late, f"was not ready within {timeout_s:g} s")
            await asyncio.sleep(min(self.health_interval_s, 0.2))

    async def supervise_once(self) -> None:
        """One health round: probe every replica at once, then start again those whose
        backoff has passed."""
        async with self._lock:
            if self._stopped:
                return
            client = self._http()
            await asyncio.gather(*(r.check(client) for r in self.replicas))
            now = time.monotonic()
            for replica in self.replicas:
                if not self._stopped:
                    replica._restart_if_due(now)

    def ready_urls(self) -> list[str]:
        return [r.url for r in self.replicas if r.state == "ready"]

    async def scale(self, replicas: int, *, grace_s: float = 30.0) -> None:
        """Add replicas (started at once; not ready yet) or stop the newest ones."""
        if replicas < 1:
            raise InvalidInputError(f"A deployment needs at least one replica, not {replicas}.")
        self._wanted = replicas
        surplus = self.replicas[replicas:]
        self.replicas = self.replicas[:replicas]
        while self._started and len(self.replicas) < replicas:
            self._add().start()
        for replica in surplus:
            replica.state = "stopping"
        await asyncio.gather(*(asyncio.to_thread(r.stop, grace_s) for r in surplus))

    async def stop(self, grace_s: float) -> None:
        """Stop every replica at once (see `Replica.stop`); idempotent."""
        self._stopped = True
        for replica in self.replicas:  # out of ready_urls before the threads even start
            if replica.state != "stopped":
                replica.state = "stopping"
        await asyncio.gather(*(asyncio.to_thread(r.stop, grace_s) for r in self.replicas))
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None

    # -- internals ---------------------------------------------------------------------------

    def _add(self) -> Replica:
        replica = Replica(
            self.spec,
            f"{self._prefix}-{self._next}",
            self.logs,
            unready_after=self.unready_after,
            start_timeout_s=self.start_timeout_s,
            engine=self._engine,
            container_port=self._container_port,
        )
        self._next += 1
        self.replicas.append(replica)
        return replica

    def _prepare_container(self) -> None:
        from shipway.packaging.engines import EngineConfig, find_engine

        image = str(self.spec.image)
        try:
            engine = self._engine or find_engine(EngineConfig.load())
            config = engine.inspect(image).get("Config") or {}
        except PackagingError as exc:
            raise DeployError(
                f"Cannot run {image} for {self.spec.uri}: {exc.message}",
                exc.hint or f"Build the image with `shipway build {self.spec.uri}`.",
            ) from exc
        ports = [int(p.split("/")[0]) for p in config.get("ExposedPorts") or {} if "/tcp" in p]
        self._engine, self._container_port = engine, ports[0] if ports else 8080

    def _http(self) -> httpx.AsyncClient:
        """One client per event loop; no keep-alive, so each probe is a fresh connection."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=self.probe_timeout_s,
                trust_env=False,  # a proxy from the environment has no business on loopback
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            self._client_loop = loop
        return self._client

    def _error(self, replicas: list[Replica], what: str) -> DeployError:
        """One message for all: each distinct reason once, then the first log tail (the
        replicas of one version mostly fail alike; their logs differ only in ports)."""

        def why(r: Replica) -> str:
            if r._failed_starts:
                return r.reason or "it failed"
            return f"it is still {r.state}" + (f" (it last failed: {r.reason})" if r.reason else "")

        reasons = list(dict.fromkeys(why(r) for r in replicas))
        if len(reasons) == 1:
            detail = reasons[0]
        else:
            detail = "; ".join(f"{r.id}: {why(r)}" for r in replicas)
        first = next((r for r in replicas if r._tail), None)
        if first is not None:
            detail += f". The log of {first.id} ends:\n{first._tail}"
        else:
            detail += "."
        count = f"{len(replicas)} of {len(self.replicas)} replicas"
        return DeployError(
            f"{self.spec.uri} {what} ({count}): {detail}",
            f"The replicas' logs are in {self.logs}.",
        )
