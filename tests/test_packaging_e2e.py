"""End to end with real parts: build an image with podman, run it, push it to a real registry
(Debian's docker-registry on loopback), pull it back by digest and run that too.

The base image is made with debootstrap once per machine and reused. Containers, the registry
and the tags made here are removed even when the test fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving_helpers import free_port, records, train_credit
from shipway.client import get_client
from shipway.errors import PushFailedError
from shipway.packaging import images
from shipway.packaging.build import build_image, push_built
from shipway.packaging.engines import Engine, EngineConfig, Result, find_engine
from shipway.packaging.local import run_image
from shipway.packaging.push import OCI_MANIFEST, push_sbom

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


def _blob(base: str, data: bytes) -> str:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    started = httpx.post(f"{base}/blobs/uploads/")
    assert started.status_code == 202, started.text
    url = httpx.URL(started.headers["Location"])
    url = url if url.is_absolute_url else httpx.URL(base).join(started.headers["Location"])
    done = httpx.put(url.copy_merge_params({"digest": digest}), content=data)
    assert done.status_code == 201, done.text
    return digest


def check_sbom_beside(registry: str, repo: str, image_digest: str, sbom: bytes) -> str:
    """The SBOM artifact tagged beside `image_digest`: its subject, its layer; its digest."""
    base = f"http://{registry}/v2/{repo}"
    tag = f"sha256-{image_digest.removeprefix('sha256:')}.sbom"
    got = httpx.get(f"{base}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200, got.text
    manifest = got.json()
    assert manifest["artifactType"] == "application/vnd.cyclonedx+json"
    assert manifest["subject"]["digest"] == image_digest
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.cyclonedx+json"
    blob = httpx.get(f"{base}/blobs/{layer['digest']}", follow_redirects=True)
    assert blob.status_code == 200 and blob.content == sbom
    return f"sha256:{hashlib.sha256(got.content).hexdigest()}"


def _tiny_image(registry: str, repo: str) -> str:
    """An OCI image manifest (empty config, one small layer) in the registry; its digest."""
    base = f"http://{registry}/v2/{repo}"
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"not really a tarball"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _blob(base, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _blob(base, layer), "size": len(layer)}],
    }).encode()  # fmt: skip
    put = httpx.put(f"{base}/manifests/v1", content=manifest,
                    headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert put.status_code == 201, put.text
    return f"sha256:{hashlib.sha256(manifest).hexdigest()}"


def test_sbom_is_pushed_beside_the_image_and_refusals_are_clear(tmp_path: Path) -> None:
    sbom = b'{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}\n'
    with local_registry(tmp_path / "registry") as registry:
        image = _tiny_image(registry, "credit")
        digest = push_sbom(f"{registry}/credit@{image}", sbom)
        assert check_sbom_beside(registry, "credit", image, sbom) == digest
        assert push_sbom(f"{registry}/credit@{image}", sbom) == digest  # again: the same
        missing = "sha256:" + "0" * 64
        with pytest.raises(PushFailedError, match=r"refused GET /v2/credit/manifests/.* 404"):
            push_sbom(f"{registry}/credit@{missing}", sbom)
    with pytest.raises(PushFailedError, match=rf"{registry} is unreachable"):
        push_sbom(f"{registry}/credit@{image}", sbom)


def test_the_model_is_pushed_beside_the_image_and_loads_from_what_the_registry_holds(
    shipway_home: Path, tmp_path: Path
) -> None:
    from shipway.artifacts import ArtifactStore
    from shipway.flavors import load_from_manifest
    from shipway.packaging.build import push_model_beside

    version, model, features = train_credit(f"om{uuid.uuid4().hex[:6]}")
    with local_registry(tmp_path / "registry") as registry:
        image = _tiny_image(registry, version.name)
        digest = push_model_beside(version.uri, f"{registry}/{version.name}@{image}")
        base = f"http://{registry}/v2/{version.name}"
        got = httpx.get(f"{base}/manifests/sha256-{image.removeprefix('sha256:')}.model",
                        headers={"Accept": OCI_MANIFEST})  # fmt: skip
        assert got.status_code == 200 and f"sha256:{hashlib.sha256(got.content).hexdigest()}" == (
            digest
        )
        artifact = got.json()
        assert artifact["artifactType"] == "application/vnd.shipway.model.v1"
        assert artifact["subject"]["digest"] == image
        first, *files = artifact["layers"]
        # The layers are Shipway's own blobs: the same digests as in the store.
        assert first["digest"] == f"sha256:{version.manifest_digest}"
        manifest = json.loads(get_client().artifacts.get_bytes(version.manifest_digest))
        assert {f["annotations"]["org.opencontainers.image.title"]: f["digest"] for f in files} == {
            name: f"sha256:{d}" for name, d in manifest["files"].items()
        }
        # Pulled back (as `oras pull` would) into an empty store, the model loads and predicts.
        pulled = ArtifactStore((tmp_path / "pulled").as_uri())
        for layer in artifact["layers"]:
            blob = httpx.get(f"{base}/blobs/{layer['digest']}", follow_redirects=True).content
            assert pulled.put_bytes(blob) == layer["digest"].removeprefix("sha256:")
        loaded = load_from_manifest(pulled, version.manifest_digest)
        np.testing.assert_allclose(loaded.predict_proba(features.head(20)),
                                   model.predict_proba(features.head(20)))  # fmt: skip


class _FakeDocker:
    """`docker push` that only reports a digest (the image is put in the registry by hand)."""

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __call__(self, argv: Sequence[str], *, timeout: float | None = None, stdin: Any = None
                 ) -> Result:  # fmt: skip
        return Result(0, f"v1: digest: {self.digest} size: 1" if "push" in argv else "", "")


def test_a_failed_sbom_push_leaves_the_image_recorded_as_pushed_without_an_sbom(
    shipway_home: Path, tmp_path: Path
) -> None:
    version, _, _ = train_credit(f"sb{uuid.uuid4().hex[:6]}")
    sbom = b'{"bomFormat": "CycloneDX"}\n'
    built = images.record_build(version.uri, images.BuiltImage(
        tag=f"{version.name}:v1", image_id="ab" * 32, size_bytes=1, base_image="b",
        engine="docker", kind="inference", lock_digest="cd" * 32,
        sbom_digest=get_client().artifacts.put_bytes(sbom),
    ))  # fmt: skip
    with local_registry(tmp_path / "registry") as registry:
        repo = f"{registry}/{version.name}"
        image = _tiny_image(registry, version.name)
        engine = Engine("docker", "docker", EngineConfig(), _FakeDocker(image))
        pushed = push_built(version.uri, engine, built, repo)
        assert pushed.pushed_ref == f"{repo}@{image}"
        beside = check_sbom_beside(registry, version.name, image, sbom)
        assert pushed.sbom_pushed_digest == beside

        missing = "sha256:" + "1" * 64  # "pushed", but the registry has no such manifest
        engine = Engine("docker", "docker", EngineConfig(), _FakeDocker(missing))
        with pytest.raises(PushFailedError, match="was pushed and recorded, but its SBOM was not"):
            push_built(version.uri, engine, built, repo)
    (row,) = images.list_images(version.uri)
    assert row.pushed_ref == f"{repo}@{missing}" and row.sbom_pushed_digest is None


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
            recorded = push_built(version.uri, podman, built, f"{registry}/{version.name}")
            ref = recorded.pushed_ref
            assert ref is not None and ref.startswith(f"{registry}/{version.name}@sha256:")
            assert images.list_images(version.uri) == [recorded]
            assert built.sbom_digest is not None
            sbom = get_client().artifacts.get_bytes(built.sbom_digest)
            image_digest = ref.split("@")[1]
            artifact = check_sbom_beside(registry, version.name, image_digest, sbom)
            assert recorded.sbom_pushed_digest == artifact

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
