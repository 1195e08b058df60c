"""`shipway build` through the team server: the image is built on this machine from the model's
blobs downloaded through the server (each digest checked), and its records go to the server.

The fast tests make build contexts and records (no engine); the slow one builds with podman,
pushes to Debian's docker-registry and reads the server's store. Each test uses model names of
its own, since the server's store is shared by the module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from server_helpers import Team, module_store, team_server
from serving_helpers import run_cli, train_credit
from shipway.artifacts import sha256_file
from shipway.blobs import get_blob, put_blob
from shipway.errors import (
    ConflictError,
    CorruptArtifactError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PackagingError,
)
from shipway.packaging import context as context_module
from shipway.packaging import images, wheelhouse
from shipway.packaging.context import prepare_context
from shipway.packaging.engines import Engine
from test_packaging_e2e import check_sbom_beside, local_registry, podman
from test_remote import _close_connections, remote_client

__all__ = ["_close_connections", "podman"]  # fixtures used here by name

API = "/api/v1"
BASE = "example.org/python:3.11"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("remote-build-home")
    (home / "cache").mkdir()
    with module_store(home) as client, team_server(client) as team:
        yield team


def _client_home(team: Team, tmp_path: Path) -> Path:
    """A home of the remote user's own, sharing only the server's wheel cache (so the wheels
    are resolved once); its store and artefacts must stay untouched."""
    home = tmp_path / "client-home"
    home.mkdir()
    (home / "cache").symlink_to(team.client.settings.home / "cache")
    return home


def _remote(
    team: Team, role: str, home: Path, transport: httpx.BaseTransport | None = None
) -> shipway.Client:
    """A client of the server as `role`, whose own home (its wheel cache) is `home`."""
    client = remote_client(team.url, team.tokens[role], transport)
    client.settings = client.settings.model_copy(update={"home": home})
    return client


def _assert_untouched(home: Path) -> None:
    assert not (home / "shipway.db").exists()
    assert not (home / "artifacts").exists()


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _register(team: Team, name: str, seed: int = 0) -> shipway.ModelVersionInfo:
    """A small model registered on the server's store, its own blobs (by `seed`)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = (x["a"] > 0).astype(int)
    dana = team.client.as_user("dana")
    with shipway.start_run("remote-build", client=dana) as run:
        run.log_model(LogisticRegression().fit(x, y), input_example=x.head(5))
    return shipway.register_model(run, name, client=dana)


# -- the build context -------------------------------------------------------------------


def test_the_context_made_through_the_server_is_the_one_made_locally(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWAY_HOME", str(team.client.settings.home))
    version, _, _ = train_credit(f"ctx{uuid.uuid4().hex[:6]}")  # on the server's store
    home = _client_home(team, tmp_path)
    dana = _remote(team, "developer", home)

    local = prepare_context(version.uri, tmp_path / "local", base_image=BASE, client=team.client)
    remote = prepare_context(version.uri, tmp_path / "remote", base_image=BASE, client=dana)

    assert replace(remote, directory=local.directory) == local
    files = _tree(remote.directory)
    assert files == _tree(local.directory)  # Dockerfile, lock, SBOM, build.json, wheels, model
    assert {"Dockerfile", "requirements.lock", "sbom.cdx.json", "build.json"} <= set(files)
    blobs = {"".join(n.split("/")[-2:]) for n in files if n.startswith("model/blobs/")}
    manifest = json.loads(team.client.artifacts.get_bytes(version.manifest_digest))
    assert blobs == {version.manifest_digest, *manifest["files"].values()}
    assert json.loads(files["model/model.json"])["manifest_digest"] == version.manifest_digest
    _assert_untouched(home)


class _Tampering(httpx.HTTPTransport):
    """A server (or a proxy) that answers one blob with other bytes."""

    def __init__(self, digest: str) -> None:
        super().__init__()
        self.digest = digest

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "GET" and request.url.path == f"{API}/artifacts/{self.digest}":
            response.read()
            response.close()
            return httpx.Response(200, content=b"not the model", request=request)
        return response


def test_a_blob_that_does_not_match_its_digest_stops_the_context(
    team: Team, tmp_path: Path
) -> None:
    version = _register(team, f"tamper{uuid.uuid4().hex[:6]}", seed=1)
    manifest = json.loads(team.client.artifacts.get_bytes(version.manifest_digest))
    target = next(iter(manifest["files"].values()))
    home = _client_home(team, tmp_path)
    dana = _remote(team, "developer", home, _Tampering(target))

    with pytest.raises(CorruptArtifactError, match=target[:12]):
        prepare_context(version.uri, tmp_path / "ctx", base_image=BASE, client=dana)
    assert not (tmp_path / "ctx").exists()  # nothing half-made is left behind
    _assert_untouched(home)


@pytest.fixture
def fake_wheelhouse(monkeypatch: pytest.MonkeyPatch) -> None:
    """No resolution (the real one is covered above): one wheel."""

    def build(reqs: object, dest: Path, cache: Path, target: object = None, base: object = ()
              ) -> list[wheelhouse.Locked]:  # fmt: skip
        dest.mkdir(parents=True)
        (dest / "shipway-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
        return wheelhouse.lock_wheels(dest)

    monkeypatch.setattr(context_module.wheelhouse, "build_wheelhouse", build)


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_a_training_context_needs_the_runs_repository_on_this_machine(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_wheelhouse: None
) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text("print('committed')\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    commit = _git(repo, "rev-parse", "HEAD")
    monkeypatch.delenv("SHIPWAY_GIT_COMMIT", raising=False)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    home = _client_home(team, tmp_path)
    dana = _remote(team, "developer", home)
    version = _register_through(dana, f"train{uuid.uuid4().hex[:6]}")

    ctx = prepare_context(version.uri, tmp_path / "ctx", base_image=BASE, kind="training",
                          client=dana)  # fmt: skip
    assert (ctx.directory / "project" / "train.py").read_text() == "print('committed')\n"
    assert ctx.labels["org.opencontainers.image.revision"] == commit
    assert 'ENTRYPOINT ["python", "train.py"]' in (ctx.directory / "Dockerfile").read_text()

    repo.rename(tmp_path / "moved")  # as if the run had been trained on another machine
    with pytest.raises(PackagingError, match="not here") as err:
        prepare_context(version.uri, tmp_path / "ctx2", base_image=BASE, kind="training",
                        client=dana)  # fmt: skip
    assert str(repo) in str(err.value) and "--kind inference" in str(err.value)
    assert not (tmp_path / "ctx2").exists()
    _assert_untouched(home)


def _register_through(client: shipway.Client, name: str) -> shipway.ModelVersionInfo:
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    with shipway.start_run("remote-build", client=client) as run:
        run.log_model(LogisticRegression().fit(x, (x["a"] > 0).astype(int)))
    return shipway.register_model(run, name, client=client)


# -- the image records ---------------------------------------------------------------------


def _built(sbom_digest: str | None, tag: str) -> images.BuiltImage:
    return images.BuiltImage(
        tag=tag, image_id="ab" * 32, size_bytes=123, base_image=BASE, engine="podman",
        kind="inference", lock_digest="cd" * 32, sbom_digest=sbom_digest,
    )  # fmt: skip


def test_image_records_go_to_the_server(team: Team, tmp_path: Path) -> None:
    version = _register(team, f"rec{uuid.uuid4().hex[:6]}", seed=3)
    home = _client_home(team, tmp_path)
    dana, vic = _remote(team, "developer", home), _remote(team, "viewer", home)
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}\n')
    sbom_digest = sha256_file(sbom)
    tag = f"{version.name}:v1"

    with pytest.raises(ConflictError, match="not uploaded") as err:
        images.record_build(version.uri, _built(sbom_digest, tag), client=dana)
    assert "/api/v1/artifacts" in str(err.value)
    assert put_blob(dana, sbom) == sbom_digest
    with pytest.raises(ForbiddenError, match="vic \\(viewer\\) may not"):
        images.record_build(version.uri, _built(sbom_digest, tag), client=vic)
    assert images.list_images(version.uri, client=team.client) == []

    built = images.record_build(version.uri, _built(sbom_digest, tag), client=dana)
    assert (built.created_by, built.sbom_digest, built.pushed_ref) == ("dana", sbom_digest, None)
    assert images.list_images(version.uri, client=vic) == [built]
    assert images.list_images(version.uri, client=team.client) == [built]
    assert get_blob(vic, sbom_digest) == sbom.read_bytes()

    ref = f"127.0.0.1:5000/{version.name}@sha256:{'ef' * 32}"
    with pytest.raises(NotFoundError):
        images.record_push(version.uri, "00" * 32, ref, client=dana)
    with pytest.raises(ForbiddenError):
        images.record_push(version.uri, built.image_id, ref, client=vic)
    pushed = images.record_push(version.uri, built.image_id, ref, client=dana)
    assert pushed.pushed_ref == ref and pushed.pushed_at is not None
    artifact = f"sha256:{'12' * 32}"
    with_sbom = images.record_sbom_push(version.uri, built.image_id, artifact, client=dana)
    assert with_sbom.sbom_pushed_digest == artifact
    assert images.list_images(version.uri, client=team.client) == [with_sbom]
    assert images.list_images(version.uri, client=vic) == [with_sbom]

    subject = f"model:{version.name}/{version.version}"
    log = shipway.audit_log(limit=100, subject=subject, client=team.client)
    actions = [(e.action, e.actor) for e in log if e.action.startswith("image.")]
    assert actions == [("image.build", "dana"), ("image.push", "dana"),
                       ("image.sbom_push", "dana")]  # fmt: skip
    _assert_untouched(home)


def test_the_record_endpoints_check_their_bodies(team: Team) -> None:
    version = _register(team, f"body{uuid.uuid4().hex[:6]}", seed=4)
    path = f"{API}/models/{version.name}/versions/{version.version}/images"
    good = asdict(_built(None, f"{version.name}:v1"))
    with team.http("developer") as dana:
        extra = dana.post(path, json=good | {"pushed_ref": "x"})
        assert extra.status_code == 422 and "pushed_ref" in extra.json()["error"]
        assert dana.post(path, json=good | {"image_id": "../etc"}).status_code == 422
        assert dana.post(path, json=good | {"kind": "other"}).status_code == 422
        created = dana.post(path, json=good)
        assert created.status_code == 201, created.text
        push = f"{path}/{good['image_id']}/push"
        assert dana.post(push, json={"pushed_ref": "no-digest:v1"}).status_code == 422
        sbom = f"{path}/{good['image_id']}/sbom-push"
        not_pushed = dana.post(sbom, json={"sbom_digest": f"sha256:{'12' * 32}"})
        assert not_pushed.status_code == 404, not_pushed.text
        assert dana.get(path).json() == [created.json()]
        unknown = dana.get(f"{API}/models/{version.name}/versions/99/images")
        assert unknown.status_code == 404
    with team.http("viewer") as vic:
        assert vic.post(path, json=good).status_code == 403
    with team.http() as anon:
        spec = anon.get(f"{API}/openapi.json").json()
    images_path = f"{API}/models/{{name}}/versions/{{version}}/images"
    roles = {
        (method, p.removeprefix(images_path)): op["x-shipway-role"]
        for p, ops in spec["paths"].items()
        if p.startswith(images_path)
        for method, op in ops.items()
    }
    assert roles == {("get", ""): "viewer", ("post", ""): "developer",
                     ("post", "/{image_id}/push"): "developer",
                     ("post", "/{image_id}/sbom-push"): "developer"}  # fmt: skip


def test_an_alias_is_resolved_through_the_server_before_recording(
    team: Team, tmp_path: Path
) -> None:
    version = _register(team, f"alias{uuid.uuid4().hex[:6]}", seed=5)
    shipway.set_alias(version.uri, "staging", client=team.client.as_user("dana"))
    home = _client_home(team, tmp_path)
    dana = _remote(team, "developer", home)
    uri = f"models:/{version.name}@staging"
    built = images.record_build(uri, _built(None, f"{version.name}:v1"), client=dana)
    assert images.list_images(version.uri, client=team.client) == [built]
    with pytest.raises(InvalidInputError, match="positive whole number"):
        images.list_images(f"models:/{version.name}/x", client=dana)  # refused before a request


# -- end to end: podman, a real registry, the CLI ------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_build_and_push_through_the_server_with_the_cli(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, podman: Engine
) -> None:
    monkeypatch.setenv("SHIPWAY_HOME", str(team.client.settings.home))
    version, _, _ = train_credit(f"e2e{uuid.uuid4().hex[:6]}")  # on the server's store
    home = _client_home(team, tmp_path)
    env = {"SHIPWAY_TRACKING_URI": team.url, "SHIPWAY_TOKEN": team.tokens["developer"]}
    tags: list[str] = []
    try:
        with local_registry(tmp_path / "registry") as registry:
            repo = f"{registry}/{version.name}"
            done = run_cli(home, "build", version.uri, "--engine", "podman", "--push", repo,
                           timeout=1500, env=env)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            (image,) = images.list_images(version.uri, client=team.client)
            tags += [image.tag, *([image.pushed_ref] if image.pushed_ref else [])]
            assert f"Built {image.tag}" in done.stdout and "Pushed" in done.stdout
            assert (image.created_by, image.engine, image.kind) == ("dana", "podman", "inference")
            assert image.pushed_ref is not None and image.pushed_ref.startswith(f"{repo}@sha256:")
            assert image.sbom_digest is not None and image.sbom_pushed_digest is not None
            sbom = team.client.artifacts.get_bytes(image.sbom_digest)  # uploaded to the server
            assert json.loads(sbom)["bomFormat"] == "CycloneDX"
            digest = image.pushed_ref.split("@")[1]
            beside = check_sbom_beside(registry, version.name, digest, sbom)
            assert image.sbom_pushed_digest == beside

            inspected = podman.inspect(image.tag)  # built here, by this machine's engine
            assert inspected["Id"].removeprefix("sha256:") == image.image_id
            labels = inspected["Config"]["Labels"]
            assert labels["io.shipway.model.digest"] == f"sha256:{version.manifest_digest}"
            listed = run_cli(home, "models", "show", version.uri, "--json", env=env)
            assert listed.returncode == 0, listed.stderr
            shown = json.loads(listed.stdout)["images"]
            assert [i["pushed_ref"] for i in shown] == [image.pushed_ref]
        _assert_untouched(home)
    finally:
        for tag in tags:
            podman.remove_image(tag)
