"""The Evidently venv: bench/.venvs/evidently, made on first use, rebuilt when its pins change.

Evidently 0.7 needs pandas below 3, so it cannot share the project venv. Evidently, pandas and
pyarrow are pinned to the versions that installed and ran on 2026-11-27; numpy and scipy to the
project venv's, so that both tools compute their statistics with the same scipy. A stamp file
records the list, and a changed list rebuilds the venv.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH / ".venvs" / "evidently"
STAMP = ".bench-requirements"
PINNED = ["evidently==0.7.23", "pandas==2.3.3", "pyarrow==26.0.1"]


def requirements() -> list[str]:
    return [*PINNED, *(f"{name}=={md.version(name)}" for name in ("numpy", "scipy"))]


def venv_python() -> Path:
    return ROOT / "bin" / "python"


def ensure_venv(log: Callable[[str], object] = print) -> Path:
    """The Evidently venv's python, creating or updating the venv when its pins changed."""
    reqs = requirements()
    stamp = ROOT / STAMP
    want = "\n".join(reqs) + "\n"
    if venv_python().exists() and stamp.exists() and stamp.read_text() == want:
        return venv_python()
    log(f"[bold]Creating the Evidently venv in {ROOT}[/] ({' '.join(reqs)}); a minute or two")
    base = Path(sys.base_prefix) / "bin" / "python3"
    if not base.exists():
        base = Path(shutil.which("python3") or "python3")
    if not venv_python().exists():
        subprocess.run([str(base), "-m", "venv", str(ROOT)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *reqs], check=True)
    stamp.write_text(want)
    return venv_python()


if __name__ == "__main__":  # prepare ahead of a run: python bench/drift/envs.py
    print(ensure_venv())
