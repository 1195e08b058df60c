"""Images recorded against model versions: what was built, from what, and where it was pushed.

Each record is written in one transaction with its audit event (`image.build`, `image.push`),
and only after the engine succeeded: a failed build or push leaves nothing behind. Through a
team server each function hands over to `shipway.remote.images`, and the server records it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipway.client import Client, get_client
from shipway.errors import NotFoundError
from shipway.records import ImageInfo
from shipway.registry.registry import _resolve
from shipway.registry.uri import parse
from shipway.store import tables as t
from shipway.store import utc, utcnow


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    size_bytes: int
    base_image: str
    engine: str
    kind: str
    lock_digest: str
    sbom_digest: str | None


def _info(model: t.RegisteredModel, mv: t.ModelVersion, row: t.ModelImage) -> ImageInfo:
    return ImageInfo(
        model=model.name,
        version=mv.version,
        kind=row.kind,
        tag=row.tag,
        image_id=row.image_id,
        size_bytes=row.size_bytes,
        base_image=row.base_image,
        engine=row.engine,
        lock_digest=row.lock_digest,
        sbom_digest=row.sbom_digest,
        pushed_ref=row.pushed_ref,
        created_by=row.created_by,
        created_at=utc(row.created_at),
        pushed_at=utc(row.pushed_at) if row.pushed_at else None,
        sbom_pushed_digest=row.sbom_pushed_digest,
    )


def record_build(uri: str, built: BuiltImage, *, client: Client | None = None) -> ImageInfo:
    client = client or get_client()
    if client.remote:
        from shipway.remote import images as remote

        return remote.record_build(uri, built, client=client)
    with client.write() as tx:
        model, mv = _resolve(tx.session, parse(uri))
        row = t.ModelImage(
            version_id=mv.id,
            kind=built.kind,
            tag=built.tag,
            image_id=built.image_id,
            size_bytes=built.size_bytes,
            base_image=built.base_image,
            engine=built.engine,
            lock_digest=built.lock_digest,
            sbom_digest=built.sbom_digest,
            created_by=client.actor,
            created_at=utcnow(),
        )
        tx.session.add(row)
        tx.session.flush()
        tx.audit(
            "image.build",
            f"model:{model.name}/{mv.version}",
            after={"tag": built.tag, "image_id": built.image_id, "size": built.size_bytes},
        )
        return _info(model, mv, row)


def record_push(
    uri: str, image_id: str, pushed_ref: str, *, client: Client | None = None
) -> ImageInfo:
    """Note that the image `image_id` of `uri` is now at `pushed_ref` (repo@digest)."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import images as remote

        return remote.record_push(uri, image_id, pushed_ref, client=client)
    with client.write() as tx:
        model, mv = _resolve(tx.session, parse(uri))
        row = tx.session.scalar(
            select(t.ModelImage)
            .where(t.ModelImage.version_id == mv.id, t.ModelImage.image_id == image_id)
            .order_by(t.ModelImage.id.desc())
        )
        if row is None:
            raise NotFoundError(f"No image {image_id[:12]} is recorded for {uri}.")
        before = {"pushed_ref": row.pushed_ref}
        row.pushed_ref, row.pushed_at = pushed_ref, utcnow()
        row.sbom_pushed_digest = None  # an SBOM beside an earlier push is not beside this one
        tx.audit(
            "image.push", f"model:{model.name}/{mv.version}", before, {"pushed_ref": pushed_ref}
        )
        return _info(model, mv, row)


def record_sbom_push(
    uri: str, image_id: str, sbom_digest: str, *, client: Client | None = None
) -> ImageInfo:
    """Note that the SBOM of the pushed image `image_id` is beside it, as the OCI artifact
    whose manifest digest is `sbom_digest`."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import images as remote

        return remote.record_sbom_push(uri, image_id, sbom_digest, client=client)
    with client.write() as tx:
        model, mv = _resolve(tx.session, parse(uri))
        row = tx.session.scalar(
            select(t.ModelImage)
            .where(t.ModelImage.version_id == mv.id, t.ModelImage.image_id == image_id)
            .where(t.ModelImage.pushed_ref.is_not(None))
            .order_by(t.ModelImage.id.desc())
        )
        if row is None:
            raise NotFoundError(f"No pushed image {image_id[:12]} is recorded for {uri}.")
        before = {"sbom_pushed_digest": row.sbom_pushed_digest}
        row.sbom_pushed_digest = sbom_digest
        after = {"pushed_ref": row.pushed_ref, "sbom_pushed_digest": sbom_digest}
        tx.audit("image.sbom_push", f"model:{model.name}/{mv.version}", before, after)
        return _info(model, mv, row)


def images_of(session: Session, model: t.RegisteredModel, mv: t.ModelVersion) -> list[ImageInfo]:
    rows = session.scalars(
        select(t.ModelImage).where(t.ModelImage.version_id == mv.id).order_by(t.ModelImage.id)
    )
    return [_info(model, mv, row) for row in rows]


def list_images(uri: str, *, client: Client | None = None) -> list[ImageInfo]:
    """Every image built from the version `uri` names, oldest first."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import images as remote

        return remote.list_images(uri, client=client)
    with client.store.read() as session:
        return images_of(session, *_resolve(session, parse(uri)))
