"""The Dockerfile, generated from an `ImageSpec` and nothing else: same spec, same bytes.

Two stages. The builder makes a virtual environment from the wheelhouse (no index, hashes
required, no dependencies resolved at build time: the lock is complete), then strips what
serving never reads: test suites, Cython sources, C headers, pip itself. The final stage copies
only that environment, so it holds no wheelhouse, no pip cache and no build tools.

Layers go from the least to the most often changed: the environment (changes with the lock),
then the model bundle (changes with every version), then labels. A new model version on the
same dependencies reuses every layer but the model's.

Two kinds, one codebase. An inference image carries the model bundle and serves it. A training
image (`kind="training"`) carries instead the project's source at the run's commit in
`/project` and the full Shipway install (store included); its ENTRYPOINT is the project's
training command, run from the recorded working directory inside `/project`. The command
tracks its runs itself (it calls `shipway.start_run`), into whatever `SHIPWAY_HOME`,
`SHIPWAY_DATABASE_URL` and `SHIPWAY_ARTIFACT_URL` the container is given. The source has no
`.git` in the image, so the image sets `SHIPWAY_GIT_COMMIT` and `SHIPWAY_GIT_REPOSITORY`: runs
inside it record the commit the image was built from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shipway.errors import InvalidInputError

VENV = "/opt/venv"
MODEL_DIR = "/model"
PROJECT_DIR = "/project"
UID = 10001
KINDS = ("inference", "training")

# Removed from the environment after installing: nothing imports them at serve time.
_STRIP = (
    f"find {VENV} -type d -name tests -prune -exec rm -rf {{}} + \\\n"
    f"    && find {VENV} -type f \\( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \\\n"
    "       -o -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' \\) -delete \\\n"
    f"    && {VENV}/bin/python -m pip uninstall --yes --quiet pip \\\n"
    f"    && rm -f {VENV}/bin/activate* {VENV}/bin/pip*"
)


@dataclass(frozen=True)
class ImageSpec:
    base_image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: str = "inference"
    port: int = 8080
    # Training images only: the command (argv), its directory inside the project, and the
    # commit and repository the source was archived from.
    train_command: tuple[str, ...] = ()
    workdir: str = ""
    source_commit: str | None = None
    source_repository: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(
                f"Unknown image kind '{self.kind}'.", f"Use {' or '.join(KINDS)}."
            )
        if self.kind == "training" and not self.train_command:
            raise InvalidInputError(
                "A training image needs a training command.",
                "Give one with --train-command, e.g. --train-command 'python train.py'.",
            )
        if self.workdir.startswith("/") or ".." in self.workdir.split("/"):
            raise InvalidInputError(f"'{self.workdir}' is not a directory inside the project.")
        if not 1 <= self.port <= 65535:
            raise InvalidInputError(f"Port {self.port} is out of range (1-65535).")


def _quote(value: str) -> str:
    return json.dumps(value)


def _healthcheck(port: int) -> str:
    probe = (
        "import sys, urllib.request; "
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}/v2/health/ready', "
        "timeout=2).status == 200 else 1)"
    )
    return (
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 "
        f'CMD ["python", "-c", {_quote(probe)}]'
    )


def entrypoint(spec: ImageSpec) -> list[str]:
    if spec.kind == "training":
        return list(spec.train_command)
    return [
        "shipway",
        "serve",
        f"bundle:{MODEL_DIR}",
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.port),
    ]


def render(spec: ImageSpec) -> str:
    """The Dockerfile for `spec`. Labels are sorted; nothing depends on time or the machine."""
    if not re.fullmatch(r"[^\s]+", spec.base_image):
        raise InvalidInputError(f"'{spec.base_image}' is not an image reference.")
    labels = " \\\n      ".join(
        f"{key}={_quote(value)}" for key, value in sorted(spec.labels.items())
    )
    if spec.kind == "training":
        return _render_training(spec, labels)
    lines = [
        *_builder_stage(spec),
        f"FROM {spec.base_image}",
        *_user_and_env(spec),
        f"COPY model/ {MODEL_DIR}/",
        *([f"LABEL {labels}"] if labels else []),
        f"USER {UID}:{UID}",
        "WORKDIR /home/shipway",
        f"EXPOSE {spec.port}",
        _healthcheck(spec.port),
        f"ENTRYPOINT {json.dumps(entrypoint(spec))}",
        "CMD []",
    ]
    return "\n".join(lines) + "\n"


def _render_training(spec: ImageSpec, labels: str) -> str:
    workdir = f"{PROJECT_DIR}/{spec.workdir}".rstrip("/")
    git_env = []
    if spec.source_commit:
        git_env.append(f"SHIPWAY_GIT_COMMIT={_quote(spec.source_commit)}")
    if spec.source_repository:
        git_env.append(f"SHIPWAY_GIT_REPOSITORY={_quote(spec.source_repository)}")
    lines = [
        *_builder_stage(spec),
        f"FROM {spec.base_image}",
        *_user_and_env(spec),
        *([f"ENV {' '.join(git_env)}"] if git_env else []),
        f"COPY --chown={UID}:{UID} project/ {PROJECT_DIR}/",
        *([f"LABEL {labels}"] if labels else []),
        f"USER {UID}:{UID}",
        f"WORKDIR {workdir}",
        f"ENTRYPOINT {json.dumps(entrypoint(spec))}",
        "CMD []",
    ]
    return "\n".join(lines) + "\n"


def _builder_stage(spec: ImageSpec) -> list[str]:
    return [
        "# Generated by Shipway (shipway build). Deterministic: the same model, lock and options",
        "# give the same bytes.",
        f"FROM {spec.base_image} AS builder",
        "COPY requirements.lock /build/requirements.lock",
        "COPY wheels/ /build/wheels/",
        f"RUN python3 -m venv {VENV} \\",
        f"    && {VENV}/bin/python -m pip install --no-index --no-deps --require-hashes \\",
        "       --no-cache-dir --disable-pip-version-check --find-links /build/wheels \\",
        "       -r /build/requirements.lock \\",
        f"    && {_STRIP}",
        "",
    ]


def _user_and_env(spec: ImageSpec) -> list[str]:
    return [
        f"RUN useradd --system --uid {UID} --user-group --create-home --home-dir /home/shipway \\",
        "    --shell /usr/sbin/nologin shipway",
        f"COPY --from=builder {VENV} {VENV}",
        f"ENV PATH={VENV}/bin:$PATH \\",
        "    PYTHONUNBUFFERED=1 \\",
        "    PYTHONDONTWRITEBYTECODE=1 \\",
        "    SHIPWAY_HOME=/home/shipway/.shipway",
    ]
