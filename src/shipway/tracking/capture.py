"""What a run captures on its own: code version, environment, seeds.

Each capture is best effort and never fails the run: no git, no problem, the field says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit, dirty flag and a digest of the uncommitted changes of the working tree.

    Untracked files count (a new, uncommitted module can change what a run does); ignored
    files do not. The digest covers the diff against HEAD and each untracked file's content.

    Outside a git working tree, `SHIPWAY_GIT_COMMIT` (and `SHIPWAY_GIT_REPOSITORY`) name the
    commit the code came from: a training image sets them, as its source has no `.git`.
    """
    cwd = cwd or Path.cwd()
    head = _git(["rev-parse", "HEAD"], cwd)
    if head is None:
        commit = os.environ.get("SHIPWAY_GIT_COMMIT") or None
        return {
            "commit": commit,
            "dirty": False if commit else None,
            "diff_digest": None,
            "repository": (os.environ.get("SHIPWAY_GIT_REPOSITORY") or None) if commit else None,
            **({"source": "environment"} if commit else {}),
        }
    top = (_git(["rev-parse", "--show-toplevel"], cwd) or b"").decode().strip()
    diff = _git(["diff", "HEAD"], cwd) or b""
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], Path(top)) or b""
    names = sorted(n for n in untracked.decode(errors="replace").split("\0") if n)
    dirty = bool(diff.strip()) or bool(names)
    digest = None
    if dirty:
        h = hashlib.sha256(diff)
        for name in names:
            h.update(b"\0untracked\0" + name.encode())
            with contextlib.suppress(OSError):  # vanished or unreadable since git listed it
                h.update(hashlib.sha256((Path(top) / name).read_bytes()).digest())
        digest = h.hexdigest()
    return {
        "commit": head.decode().strip(),
        "dirty": dirty,
        "diff_digest": digest,
        "untracked_files": len(names),
        "repository": top or None,
    }


def package_lock() -> list[str]:
    """`name==version` for every installed distribution, sorted: the environment's lock."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            seen.setdefault(name.lower(), f"{name}=={dist.version}")
    return sorted(seen.values(), key=str.lower)


def seed_everything(seed: int) -> list[str]:
    """Seed the generators that are in use; returns which were seeded."""
    random.seed(seed)
    seeded = ["python.random"]
    if "numpy" in sys.modules:
        import numpy as np

        np.random.seed(seed)
        seeded.append("numpy.random")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        seeded.append("torch")
    return seeded


def found_seeds() -> dict[str, Any]:
    """Seeds already fixed by the environment rather than by the run."""
    found: dict[str, Any] = {}
    if "PYTHONHASHSEED" in os.environ:
        found["PYTHONHASHSEED"] = os.environ["PYTHONHASHSEED"]
    return found


def runtime() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
        "argv": list(sys.argv),
        "cwd": str(Path.cwd()),
    }
