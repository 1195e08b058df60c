"""Image records through the team server: the image is built and pushed on this machine, and
what was built, pushed and where its SBOM went is recorded on the server, against the version.

Each record names a version by number (an alias is resolved first), and the server writes it
in one transaction with its audit event, as a local record would be.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from shipway.client import Client
from shipway.records import ImageInfo
from shipway.remote import records
from shipway.remote._http import segment
from shipway.remote.registry import _version_path
from shipway.remote.tracking import api_of

if TYPE_CHECKING:
    from shipway.packaging.images import BuiltImage


def _images(uri: str, client: Client) -> str:
    return f"{_version_path(uri, client)}/images"


def record_build(uri: str, built: BuiltImage, *, client: Client) -> ImageInfo:
    """The SBOM must be on the server already (`shipway.blobs.put_blob`): 409 otherwise."""
    body: dict[str, Any] = asdict(built)
    return records.image(api_of(client).post(_images(uri, client), body))


def record_push(uri: str, image_id: str, pushed_ref: str, *, client: Client) -> ImageInfo:
    path = f"{_images(uri, client)}/{segment(image_id)}/push"
    return records.image(api_of(client).post(path, {"pushed_ref": pushed_ref}))


def record_sbom_push(uri: str, image_id: str, sbom_digest: str, *, client: Client) -> ImageInfo:
    path = f"{_images(uri, client)}/{segment(image_id)}/sbom-push"
    return records.image(api_of(client).post(path, {"sbom_digest": sbom_digest}))


def list_images(uri: str, *, client: Client) -> list[ImageInfo]:
    """Every image of the version, oldest first (a version has a handful: one answer)."""
    return [records.image(d) for d in api_of(client).get(_images(uri, client))]
