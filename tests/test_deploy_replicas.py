"""Replicas and their supervision: real `shipway serve` processes, real HTTP probes.

The store (a credit model, a model whose load raises, a slow model) is made once per module;
replicas inherit $SHIPWAY_HOME from the environment, as the agent's do.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

import shipway
from serving_helpers import metric_total, records, register_slow, serve_env, train_credit
from shipway.deploy.replicas import (
    Replica,
    ReplicaSet,
    ReplicaSpec,
    container_command,
    serve_command,
)
from shipway.errors import DeployError, InvalidInputError
from shipway.packaging.engines import Engine, EngineConfig

BROKEN_MODEL = '''
import shipway


class BrokenModel(shipway.PythonModel):
    """Saves fine; cannot load again (a truncated weights file, say)."""

    def load_context(self, artifacts):
        raise RuntimeError("weights.bin is truncated: expected 4096 bytes, read 12")

    def predict(self, data):
        return data["x"].to_numpy() * 2
'''


@dataclass(frozen=True)
class Store:
    home: Path
    credit: str  # URIs
    broken: str
    slow: str
    expected: np.ndarray  # credit's probabilities for `rows`
    rows: list[dict[str, Any]]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    home = tmp_path_factory.mktemp("replicas") / "home"
    home.mkdir()
    code = tmp_path_factory.mktemp("replicas-code")
    module_name = f"broken_model_{uuid.uuid4().hex[:8]}"
    (code / f"{module_name}.py").write_text(BROKEN_MODEL)
    spec = importlib.util.spec_from_file_location(module_name, code / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPWAY_HOME", str(home))
        mp.delenv("SHIPWAY_DATABASE_URL", raising=False)
        mp.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
        credit, model, frame = train_credit("credit")
        broken = shipway.register_model(
            module.BrokenModel(), "broken", input_example=pd.DataFrame({"x": [1.0, 2.0]})
        )
        slow = register_slow("slow", predict_delay=2.0)
    rows = frame.head(5)
    return Store(home, credit.uri, broken.uri, slow.uri, model.predict_proba(rows), records(rows))


@pytest.fixture
def home(store: Store, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's store as $SHIPWAY_HOME, which the replicas inherit."""
    for key, value in serve_env(store.home).items():
        monkeypatch.setenv(key, value)
    for key in ("SHIPWAY_DATABASE_URL", "SHIPWAY_ARTIFACT_URL", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(key, raising=False)
    return store.home


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until(condition: Any, rs: ReplicaSet, timeout: float = 60) -> None:
    """Run health rounds until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, [(r.id, r.state, r.last_error) for r in rs.replicas]
        await rs.supervise_once()
        await asyncio.sleep(rs.health_interval_s)


# -- command lines and specs (no processes) ----------------------------------------------------


def test_serve_command_runs_this_python_on_loopback() -> None:
    spec = ReplicaSpec("models:/credit/4", serve_args=["--max-batch-size", "8"])
    assert serve_command(spec, 8123) == [
        sys.executable, "-m", "shipway.cli", "serve", "models:/credit/4",
        "--host", "127.0.0.1", "--port", "8123", "--max-batch-size", "8",
    ]  # fmt: skip


def test_container_command_uses_the_machines_run_flags_and_passes_env_by_name() -> None:
    config = EngineConfig(run_args=("--ulimit", "nofile=1024:1024")).for_engine("podman")
    engine = Engine("podman", "/usr/bin/podman", config)
    spec = ReplicaSpec(
        "models:/credit/4",
        runtime="container",
        image="localhost/credit:v4-abc",
        env={"TOKEN": "s3cret", "A": "1"},
        serve_args=("--no-batching",),
    )
    argv = container_command(spec, engine, name="shipway-r0", port=8123, container_port=8080)
    assert argv == [
        "/usr/bin/podman", "run", "--rm", "--sig-proxy=true", "--no-healthcheck",
        "--name", "shipway-r0",
        "--ulimit", "nofile=1024:1024", "-p", "127.0.0.1:8123:8080",
        "-e", "A", "-e", "TOKEN", "localhost/credit:v4-abc", "--no-batching",
    ]  # fmt: skip
    assert "s3cret" not in " ".join(argv)
    with pytest.raises(DeployError, match="buildah builds images but does not run them"):
        container_command(spec, Engine("buildah", "/usr/bin/buildah"), name="x", port=1)


def test_specs_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="names an alias"):
        ReplicaSpec("models:/credit@production")
    with pytest.raises(InvalidInputError, match="shipway build models:/credit/4"):
        ReplicaSpec("models:/credit/4", runtime="container")
    with pytest.raises(InvalidInputError, match="at least one replica"):
        ReplicaSet(ReplicaSpec("models:/credit/4"), 0)


def test_restarts_back_off_exponentially_up_to_30_s(tmp_path: Path) -> None:
    replica = Replica(ReplicaSpec("models:/credit/4"), "r0", tmp_path)
    delays = []
    for _ in range(8):
        replica._crashed("it exited with code 1", never_ready=False)
        assert replica._restart_at is not None
        delays.append(round(replica._restart_at - time.monotonic()))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert replica.state == "starting" and replica.last_error == "it exited with code 1."


# -- real replicas -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_replicas_serve_and_a_killed_one_is_restarted(
    home: Path, store: Store, tmp_path: Path
) -> None:
    rs = ReplicaSet(ReplicaSpec(store.credit), 2, health_interval_s=0.2, logs=tmp_path)

    async def main() -> None:
        started = time.perf_counter()
        await rs.start()
        try:
            await rs.wait_ready(90)
            print(f"2 replicas ready in {time.perf_counter() - started:.1f} s")
            urls = rs.ready_urls()
            assert len(set(urls)) == 2
            async with httpx.AsyncClient(timeout=30) as client:
                for url in urls:
                    answer = await client.post(f"{url}/predict", json=store.rows)
                    assert answer.status_code == 200, answer.text
                    assert np.allclose(answer.json()["probabilities"], store.expected)

            victim, other = rs.replicas
            pid = victim.pid
            assert pid is not None
            victim_url = victim.url
            psutil.Process(pid).send_signal(signal.SIGKILL)
            await until(lambda: victim.last_error is not None, rs)
            assert victim.state == "starting" and rs.ready_urls() == [other.url]
            assert victim.last_error is not None and "killed by SIGKILL" in victim.last_error

            started = time.perf_counter()
            await until(lambda: victim.state == "ready", rs)
            print(f"restarted and ready in {time.perf_counter() - started:.1f} s")
            assert victim.restarts == 1 and other.restarts == 0
            assert victim.pid != pid and victim.url == victim_url
            assert sorted(rs.ready_urls()) == sorted(urls)
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.post(f"{victim.url}/predict", json=store.rows)
                assert answer.status_code == 200
        finally:
            await rs.stop(grace_s=10)
        assert [r.state for r in rs.replicas] == ["stopped", "stopped"]
        assert all(r.pid is not None and gone(r.pid) for r in rs.replicas)
        await rs.stop(grace_s=10)  # idempotent

    asyncio.run(main())


@pytest.mark.slow
def test_a_hung_replica_is_taken_out_then_killed_and_restarted(
    home: Path, store: Store, tmp_path: Path
) -> None:
    rs = ReplicaSet(
        ReplicaSpec(store.credit),
        1,
        health_interval_s=0.2,
        unready_after=3,
        probe_timeout_s=0.5,
        logs=tmp_path,
    )

    async def main() -> None:
        await rs.start()
        try:
            await rs.wait_ready(90)
            (replica,) = rs.replicas
            pid = replica.pid
            assert pid is not None
            psutil.Process(pid).send_signal(signal.SIGSTOP)
            await rs.supervise_once()
            assert replica.state == "unready" and rs.ready_urls() == []
            assert replica.restarts == 0 and not gone(pid)  # one failed check is not enough
            await until(lambda: replica.pid != pid, rs)
            assert gone(pid)
            assert replica.last_error is not None
            assert "failed 3 liveness checks in a row" in replica.last_error
            await until(lambda: replica.state == "ready", rs)
            assert replica.restarts == 1 and rs.ready_urls() == [replica.url]
        finally:
            await rs.stop(grace_s=10)

    asyncio.run(main())


@pytest.mark.slow
def test_a_model_that_fails_to_load_or_does_not_exist_is_named(
    home: Path, store: Store, tmp_path: Path
) -> None:
    broken = ReplicaSet(ReplicaSpec(store.broken), 2, health_interval_s=0.2, logs=tmp_path)
    missing = ReplicaSet(ReplicaSpec("models:/credit/99"), 1, logs=tmp_path)

    async def expect_error(rs: ReplicaSet) -> str:
        await rs.start()
        try:
            with pytest.raises(DeployError) as caught:
                await rs.wait_ready(90)  # start_timeout_s is 120: it fails long before
            return str(caught.value)
        finally:
            await rs.stop(grace_s=5)

    async def main() -> tuple[str, str]:
        started = time.perf_counter()
        got = await asyncio.gather(expect_error(broken), expect_error(missing))
        print(f"both refused in {time.perf_counter() - started:.1f} s")
        return got[0], got[1]

    broken_error, missing_error = asyncio.run(main())
    assert broken_error.startswith(f"{store.broken} could not start")
    assert "its model failed to load" in broken_error
    assert "weights.bin is truncated: expected 4096 bytes, read 12" in broken_error
    assert str(tmp_path) in broken_error  # where the logs are
    assert all(r.state == "stopped" for r in broken.replicas)
    # wait_ready gives up at the first failed replica; the other may not have failed yet
    assert any(r.last_error and "weights.bin" in r.last_error for r in broken.replicas)

    assert missing_error.startswith("models:/credit/99 could not start")
    assert "it exited with code" in missing_error
    assert "not found" in missing_error and "99" in missing_error, missing_error


@pytest.mark.slow
def test_stop_lets_the_request_in_flight_finish(home: Path, store: Store, tmp_path: Path) -> None:
    rs = ReplicaSet(ReplicaSpec(store.slow), 1, health_interval_s=0.2, logs=tmp_path)

    async def main() -> None:
        await rs.start()
        try:
            await rs.wait_ready(90)
            (replica,) = rs.replicas
            async with httpx.AsyncClient(timeout=30) as client:
                request = asyncio.create_task(
                    client.post(f"{replica.url}/predict", json=[{"x": 1.5}])
                )
                deadline = time.monotonic() + 20
                while True:  # the request has reached the model
                    body = (await client.get(f"{replica.url}/metrics")).text
                    if metric_total(body, "shipway_requests_in_flight") >= 1:
                        break
                    assert time.monotonic() < deadline and not request.done()
                    await asyncio.sleep(0.05)
                pid = replica.pid
                assert pid is not None
                started = time.perf_counter()
                await rs.stop(grace_s=20)
                took = time.perf_counter() - started
                answer = await request
            assert answer.status_code == 200 and answer.json()["predictions"] == [3.0]
            assert 0.5 < took < 15, took  # waited for the 2 s predict, not for the grace
            assert replica.state == "stopped" and gone(pid)
            assert "Finished server process" in replica.log_tail()  # a clean exit, not a kill
        finally:
            await rs.stop(grace_s=5)

    asyncio.run(main())


@pytest.mark.slow
def test_a_server_that_loses_its_port_moves_to_another(
    home: Path, store: Store, tmp_path: Path
) -> None:
    replica = Replica(ReplicaSpec(store.credit), "port-race", tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        lost = replica.port = taken.getsockname()[1]  # as if taken after free_port()

        async def main() -> None:
            async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
                deadline = time.monotonic() + 90
                try:
                    replica.start()
                    while not await replica.check(client):
                        assert time.monotonic() < deadline, replica.log_tail()
                        await asyncio.sleep(0.2)
                finally:
                    await asyncio.to_thread(replica.stop, 10)

        asyncio.run(main())
    assert replica.port != lost
    log = replica.log_path.read_text()
    assert f"Port {lost} on 127.0.0.1 is already in use" in log  # said before loading
    assert log.count("=== shipway replica port-race: starting") == 2
    assert replica.restarts == 0 and replica.last_error is None


PARENT = """
import asyncio, sys
from pathlib import Path
from shipway.deploy.replicas import ReplicaSet, ReplicaSpec

async def main():
    rs = ReplicaSet(ReplicaSpec(sys.argv[1]), 1, logs=Path(sys.argv[2]))
    await rs.start()
    await rs.wait_ready(90)
    print(rs.replicas[0].pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.slow
def test_replicas_die_with_their_parent(home: Path, store: Store, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT))
    with (tmp_path / "parent.err").open("wb") as err:
        parent = subprocess.Popen(
            [sys.executable, str(script), store.credit, str(tmp_path / "logs")],
            env=serve_env(home),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    replica = None
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # the replica's pid, once it is ready
        assert line.strip().isdigit(), (tmp_path / "parent.err").read_text()
        replica = int(line)
        assert not gone(replica)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 20
        while not gone(replica):
            assert time.monotonic() < deadline, "the replica outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
        if replica is not None and not gone(replica):  # the test failed: no orphan left
            psutil.Process(replica).kill()


# -- the container runtime ------------------------------------------------------------------------

# What podman needs on the CI machines (see tests/test_packaging_e2e.py); harmless elsewhere.
BUILD_ARGS = "--isolation chroot --network host"
RUN_ARGS = "--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_container_replicas_serve_restart_and_leave_nothing_behind(
    home: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipway.packaging.build import build_image
    from shipway.packaging.engines import find_engine

    if shutil.which("podman") is None:  # `make test` installs it: a bare run must not pass
        pytest.fail("podman is missing; run `make test` or scripts/install-system-deps.sh.")
    monkeypatch.setenv("SHIPWAY_ENGINE_BUILD_ARGS", BUILD_ARGS)
    monkeypatch.setenv("SHIPWAY_ENGINE_RUN_ARGS", RUN_ARGS)
    podman = find_engine(EngineConfig.load(name="podman"))
    started = time.perf_counter()
    tag = build_image(store.credit, podman).image.tag
    print(f"image built in {time.perf_counter() - started:.0f} s")
    spec = ReplicaSpec(store.credit, runtime="container", image=tag)
    rs = ReplicaSet(spec, 1, health_interval_s=0.2, logs=tmp_path, engine=podman)

    def containers() -> str:
        names = subprocess.run(
            [podman.binary, "ps", "-a", "--format", "{{.Names}}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return " ".join(n for n in names.split() if n == rs.replicas[0].container)

    async def main() -> None:
        await rs.start()
        try:
            started = time.perf_counter()
            await rs.wait_ready(180)
            print(f"container ready in {time.perf_counter() - started:.1f} s")
            (replica,) = rs.replicas
            async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
                answer = await client.post(f"{replica.url}/predict", json=store.rows)
                assert answer.status_code == 200, answer.text
                assert np.allclose(answer.json()["probabilities"], store.expected)
            pid = replica.pid
            assert pid is not None
            psutil.Process(pid).kill()  # the engine's client dies; the container would not
            await until(lambda: replica.state == "ready" and replica.pid != pid, rs, 180)
            assert replica.restarts == 1 and replica.last_error is not None
            assert "killed by SIGKILL" in replica.last_error
        finally:
            await rs.stop(grace_s=10)
        assert containers() == ""
        assert "Finished server process" in rs.replicas[0].log_tail()  # drained, not killed

    try:
        asyncio.run(main())
    finally:
        podman.remove_image(tag)
