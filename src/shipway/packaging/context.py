"""The build context: a directory holding everything the image is made of, and nothing else.

    context/
      Dockerfile          generated (dockerfile.py), deterministic
      requirements.lock   name==version --hash=sha256:... for every wheel
      wheels/             the wheelhouse, resolved on the host for the image's platform
      model/              the model bundle (model.json + blobs/), every digest verified
      sbom.cdx.json       CycloneDX SBOM of the image's Python environment
      build.json          what Shipway will tag and record: model, tag, base image, labels

`shipway build --context-only DIR` stops here, so the context can be inspected, or built by
any other tool (`docker build DIR`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from shipway import __version__
from shipway.client import Client, get_client
from shipway.errors import ConflictError
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


def _provenance(info: ModelVersionInfo, client: Client) -> labels.Provenance:
    if info.run_id is None:
        return labels.Provenance()
    from shipway.tracking.run import get_run

    return labels.Provenance.from_environment(get_run(info.run_id, client=client).environment)


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
    prov = _provenance(info, client)
    version_tag = labels.default_tag(info, prov)
    final_tag = (
        labels.check_tag(tag, labels.split_reference(version_tag)[1]) if tag else version_tag
    )
    spec = dockerfile.ImageSpec(
        base_image=base_image,
        labels=labels.image_labels(info, prov, __version__),
        kind=kind,
        port=port,
    )
    text = dockerfile.render(spec)  # validates before the slow steps
    directory.mkdir(parents=True, exist_ok=True)
    try:
        export_bundle(info.uri, directory / "model", client=client)
        target = target or wheelhouse.Target()
        entries = wheelhouse.build_wheelhouse(
            _model_requirements(directory / "model"),
            directory / "wheels",
            client.settings.home / "cache",
            target,
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
