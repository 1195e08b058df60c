"""`shipway build`: context, image, record; then, optionally, push.

The image is recorded against the model version only after the engine built it, with its
SBOM stored in the artefact store; a failed build records nothing. A pushed image is recorded
as soon as the registry has it; its SBOM is then pushed beside it and recorded in turn, so an
SBOM push that fails leaves the image recorded as pushed, with no SBOM recorded, and says so.

Through a team server (`SHIPWAY_TRACKING_URI`) the image is still built on this machine, by its
engine, from the model's blobs downloaded through the server; the SBOM is uploaded there and
the records are written there, so the server's store lists the image as a local build would.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shipway.blobs import get_blob, put_blob
from shipway.client import Client, get_client
from shipway.errors import PushFailedError
from shipway.packaging import images
from shipway.packaging.base import LOCAL_BASE, ensure_local_base
from shipway.packaging.context import BuildContext, prepare_context
from shipway.packaging.engines import Engine
from shipway.packaging.push import push_image, push_model, push_sbom
from shipway.records import ImageInfo


@dataclass(frozen=True)
class BuildResult:
    image: ImageInfo
    context: BuildContext
    seconds: float


def build_image(
    uri: str,
    engine: Engine,
    *,
    base_image: str = LOCAL_BASE,
    tag: str | None = None,
    kind: str = "inference",
    port: int = 8080,
    train_command: str | None = None,
    client: Client | None = None,
) -> BuildResult:
    client = client or get_client()
    started = time.perf_counter()
    if base_image == LOCAL_BASE:
        ensure_local_base(engine)
    with tempfile.TemporaryDirectory(prefix="shipway-context-") as tmp:
        ctx = prepare_context(
            uri, Path(tmp) / "context", base_image=base_image, tag=tag, kind=kind, port=port,
            train_command=train_command, client=client,
        )  # fmt: skip
        image_id = engine.build(ctx.directory, ctx.tag)
        size = int(engine.inspect(ctx.tag).get("Size") or 0)
        sbom_digest = put_blob(client, ctx.sbom_path)
    built = images.BuiltImage(
        tag=ctx.tag,
        image_id=image_id,
        size_bytes=size,
        base_image=base_image,
        engine=engine.name,
        kind=kind,
        lock_digest=ctx.lock_digest,
        sbom_digest=sbom_digest,
    )
    info = images.record_build(ctx.uri, built, client=client)
    return BuildResult(info, ctx, time.perf_counter() - started)


def push_built(
    uri: str,
    engine: Engine,
    image: ImageInfo,
    registry: str,
    *,
    insecure: bool = False,
    client: Client | None = None,
) -> ImageInfo:
    """Push a recorded image to `registry`, then its SBOM beside it; record both."""
    client = client or get_client()
    ref = push_image(engine, image.tag, registry, insecure=insecure)
    info = images.record_push(uri, image.image_id, ref, client=client)
    if image.sbom_digest is None:
        return info
    sbom = get_blob(client, image.sbom_digest)
    try:
        digest = push_sbom(ref, sbom, insecure=insecure)
    except PushFailedError as exc:
        raise PushFailedError(
            f"{ref} was pushed and recorded, but its SBOM was not pushed: {exc.message}",
            "Fix the registry and push again; the image record shows no SBOM until then.",
        ) from None
    return images.record_sbom_push(uri, image.image_id, digest, client=client)


def push_model_beside(
    uri: str, pushed_ref: str, *, insecure: bool = False, client: Client | None = None
) -> str:
    """Push the model version `uri` names (its manifest and every file) beside the pushed image
    `pushed_ref`, as an OCI artifact; the artifact manifest's digest."""
    import json

    from shipway.registry.registry import get_model_version

    client = client or get_client()
    version = get_model_version(uri, client=client)
    manifest = get_blob(client, version.manifest_digest)
    named = json.loads(manifest)["files"]
    files = {name: get_blob(client, digest) for name, digest in named.items()}
    return push_model(pushed_ref, manifest, files, insecure=insecure)
