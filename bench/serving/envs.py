"""The tools the benchmark needs outside the project venv: `wrk`, and one venv per peer.

Each peer (MLflow, BentoML) gets its own venv under bench/.venvs/, made on first use from the
interpreter the project venv was built on. The pickled pipeline is only portable between
identical scikit-learn versions, so every peer venv pins the project venv's scikit-learn and numpy.
A stamp file records what was installed; a changed requirement list rebuilds the venv.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
VENVS = BENCH / ".venvs"
STAMP = ".bench-requirements"


def _pins() -> list[str]:
    """The project venv's versions of what a pickled scikit-learn pipeline depends on."""
    return [f"{name}=={md.version(name)}" for name in ("scikit-learn", "numpy", "cloudpickle")]


def peer_requirements(peer: str) -> list[str]:
    if peer == "mlflow":
        return ["mlflow>=3,<4", *_pins()]
    if peer == "bentoml":
        return ["bentoml>=1.4,<1.5", "pandas", *_pins()]
    raise ValueError(f"unknown peer {peer!r}")


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def ensure_venv(peer: str, log: Callable[[str], object] = print) -> Path:
    """The peer's venv python, creating or updating the venv when its requirements changed."""
    reqs = peer_requirements(peer)
    root = VENVS / peer
    stamp = root / STAMP
    want = "\n".join(reqs) + "\n"
    if venv_python(peer).exists() and stamp.exists() and stamp.read_text() == want:
        return venv_python(peer)
    log(f"[bold]Creating the {peer} venv in {root}[/] ({' '.join(reqs)}); this takes a minute")
    base = Path(sys.base_prefix) / "bin" / "python3"
    if not base.exists():
        base = Path(shutil.which("python3") or "python3")
    if not venv_python(peer).exists():
        subprocess.run([str(base), "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(venv_python(peer)), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True
    )
    subprocess.run([str(venv_python(peer)), "-m", "pip", "install", "--quiet", *reqs], check=True)
    stamp.write_text(want)
    return venv_python(peer)


def ensure_wrk(log: Callable[[str], object] = print) -> str:
    """Path of `wrk`, installing the Debian package when it is missing (root or sudo)."""
    found = shutil.which("wrk")
    if found:
        return found
    log("[bold]Installing wrk[/] (Debian package) with apt-get")
    sudo: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise SystemExit(
                "wrk is missing and installing it needs root or sudo: apt-get install wrk"
            )
        sudo = ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
        check=True,
        env=env,
    )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


if __name__ == "__main__":  # prepare everything ahead of a run: python bench/serving/envs.py
    ensure_wrk()
    for name in sys.argv[1:] or ["mlflow", "bentoml"]:
        print(name, ensure_venv(name))
