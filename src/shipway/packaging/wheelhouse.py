"""The wheelhouse: every wheel the image needs, resolved and downloaded on the host.

The build inside the engine is hermetic: `pip install --no-index --no-deps --require-hashes`
from the wheelhouse, against a lock of `name==version --hash=sha256:...` lines. So the image
builds without network (where container builds cannot reach an index, or must not), and with
the same versions every time.

Resolution runs `pip download --only-binary=:all:` for the image's platform and Python, with
the host environment's versions as constraints: the image gets the versions the model was
trained and tested with, wherever a wheel exists for the platform. A requirement with no wheel
for the platform is an error naming it. The Shipway wheel is built from the installed project
source (`pip wheel --no-deps`), or downloaded when Shipway was installed from an index.

Resolved wheelhouses are cached under `$SHIPWAY_HOME/cache/wheelhouse/{key}`, keyed by the
requirements, constraints and platform, so a new model version on the same dependencies skips
resolution and its image reuses the dependency layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from shipway.errors import DependencyError, PackagingError


@dataclass(frozen=True)
class Target:
    """The interpreter and platforms wheels must fit (the base image's)."""

    python: str = "3.11"
    platforms: tuple[str, ...] = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64")
    implementation: str = "cp"

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python]
        args += ["--implementation", self.implementation]
        for p in self.platforms:
            args += ["--platform", p]
        return args


# What `shipway serve bundle:/model` imports, and no more (no SQLAlchemy, no Alembic: a
# bundle needs no store). uvloop and httptools are uvicorn's fast paths. No pyarrow (about
# 150 MB installed): without it the prediction log writes gzip JSON Lines instead of Parquet.
SERVING_REQUIREMENTS = (
    "starlette",
    "fsspec",
    "httptools",
    "numpy",
    "orjson",
    "pandas",
    "prometheus-client",
    "psutil",
    "pydantic",
    "pydantic-settings",
    "rich",
    "threadpoolctl",
    "typer",
    "uvicorn",
    "uvloop",
)


def training_requirements() -> tuple[str, ...]:
    """The full Shipway install, store included: its dependencies plus the `postgres` extra.

    S3 support (`s3fs`) stays optional: add it to the model's requirements to get it.
    """
    out = []
    for req in metadata.requires("shipway") or []:
        spec, _, marker = req.partition(";")
        if not marker.strip() or re.search(r"extra\s*==\s*['\"]postgres['\"]", marker):
            out.append(spec.strip())
    return tuple(sorted(set(out), key=str.lower))


_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_NO_MATCH = re.compile(
    r"(?:No matching distribution found for|satisfies the requirement) (?P<req>\S+)"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return canonical(re.split(r"[<>=!~;\[ @]", req.strip(), maxsplit=1)[0])


def host_versions() -> dict[str, str]:
    """`{canonical name: version}` of the running environment."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonical(name), dist.version)
    return out


def requirement_set(
    model_requirements: Iterable[str],
    host: Mapping[str, str],
    base: Iterable[str] = SERVING_REQUIREMENTS,
) -> list[str]:
    """The image's own requirements (`base`, serving's by default) at the host's versions,
    then the model's own pins (they win)."""
    reqs = {_req_name(r): r.strip() for r in model_requirements}
    for req in base:
        key = _req_name(req)
        name = re.split(r"[<>=!~; @]", req.strip(), maxsplit=1)[0]  # keeps [extras]
        if key not in reqs:
            reqs[key] = f"{name}=={host[key]}" if key in host else req.strip()
    return sorted(reqs.values(), key=str.lower)


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    sha256: str
    filename: str

    def line(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


def lock_wheels(directory: Path) -> list[Locked]:
    """One entry per wheel in `directory`, sorted by name: the lock's content."""
    out = []
    for path in sorted(directory.glob("*.whl")):
        m = _WHEEL.match(path.name)
        if m is None:
            raise PackagingError(f"{path.name} is not a wheel file name.")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append(Locked(canonical(m["name"]), m["version"], digest, path.name))
    return sorted(out, key=lambda e: e.name)


def render_lock(entries: Iterable[Locked], target: Target) -> str:
    header = (
        "# The image's Python environment, installed with\n"
        "#   pip install --no-index --no-deps --require-hashes -r requirements.lock\n"
        f"# Target: CPython {target.python}, {', '.join(target.platforms)}. Generated by Shipway.\n"
    )
    return header + "".join(e.line() + "\n" for e in entries)


def _pip(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off"}
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def download(
    requirements: list[str], dest: Path, target: Target, constraints: Mapping[str, str]
) -> None:
    """Resolve and download wheels for `requirements` into `dest`; errors name the package."""
    dest.mkdir(parents=True, exist_ok=True)
    pinned = {_req_name(r) for r in requirements}
    with tempfile.TemporaryDirectory(prefix="shipway-pip-") as tmp:
        cfile = Path(tmp) / "constraints.txt"
        cfile.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())
                                 if n not in pinned))  # fmt: skip
        proc = _pip(["download", "--no-input", *target.pip_args(), "-d", str(dest),
                     "-c", str(cfile), *requirements])  # fmt: skip
    if proc.returncode == 0:
        return
    out = proc.stderr + proc.stdout
    m = _NO_MATCH.search(out)
    if m:
        raise DependencyError(
            f"Cannot resolve '{m['req']}' for the image (CPython {target.python}, "
            f"{', '.join(target.platforms)}): no wheel fits.",
            "Pin a version that publishes such a wheel, or drop the requirement.",
        )
    tail = "\n".join(out.strip().splitlines()[-12:])
    raise DependencyError(f"pip could not resolve the image's dependencies:\n{tail}")


def project_root() -> Path | None:
    """The source tree Shipway runs from, when it is installed from one (editable)."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "shipway"' in pyproject.read_text():
        return root
    return None


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    files = [root / "pyproject.toml", root / "README.md"]
    files += sorted(
        p for p in (root / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in files:
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def shipway_wheel(dest: Path, cache: Path) -> None:
    """Put a Shipway wheel in `dest`: built from the source tree (cached by its content)."""
    from shipway import __version__

    root = project_root()
    if root is None:
        download([f"shipway=={__version__}"], dest, Target(), {})
        return
    cached = cache / "shipway-wheel" / _tree_digest(root)[:24]
    if not any(cached.glob("*.whl")):
        tmp = Path(tempfile.mkdtemp(prefix="shipway-wheel-", dir=cache))
        proc = _pip(["wheel", "--no-deps", "-w", str(tmp), str(root)])
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-10:])
            raise PackagingError(f"Building the Shipway wheel from {root} failed:\n{tail}")
        shutil.rmtree(cached, ignore_errors=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(cached)
    for whl in cached.glob("*.whl"):
        shutil.copy2(whl, dest / whl.name)


def build_wheelhouse(
    model_requirements: Iterable[str],
    dest: Path,
    cache: Path,
    target: Target | None = None,
    base: Iterable[str] = SERVING_REQUIREMENTS,
) -> list[Locked]:
    """Fill `dest` with the image's wheels (the Shipway wheel included); returns the lock."""
    target = target or Target()
    cache.mkdir(parents=True, exist_ok=True)
    host = host_versions()
    host.pop("shipway", None)
    reqs = requirement_set(model_requirements, host, base)
    key = hashlib.sha256(
        json.dumps([reqs, sorted(host.items()), target.__dict__], sort_keys=True).encode()
    ).hexdigest()[:24]
    cached = cache / "wheelhouse" / key
    if not (cached / "complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix="resolve-", dir=cache))
        try:
            download(reqs, tmp, target, host)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / "complete").write_text("\n".join(reqs) + "\n")
        shutil.rmtree(cached, ignore_errors=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(cached)
    dest.mkdir(parents=True, exist_ok=True)
    for whl in cached.glob("*.whl"):
        _link_or_copy(whl, dest / whl.name)
    shipway_wheel(dest, cache)
    return lock_wheels(dest)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
