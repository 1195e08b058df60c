"""Container images: Dockerfile and context generation, tags, labels, engines and their errors."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import shipway
from serving_helpers import train_credit
from shipway.errors import (
    BuildFailedError,
    DependencyError,
    EngineNotFoundError,
    InvalidInputError,
    PushFailedError,
)
from shipway.packaging import context as context_module
from shipway.packaging import dockerfile, labels, wheelhouse
from shipway.packaging.build import build_image
from shipway.packaging.context import prepare_context
from shipway.packaging.engines import Engine, EngineConfig, Result, find_engine
from shipway.packaging.images import list_images
from shipway.packaging.push import is_loopback, push_image
from shipway.tracking.capture import git_state

BASE = "example.org/python:3.11"


def version_info(name: str = "credit", version: int = 3) -> shipway.ModelVersionInfo:
    return shipway.ModelVersionInfo(
        name=name,
        version=version,
        run_id="r1",
        flavor="sklearn",
        manifest_digest="ab" * 32,
        signature=None,
        card={},
        archived=False,
        aliases=[],
        created_by="me",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


class FakeRunner:
    """Answers each argv with the first scripted result whose key is in the command line."""

    def __init__(self, script: dict[str, Result]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float | None = None, stdin: Any = None) -> Result:  # noqa: E501
        self.calls.append(list(argv))
        line = " ".join(argv)
        for key, result in self.script.items():
            if key in line:
                return result
        return Result(0, "", "")


# --- Dockerfile, labels, tags -------------------------------------------------------------


def test_dockerfile_is_deterministic_and_has_what_production_needs() -> None:
    prov = labels.Provenance("0123456789abcdef", False, "https://example.org/credit.git")
    spec = dockerfile.ImageSpec(BASE, labels.image_labels(version_info(), prov, "0.1.0"))
    text = dockerfile.render(spec)
    assert text == dockerfile.render(
        dockerfile.ImageSpec(BASE, dict(reversed(list(spec.labels.items()))))
    )
    assert text.count(f"FROM {BASE}") == 2  # multi-stage
    assert "--no-index --no-deps --require-hashes" in text
    for line in ("USER 10001:10001", "EXPOSE 8080", "CMD []"):
        assert line in text.splitlines()
    assert "/v2/health/ready" in text.split("HEALTHCHECK", 1)[1].splitlines()[0]
    assert 'ENTRYPOINT ["shipway", "serve", "bundle:/model", "--host", "0.0.0.0"' in text
    # dependencies before the model, the model before the labels
    assert text.index("COPY --from=builder") < text.index("COPY model/") < text.index("LABEL")
    assert 'org.opencontainers.image.revision="0123456789abcdef"' in text
    assert 'org.opencontainers.image.created="2026-01-02T03:04:05+00:00"' in text
    assert f'io.shipway.model.digest="sha256:{"ab" * 32}"' in text
    assert "EXPOSE 9000" in dockerfile.render(dockerfile.ImageSpec(BASE, port=9000))


def test_training_dockerfile_runs_the_project_command_from_the_source() -> None:
    prov = labels.Provenance("0123456789abcdef", False, "/src/credit")
    spec = dockerfile.ImageSpec(
        BASE,
        labels.image_labels(version_info(), prov, "0.1.0", "training"),
        kind="training",
        train_command=("python", "train.py", "--seed", "7"),
        workdir="examples/credit",
        source_commit=prov.commit,
        source_repository=prov.source,
    )
    text = dockerfile.render(spec)
    assert text == dockerfile.render(
        dataclasses.replace(spec, labels=dict(reversed(list(spec.labels.items()))))
    )
    lines = text.splitlines()
    assert text.count(f"FROM {BASE}") == 2 and "--require-hashes" in text
    for line in ("USER 10001:10001", "WORKDIR /project/examples/credit", "CMD []",
                 'ENTRYPOINT ["python", "train.py", "--seed", "7"]',
                 "COPY --chown=10001:10001 project/ /project/"):  # fmt: skip
        assert line in lines
    assert "HEALTHCHECK" not in text and "EXPOSE" not in text and "COPY model/" not in text
    assert 'SHIPWAY_GIT_COMMIT="0123456789abcdef"' in text
    assert 'io.shipway.image.kind="training"' in text
    assert 'org.opencontainers.image.revision="0123456789abcdef"' in text
    assert text.index("COPY --from=builder") < text.index("COPY --chown") < text.index("LABEL")
    assert labels.default_tag(version_info(), prov, "training") == "credit:train-v3-0123456"
    with pytest.raises(InvalidInputError, match="needs a training command"):
        dockerfile.ImageSpec(BASE, kind="training")
    with pytest.raises(InvalidInputError, match="not a directory inside"):
        dockerfile.ImageSpec(BASE, kind="training", train_command=("x",), workdir="../up")


def test_training_images_and_bad_options_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="Unknown image kind"):
        dockerfile.ImageSpec(BASE, kind="gpu")
    with pytest.raises(InvalidInputError, match="out of range"):
        dockerfile.ImageSpec(BASE, port=0)


def test_tag_rules() -> None:
    info = version_info("Credit_Risk", 7)
    assert labels.default_tag(info, labels.Provenance("deadbeefcafe")) == "credit_risk:v7-deadbee"
    assert (
        labels.default_tag(info, labels.Provenance("deadbeefcafe", True))
        == "credit_risk:v7-deadbee-dirty"
    )
    assert labels.default_tag(info, labels.Provenance()) == "credit_risk:v7"
    assert labels.check_tag("127.0.0.1:5055/team/credit", "v7") == "127.0.0.1:5055/team/credit:v7"
    assert labels.check_tag("credit:prod") == "credit:prod"
    with pytest.raises(InvalidInputError, match="not a valid image repository"):
        labels.check_tag("Credit:v1")
    with pytest.raises(InvalidInputError, match="not a valid image tag"):
        labels.check_tag("credit:-bad")
    assert is_loopback("127.0.0.1:5055") and is_loopback("localhost:5000")
    assert not is_loopback("registry.example.org:5000")


def test_lock_is_sorted_and_hashed(tmp_path: Path) -> None:
    for name in ("zeta-1.0-py3-none-any.whl", "Alpha_Pkg-2.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(name.encode())
    entries = wheelhouse.lock_wheels(tmp_path)
    text = wheelhouse.render_lock(entries, wheelhouse.Target())
    lines = [x for x in text.splitlines() if not x.startswith("#")]
    assert lines[0].startswith("alpha-pkg==2.0 --hash=sha256:")
    assert lines[1].startswith("zeta==1.0 --hash=sha256:")
    assert text == wheelhouse.render_lock(wheelhouse.lock_wheels(tmp_path), wheelhouse.Target())


def test_model_pins_win_over_host_versions() -> None:
    reqs = wheelhouse.requirement_set(["numpy==1.26.4"], {"numpy": "2.0", "starlette": "0.1"})
    assert "numpy==1.26.4" in reqs and "starlette==0.1" in reqs


# --- The build context (resolves real wheels for the image's platform) ---------------------


@pytest.fixture
def credit(shipway_home: Path) -> shipway.ModelVersionInfo:
    version, _, _ = train_credit()
    return version


def test_context_is_deterministic(credit: shipway.ModelVersionInfo, tmp_path: Path) -> None:
    one = prepare_context(credit.uri, tmp_path / "one", base_image=BASE)
    two = prepare_context(credit.uri, tmp_path / "two", base_image=BASE)
    for name in ("Dockerfile", "requirements.lock", "sbom.cdx.json"):
        assert (one.directory / name).read_bytes() == (two.directory / name).read_bytes()
    lock = (one.directory / "requirements.lock").read_text()
    assert "\nshipway==" in lock and "\nscikit-learn==" in lock
    assert "sqlalchemy" not in lock  # serving a bundle needs no store
    wheels = {p.name for p in (one.directory / "wheels").iterdir()}
    assert len(wheels) == len([x for x in lock.splitlines() if "--hash=sha256:" in x])
    assert (one.directory / "model" / "model.json").is_file()
    with pytest.raises(shipway.ConflictError, match="not empty"):
        prepare_context(credit.uri, tmp_path / "one", base_image=BASE)


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def fake_wheelhouse(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """No resolution (the real one is covered above): one wheel; records the base requirements."""
    bases: list[tuple[str, ...]] = []

    def build(reqs: Any, dest: Path, cache: Path, target: Any = None, base: Any = ()) -> Any:
        bases.append(tuple(base))
        dest.mkdir(parents=True)
        (dest / "shipway-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
        return wheelhouse.lock_wheels(dest)

    monkeypatch.setattr(context_module.wheelhouse, "build_wheelhouse", build)
    return bases


def test_training_context_takes_the_committed_tree_and_the_recorded_command(
    shipway_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_wheelhouse: list[tuple[str, ...]],
) -> None:
    repo = tmp_path / "project"
    (repo / "jobs").mkdir(parents=True)
    (repo / "jobs" / "train.py").write_text("print('committed')\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    commit = _git(repo, "rev-parse", "HEAD")
    (repo / "jobs" / "train.py").write_text("print('uncommitted')\n")  # a dirty run
    monkeypatch.chdir(repo / "jobs")
    monkeypatch.setattr(sys, "argv", ["train.py", "--seed", "7"])
    version, _, _ = train_credit()

    one = prepare_context(version.uri, tmp_path / "one", base_image=BASE, kind="training")
    two = prepare_context(version.uri, tmp_path / "two", base_image=BASE, kind="training")
    for name in ("Dockerfile", "requirements.lock", "sbom.cdx.json", "project/jobs/train.py"):
        assert (one.directory / name).read_bytes() == (two.directory / name).read_bytes()
    assert (one.directory / "project/jobs/train.py").read_text() == "print('committed')\n"
    assert not (one.directory / "project" / ".git").exists()
    assert not (one.directory / "model").exists()
    assert one.tag == f"credit:train-v{version.version}-{commit[:7]}-dirty"
    assert one.labels["io.shipway.image.kind"] == "training"
    assert one.labels["org.opencontainers.image.revision"] == commit
    text = (one.directory / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "train.py", "--seed", "7"]' in text
    assert "WORKDIR /project/jobs" in text and f'SHIPWAY_GIT_COMMIT="{commit}"' in text
    base = {wheelhouse.canonical(r.split("[")[0].split(">")[0]) for r in fake_wheelhouse[0]}
    assert {"sqlalchemy", "alembic", "psycopg", "scikit-learn"} <= base

    given = prepare_context(version.uri, tmp_path / "given", base_image=BASE, kind="training",
                            train_command="python jobs/train.py --fast")  # fmt: skip
    text = (given.directory / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "jobs/train.py", "--fast"]' in text
    assert "WORKDIR /project\n" in text
    with pytest.raises(InvalidInputError, match="only to --kind training"):
        prepare_context(version.uri, tmp_path / "x", base_image=BASE, train_command="python t.py")


def test_training_image_is_refused_without_a_recorded_repository_or_script(
    shipway_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_wheelhouse: list[tuple[str, ...]],
) -> None:
    plain = tmp_path / "no-git"
    plain.mkdir()
    monkeypatch.chdir(plain)
    monkeypatch.delenv("SHIPWAY_GIT_COMMIT", raising=False)
    version, _, _ = train_credit()
    with pytest.raises(InvalidInputError, match="recorded no git repository") as err:
        prepare_context(version.uri, tmp_path / "ctx", base_image=BASE, kind="training")
    assert "commit the code first" in str(err.value)
    assert not (tmp_path / "ctx").exists()

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("x\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "-q"])  # not a script in the project
    version, _, _ = train_credit()
    with pytest.raises(InvalidInputError, match="--train-command"):
        prepare_context(version.uri, tmp_path / "ctx", base_image=BASE, kind="training")


def test_runs_in_a_training_image_record_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHIPWAY_GIT_COMMIT", raising=False)
    assert git_state(tmp_path)["commit"] is None
    monkeypatch.setenv("SHIPWAY_GIT_COMMIT", "ab" * 20)
    monkeypatch.setenv("SHIPWAY_GIT_REPOSITORY", "/src/credit")
    state = git_state(tmp_path)
    assert state["commit"] == "ab" * 20 and state["dirty"] is False
    assert state["repository"] == "/src/credit"
    runner = FakeRunner({})
    engine = Engine("podman", "podman", EngineConfig(run_args=("--runtime", "runc")), runner)
    engine.run_task("credit:train-v1", env={"SHIPWAY_HOME": "/h"}, volumes={"/x": "/h"})
    assert runner.calls[0] == ["podman", "run", "--rm", "--runtime", "runc", "-e",
                               "SHIPWAY_HOME=/h", "-v", "/x:/h", "credit:train-v1"]  # fmt: skip


def test_unresolvable_dependency_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match=r"numpy==1\.0"):
        wheelhouse.download(["numpy==1.0"], tmp_path, wheelhouse.Target(), {})


def test_failed_build_shows_the_step_and_records_nothing(
    credit: shipway.ModelVersionInfo,
) -> None:
    out = "STEP 1/9: FROM x AS builder\nSTEP 2/9: RUN python3 -m venv /opt/venv\nboom: no space\n"
    runner = FakeRunner({" build ": Result(1, out, "Error: building at STEP 2/9: exit status 1")})
    engine = Engine("podman", "/usr/bin/podman", EngineConfig(), runner)
    with pytest.raises(BuildFailedError) as err:
        build_image(credit.uri, engine, base_image=BASE)
    assert "STEP 2/9: RUN python3 -m venv" in str(err.value) and "boom: no space" in str(err.value)
    assert "STEP 1/9" not in str(err.value)
    assert list_images(credit.uri) == []


# --- Engines and registries ---------------------------------------------------------------


def test_no_engine_lists_what_was_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = FakeRunner({"version": Result(1, "", "Cannot connect to the Docker daemon")})
    found = {"docker": "/usr/bin/docker"}
    with pytest.raises(EngineNotFoundError) as err:
        find_engine(EngineConfig(), runner=runner, which=found.get)
    message = str(err.value)
    assert "docker (client at /usr/bin/docker, daemon not reachable" in message
    assert "podman (not on PATH)" in message and "buildah (not on PATH)" in message
    assert "apt-get install podman" in message
    with pytest.raises(EngineNotFoundError, match="buildah is not on PATH"):
        find_engine(EngineConfig("buildah"), runner=runner, which=found.get)
    engine = find_engine(EngineConfig(), runner=runner, which={"podman": "/bin/podman"}.get)
    assert engine.name == "podman"


def test_engine_flags_come_from_shipway_yaml_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shipway.yaml").write_text(
        "engine:\n  name: podman\n  build_args: [--isolation, chroot]\n  run_args: --runtime runc\n"
    )
    monkeypatch.setenv("SHIPWAY_ENGINE_BUILD_ARGS", "--network host")
    monkeypatch.setenv("SHIPWAY_ENGINE_RUN_ARGS", "--ulimit nofile=1024:1024")
    config = EngineConfig.load(tmp_path)
    assert config.name == "podman"
    assert config.build_args == ("--isolation", "chroot", "--network", "host")
    assert config.run_args == ("--runtime", "runc", "--ulimit", "nofile=1024:1024")
    inspect = Result(0, '[{"Id": "sha256:abc", "Size": 1}]', "")
    runner = FakeRunner({"inspect": inspect, " run ": Result(0, "c1\n", "")})
    engine = Engine("podman", "podman", config, runner)
    assert engine.build(tmp_path, "credit:v1") == "abc"
    assert runner.calls[0][:8] == ["podman", "build", "--format", "docker", "--isolation",
                                   "chroot", "--network", "host"]  # fmt: skip
    assert engine.run("credit:v1", port=9999) == "c1"
    assert runner.calls[-1][3:7] == ["--runtime", "runc", "--ulimit", "nofile=1024:1024"]


def test_an_engines_own_section_applies_only_to_that_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shipway.yaml").write_text(
        "engine:\n  run_args: --init\n"
        "  podman:\n    build_args: --isolation chroot\n    run_args: [--runtime, runc]\n"
    )
    monkeypatch.delenv("SHIPWAY_ENGINE_BUILD_ARGS", raising=False)
    monkeypatch.setenv("SHIPWAY_ENGINE_RUN_ARGS", "--ulimit nproc=1000:1000")
    config = EngineConfig.load(tmp_path)
    assert config.name is None
    runner = FakeRunner({"version": Result(0, "28.0\n", "")})
    paths = {"docker": "/bin/docker", "podman": "/bin/podman"}
    docker = find_engine(config, runner=runner, which=paths.get)
    assert docker.name == "docker" and docker.config.build_args == ()
    assert docker.config.run_args == ("--init", "--ulimit", "nproc=1000:1000")
    podman = find_engine(EngineConfig.load(tmp_path, "podman"), runner=runner, which=paths.get)
    assert podman.config.build_args == ("--isolation", "chroot")
    assert podman.config.run_args == ("--init", "--ulimit", "nproc=1000:1000", "--runtime", "runc")
    (tmp_path / "shipway.yaml").write_text("engine:\n  podman: [--isolation]\n")
    with pytest.raises(InvalidInputError, match=r"engine\.podman"):
        EngineConfig.load(tmp_path)


def test_unreachable_registry_is_a_clear_error_and_nothing_is_pushed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = FakeRunner({})
    engine = Engine("podman", "podman", EngineConfig(), runner)
    with pytest.raises(PushFailedError, match=rf"127\.0\.0\.1:{port} is unreachable"):
        push_image(engine, "credit:v1", f"127.0.0.1:{port}/credit")
    assert runner.calls == []  # the engine was never asked to push
    with pytest.raises(PushFailedError, match="names no registry host"):
        push_image(engine, "credit:v1", "credit")
