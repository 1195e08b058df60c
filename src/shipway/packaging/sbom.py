"""A CycloneDX (1.5, JSON) SBOM of the image's Python environment.

The image's environment is exactly the lock (installed with `--no-deps --require-hashes`), so
the SBOM is generated from the lock and the wheels themselves: one `library` component per
wheel, with its package URL, SHA-256 and, where the wheel declares one, its licence. The
serial number and timestamp derive from the lock and the model version, so the same image
inputs give the same SBOM bytes.
"""

from __future__ import annotations

import email.parser
import json
import uuid
import zipfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from shipway.packaging.wheelhouse import Locked

SPEC_VERSION = "1.5"


def _license(wheel: Path) -> str | None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = email.parser.Parser().parsestr(zf.read(name).decode(errors="replace"))
    except (OSError, StopIteration, zipfile.BadZipFile):
        return None
    value = meta.get("License-Expression") or meta.get("License")
    if value and len(value) < 100 and "\n" not in value:
        return str(value)
    return None


def render_sbom(
    entries: Sequence[Locked],
    wheels: Path,
    *,
    subject: str,
    subject_version: str,
    lock_digest: str,
    created: datetime,
) -> str:
    components: list[dict[str, Any]] = []
    for e in entries:
        comp: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{e.name}@{e.version}",
            "name": e.name,
            "version": e.version,
            "purl": f"pkg:pypi/{e.name}@{e.version}",
            "hashes": [{"alg": "SHA-256", "content": e.sha256}],
        }
        lic = _license(wheels / e.filename)
        if lic:
            comp["licenses"] = [{"license": {"name": lic}}]
        components.append(comp)
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'shipway:' + lock_digest)}",
        "version": 1,
        "metadata": {
            "timestamp": created.isoformat(),
            "tools": {"components": [{"type": "application", "name": "shipway"}]},
            "component": {"type": "container", "name": subject, "version": subject_version},
        },
        "components": components,
    }
    return json.dumps(bom, indent=2, sort_keys=True) + "\n"
