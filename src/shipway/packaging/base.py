"""The base image: Python 3.11 on Debian, made locally with debootstrap when none can be pulled.

Images build `FROM` a base image that has Python 3.11 (the version the wheelhouse targets). On
machines that can pull from a public registry, `--base-image python:3.11-slim-bookworm` works.
Where none is reachable, `ensure_local_base()` makes `localhost/python-base:3.11` once, with
`debootstrap --variant=minbase` from the machine's own Debian mirror, and reuses it afterwards.
Documentation, man pages, locales and apt's lists are left out; they are no use in an image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from shipway.errors import PackagingError
from shipway.packaging.engines import Engine

LOCAL_BASE = "localhost/python-base:3.11"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
         "var/lib/apt/lists", "var/cache/apt", "var/cache/debconf/templates.dat-old")  # fmt: skip


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian archive URI this machine's apt uses (it is reachable, by definition)."""
    candidates = [sources / "sources.list.d" / "debian.sources", sources / "sources.list"]
    for path in candidates:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2:
                uri = next(w for w in words[1:] if not w.startswith("["))
                if "security" not in uri:
                    return uri
    return DEFAULT_MIRROR


def ensure_local_base(engine: Engine, tag: str = LOCAL_BASE, *, mirror: str | None = None) -> str:
    """Return `tag`, making it first (about a minute, once per machine) when it is missing."""
    if engine.image_exists(tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise PackagingError(
            f"The base image {tag} does not exist and debootstrap is not installed to make it.",
            "Install debootstrap (apt-get install debootstrap), or pass --base-image with an "
            "image that has Python 3.11, e.g. python:3.11-slim-bookworm.",
        )
    with tempfile.TemporaryDirectory(prefix="shipway-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                str(rootfs), mirror or debian_mirror()]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise PackagingError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
        for rel in _TRIM:
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
            check=True,
            timeout=1800,
            env={**os.environ, "LC_ALL": "C"},
        )
        engine.import_rootfs(tarball, tag)
    return tag
