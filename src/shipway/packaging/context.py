"""The build context: a directory holding everything the image is made of, and nothing else.

    context/
      Dockerfile          generated (dockerfile.py), deterministic
      requirements.lock   name==version --hash=sha256:... for every wheel
      wheels/             the wheelhouse, resolved on the host for the image's platform
      model/              the model bundle (model.json + blobs/), every digest verified
      project/            training images only, instead of model/: the project's committed
                          tree at the run's commit (`git archive`), no .git
      sbom.cdx.json       CycloneDX SBOM of the image's Python environment
      build.json          what Shipway will tag and record: model, tag, base image, labels

A training context (`kind="training"`) needs the run's recorded git repository and commit: the
source is taken from the repository at that commit, so the image holds exactly the recorded
code (uncommitted changes of a dirty run are not in it, and the labels say the run was dirty).
Through a team server this still reads the repository on this machine: a run trained elsewhere
is refused, naming the path it needs.
Its command is the run's recorded `argv` (the script path made relative to the project, run
from the recorded working directory) unless `train_command` is given.

`shipway build --context-only DIR` stops here, so the context can be inspected, or built by
any other tool (`docker build DIR`).
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shipway import __version__
from shipway.client import Client, get_client
from shipway.errors import ConflictError, InvalidInputError, PackagingError
from shipway.packaging import dockerfile, labels, sbom, wheelhouse
from shipway.packaging.bundle import export_bundle
from shipway.records import ModelVersionInfo

LOCK = "requirements.lock"
SBOM = "sbom.cdx.json"


@dataclass(frozen=True)
class BuildContext:
    directory: Path
    uri: str
    tag: str
    base_image: str
    kind: str
    lock_digest: str
    labels: dict[str, str]

    @property
    def sbom_path(self) -> Path:
        return self.directory / SBOM


def _environment(info: ModelVersionInfo, client: Client) -> dict[str, Any]:
    if info.run_id is None:
        return {}
    from shipway.tracking.run import get_run

    return dict(get_run(info.run_id, client=client).environment)


@dataclass(frozen=True)
class TrainingSource:
    """Where a training image's code comes from, and how it is run."""

    repository: Path
    commit: str
    command: tuple[str, ...]
    workdir: str  # relative to the project root; "" for the root


def training_source(
    info: ModelVersionInfo, environment: dict[str, Any], train_command: str | None
) -> TrainingSource:
    """The run's repository, commit and training command; refuses what cannot be rebuilt."""
    git = environment.get("git") or {}
    repository, commit = git.get("repository"), git.get("commit")
    if not repository or not commit:
        why = "its run recorded no git repository" if info.run_id else "it has no run"
        raise InvalidInputError(
            f"{info.uri} cannot get a training image: {why}.",
            "Train from a git working tree (commit the code first), then register again.",
        )
    root = Path(repository)
    runtime = environment.get("runtime") or {}
    cwd = Path(str(runtime.get("cwd") or root))
    workdir = ""
    if root in cwd.parents:
        workdir = cwd.relative_to(root).as_posix()
    if train_command is not None:
        command = tuple(shlex.split(train_command))
        workdir = ""  # documented: a given command runs from the project root
        if not command:
            raise InvalidInputError("--train-command is empty.")
        return TrainingSource(root, commit, command, workdir)
    argv = [str(a) for a in runtime.get("argv") or []]
    script = Path(argv[0]) if argv else None
    if script is not None and not script.is_absolute():
        script = cwd / script
    if script is None or root not in script.parents or script.suffix != ".py":
        raise InvalidInputError(
            f"The run behind {info.uri} was not started by a Python script in {root} "
            f"(its command was {shlex.join(argv) or 'not recorded'}).",
            "Name the command with --train-command, e.g. --train-command 'python train.py' "
            "(it runs from the project root).",
        )
    base = root / workdir
    if base not in script.parents:  # a script outside the working directory: from the root
        workdir, base = "", root
    rel = script.relative_to(base).as_posix()
    return TrainingSource(root, commit, ("python", rel, *argv[1:]), workdir)


def archive_source(source: TrainingSource, dest: Path) -> None:
    """The committed tree at `source.commit`, extracted into `dest` (no .git)."""
    if not source.repository.is_dir():  # e.g. a run trained elsewhere, built through a server
        raise PackagingError(
            f"A training image needs the run's git repository, {source.repository}, on this "
            "machine, and it is not here.",
            f"Build it where that repository is (with commit {source.commit[:12]}), or clone "
            "it to that path; an inference image needs only the model (--kind inference).",
        )
    try:
        proc = subprocess.run(
            ["git", "-C", str(source.repository), "archive", "--format=tar", source.commit],
            capture_output=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PackagingError(f"Could not run git archive in {source.repository}: {exc}.") from None
    if proc.returncode != 0:
        raise PackagingError(
            f"Cannot take commit {source.commit[:12]} from {source.repository}: "
            + (proc.stderr.decode(errors="replace").strip() or f"git exit {proc.returncode}"),
            "Build on a machine holding the repository the run recorded, with that commit.",
        )
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _model_requirements(bundle_dir: Path) -> list[str]:
    data = json.loads((bundle_dir / "model.json").read_text())
    return [str(r) for r in data.get("requirements", [])]


def prepare_context(
    uri: str,
    directory: Path,
    *,
    base_image: str,
    tag: str | None = None,
    kind: str = "inference",
    port: int = 8080,
    train_command: str | None = None,
    target: wheelhouse.Target | None = None,
    client: Client | None = None,
) -> BuildContext:
    """Write the build context for the version `uri` names into `directory` (new or empty)."""
    from shipway.registry.registry import get_model_version

    client = client or get_client()
    if directory.exists() and any(directory.iterdir()):
        raise ConflictError(
            f"{directory} is not empty.", "Give --context-only a new or empty directory."
        )
    info = get_model_version(uri, client=client)
    environment = _environment(info, client)
    prov = labels.Provenance.from_environment(environment)
    source = None
    if kind == "training":
        source = training_source(info, environment, train_command)
    elif train_command is not None:
        raise InvalidInputError("--train-command applies only to --kind training.")
    version_tag = labels.default_tag(info, prov, kind)
    final_tag = (
        labels.check_tag(tag, labels.split_reference(version_tag)[1]) if tag else version_tag
    )
    spec = dockerfile.ImageSpec(
        base_image=base_image,
        labels=labels.image_labels(info, prov, __version__, kind),
        kind=kind,
        port=port,
        train_command=source.command if source else (),
        workdir=source.workdir if source else "",
        source_commit=source.commit if source else None,
        source_repository=prov.source if source else None,
    )
    text = dockerfile.render(spec)  # validates before the slow steps
    directory.mkdir(parents=True, exist_ok=True)
    try:
        export_bundle(info.uri, directory / "model", client=client)
        requirements = _model_requirements(directory / "model")
        base_reqs: tuple[str, ...] = wheelhouse.SERVING_REQUIREMENTS
        if source is not None:
            shutil.rmtree(directory / "model")  # the model was only read for its requirements
            archive_source(source, directory / "project")
            base_reqs = wheelhouse.training_requirements()
        target = target or wheelhouse.Target()
        entries = wheelhouse.build_wheelhouse(
            requirements,
            directory / "wheels",
            client.settings.home / "cache",
            target,
            base_reqs,
        )
        lock_text = wheelhouse.render_lock(entries, target)
        (directory / LOCK).write_text(lock_text)
        lock_digest = hashlib.sha256(lock_text.encode()).hexdigest()
        (directory / SBOM).write_text(
            sbom.render_sbom(
                entries,
                directory / "wheels",
                subject=final_tag.rsplit(":", 1)[0],
                subject_version=final_tag.rsplit(":", 1)[1],
                lock_digest=lock_digest,
                created=info.created_at,
            )
        )
        (directory / "Dockerfile").write_text(text)
        ctx = BuildContext(directory, info.uri, final_tag, base_image, kind, lock_digest,
                           dict(spec.labels))  # fmt: skip
        record = asdict(ctx) | {"directory": None}
        (directory / "build.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return ctx
