"""End to end with real parts: build an image with podman, run it, push it to a real registry
(Debian's docker-registry on loopback), pull it back by digest and run that too.

The base image is made with debootstrap once per machine and reused. Containers, the registry
and the tags made here are removed even when the test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving_helpers import free_port, records, train_credit
from shipway.packaging import images
from shipway.packaging.build import build_image
from shipway.packaging.engines import Engine, EngineConfig, find_engine
from shipway.packaging.local import run_image
from shipway.packaging.push import push_image

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# What podman needs on the CI machines (see scripts/install-system-deps.sh); harmless elsewhere.
BUILD_ARGS = "--isolation chroot --network host"
RUN_ARGS = "--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:  # `make test` installs it; a bare pytest run must not pass silently
        pytest.fail(f"{tool} is missing; run `make test` or scripts/install-system-deps.sh.")
    return path


@contextlib.contextmanager
def local_registry(tmp: Path) -> Iterator[str]:
    binary = _require("docker-registry")
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    log = (tmp / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"registry did not start: {(tmp / 'registry.log').read_text()}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


@pytest.fixture
def podman(monkeypatch: pytest.MonkeyPatch) -> Engine:
    _require("podman")
    monkeypatch.setenv("SHIPWAY_ENGINE_BUILD_ARGS", BUILD_ARGS)
    monkeypatch.setenv("SHIPWAY_ENGINE_RUN_ARGS", RUN_ARGS)
    return find_engine(EngineConfig.load(name="podman"))


def test_build_run_push_pull_run(shipway_home: Path, tmp_path: Path, podman: Engine) -> None:
    version, model, features = train_credit(f"e2e{uuid.uuid4().hex[:6]}")
    expected = model.predict_proba(features.head(20))
    containers: list[str] = []
    tags: list[str] = []

    def predictions(url: str) -> np.ndarray:
        answer = httpx.post(f"{url}/predict", json=records(features.head(20)), timeout=60)
        assert answer.status_code == 200, answer.text
        return np.asarray(answer.json()["probabilities"])

    def start(image: str) -> str:
        name = f"shipway-e2e-{uuid.uuid4().hex[:8]}"
        containers.append(name)
        _, url, _ = run_image(podman, image, port=free_port(), name=name, timeout=180)
        return url

    try:
        built = build_image(version.uri, podman).image
        tags.append(built.tag)
        assert built.size_bytes > 0 and built.base_image == "localhost/python-base:3.11"
        labels = podman.inspect(built.tag)["Config"]["Labels"]
        assert labels["io.shipway.model.digest"] == f"sha256:{version.manifest_digest}"
        assert podman.inspect(built.tag)["Config"]["User"] == "10001:10001"

        assert np.allclose(predictions(start(built.tag)), expected)

        with local_registry(tmp_path / "registry") as registry:
            ref = push_image(podman, built.tag, f"{registry}/{version.name}")
            assert ref.startswith(f"{registry}/{version.name}@sha256:")
            recorded = images.record_push(version.uri, built.image_id, ref)
            assert images.list_images(version.uri) == [recorded]

            podman.remove_image(built.tag)  # so the next run must use what was pulled
            tags.append(ref)
            podman.pull(ref, tls_verify=False)
            assert podman.inspect(ref)["Id"].removeprefix("sha256:") == built.image_id
            assert np.allclose(predictions(start(ref)), expected)
    finally:
        for name in containers:
            podman.stop(name)
        for tag in tags:
            podman.remove_image(tag)


TRAIN_SCRIPT = '''"""A tiny tracked training job (the e2e test's project)."""
import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import shipway

X = pd.DataFrame(np.random.RandomState(0).normal(size=(200, 3)), columns=["a", "b", "c"])
y = (X["a"] > 0).astype(int)
with shipway.start_run("e2e-train", seed=0) as run:
    model = LogisticRegression().fit(X, y)
    run.log_metric("accuracy", float(model.score(X, y)))
    run.log_model(model, input_example=X.head(5))
shipway.register_model(run, sys.argv[1])
'''


def test_training_image_runs_the_recorded_command_as_a_tracked_run(
    shipway_home: Path, tmp_path: Path, podman: Engine
) -> None:
    """Train from a git project, build its training image, run it against a mounted
    SHIPWAY_HOME: a new finished run appears there, recording the same commit."""
    import os
    import sys

    from shipway.tracking.run import list_runs

    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN_SCRIPT)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "train"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    name = f"e2etrain{uuid.uuid4().hex[:6]}"
    subprocess.run([sys.executable, "train.py", name], cwd=repo, env=dict(os.environ),
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    (first,) = list_runs("e2e-train")
    assert first.environment["git"]["commit"] == commit

    tag = None
    try:
        built = build_image(f"models:/{name}/1", podman, kind="training").image
        tag = built.tag
        assert tag == f"{name}:train-v1-{commit[:7]}" and built.kind == "training"
        config = podman.inspect(tag)["Config"]
        assert config["Labels"]["io.shipway.image.kind"] == "training"
        assert config["User"] == "10001:10001"
        subprocess.run(["chmod", "-R", "a+rwX", str(shipway_home)], check=True)
        result = podman.run_task(
            tag, env={"SHIPWAY_HOME": str(shipway_home)},
            volumes={str(shipway_home): str(shipway_home)}, timeout=600,
        )  # fmt: skip
        assert result.code == 0, result.stdout + result.stderr
        runs = list_runs("e2e-train")
        assert len(runs) == 2
        new = next(r for r in runs if r.id != first.id)
        assert new.status == "finished" and new.metrics["accuracy"] > 0.9
        assert new.environment["git"]["commit"] == commit
        assert new.environment["git"]["repository"] == str(repo)
        assert new.environment["runtime"]["cwd"] == "/project"
    finally:
        if tag:
            podman.remove_image(tag)
