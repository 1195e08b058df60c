"""Registered models, versions, aliases, model cards and lineage over the API.

Moving an alias into an environment that has an approval policy needs an approved request for
that exact version (`check_approved`, enforced by the registry itself), whatever the caller's
role: the role says who may ask, the approval says whether this version may go there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shipway.errors import ConflictError, InvalidInputError
from shipway.records import ImageInfo, LoggedModel, ModelVersionInfo, RegisteredModelInfo
from shipway.server._paging import OFFSET, limit_param, page
from shipway.server.endpoints import API, Call, Endpoint


class NewVersion(BaseModel):
    """A model logged with a run (`run_id`), or one saved with none (`manifest_digest`)."""

    model_config = ConfigDict(extra="forbid")
    run_id: str | None = Field(None, description="The run whose logged model to register.")
    artifact: str = Field("model", description="The name the model was logged under.")
    manifest_digest: str | None = Field(
        None, description="Instead of a run: the manifest of a model uploaded to /artifacts."
    )
    description: str | None = None


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)


class CardBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    ethical_considerations: str | None = None


_HEX64 = r"^[0-9a-f]{64}$"


class ImageBody(BaseModel):
    """An image built from the version on the caller's machine (`shipway build`)."""

    model_config = ConfigDict(extra="forbid")
    tag: str = Field(min_length=1, max_length=512, description="NAME:TAG as built.")
    image_id: str = Field(pattern=_HEX64, description="The engine's image id (hex, no prefix).")
    size_bytes: int = Field(ge=0)
    base_image: str = Field(min_length=1, max_length=512)
    engine: str = Field(min_length=1, max_length=64, description="docker, podman or buildah.")
    kind: Literal["inference", "training"]
    lock_digest: str = Field(pattern=_HEX64, description="SHA-256 of requirements.lock.")
    sbom_digest: str | None = Field(
        None, pattern=_HEX64, description="The SBOM, uploaded to /artifacts first."
    )


class PushBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pushed_ref: str = Field(
        pattern=r"^[^@\s]+@sha256:[0-9a-f]{64}$", description="Where it is now: REPO@sha256:..."
    )


class SbomPushBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sbom_digest: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="The SBOM artifact's manifest digest."
    )


def _version_uri(call: Call) -> str:
    version = call.path["version"]
    if not (version.isascii() and version.isdigit()):
        raise InvalidInputError(f"Version '{version}' is not a positive whole number.")
    return f"models:/{call.path['name']}/{version}"


def list_models(call: Call) -> list[RegisteredModelInfo]:
    from shipway.registry.registry import list_models

    return page(list_models(client=call.client), call)


def get_model(call: Call) -> dict[str, Any]:
    from shipway.errors import NotFoundError
    from shipway.registry.registry import list_models, list_versions

    name = call.path["name"]
    versions = list_versions(name, client=call.client)  # an unknown name fails here, helpfully
    model = next((m for m in list_models(client=call.client) if m.name == name), None)
    if model is None:  # deleted between the two reads
        raise NotFoundError(f"Model '{name}' not found.")
    return {"model": model, "versions": versions}


def list_versions(call: Call) -> list[ModelVersionInfo]:
    from shipway.registry.registry import list_versions

    return page(list_versions(call.path["name"], client=call.client), call)


def register(call: Call) -> ModelVersionInfo:
    from shipway.registry.registry import register_model

    body: NewVersion = call.body
    if (body.run_id is None) == (body.manifest_digest is None):
        raise InvalidInputError(
            "Name the model to register by run_id or by manifest_digest (one of them)."
        )
    source: str | LoggedModel = f"runs:/{body.run_id}/{body.artifact}"
    if body.manifest_digest is not None:
        from shipway.server.runs import uploaded_model

        manifest = uploaded_model(call, body.manifest_digest, "registering")
        source = LoggedModel(
            body.manifest_digest, manifest["flavor"], manifest.get("signature"), None, "model"
        )
    return register_model(
        source,
        call.path["name"],
        description=body.description,
        client=call.client,
    )


def get_version(call: Call) -> ModelVersionInfo:
    from shipway.registry.registry import get_model_version

    return get_model_version(_version_uri(call), client=call.client)


def archive(call: Call) -> ModelVersionInfo:
    from shipway.registry.registry import archive_version

    return archive_version(_version_uri(call), client=call.client)


def update_card(call: Call) -> ModelVersionInfo:
    from shipway.registry.registry import update_model_card

    return update_model_card(_version_uri(call), **call.body.model_dump(), client=call.client)


def get_alias(call: Call) -> ModelVersionInfo:
    from shipway.registry.registry import get_model_version

    return get_model_version(
        f"models:/{call.path['name']}@{call.path['alias']}", client=call.client
    )


def set_alias(call: Call) -> ModelVersionInfo:
    from shipway.registry.registry import set_alias

    uri = f"models:/{call.path['name']}/{call.body.version}"
    return set_alias(uri, call.path["alias"], client=call.client)


def delete_alias(call: Call) -> dict[str, Any]:
    from shipway.registry.registry import delete_alias

    delete_alias(call.path["name"], call.path["alias"], client=call.client)
    return {"deleted": f"models:/{call.path['name']}@{call.path['alias']}"}


def list_images(call: Call) -> list[ImageInfo]:
    from shipway.packaging.images import list_images

    return list_images(_version_uri(call), client=call.client)


def record_image(call: Call) -> ImageInfo:
    from shipway.packaging.images import BuiltImage, record_build

    body: ImageBody = call.body
    uri = _version_uri(call)
    if body.sbom_digest is not None and not call.client.artifacts.exists(body.sbom_digest):
        raise ConflictError(
            f"The SBOM {body.sbom_digest[:12]}... of image {body.tag} is not uploaded.",
            "PUT it to /api/v1/artifacts/{sha256} before recording the image.",
        )
    return record_build(uri, BuiltImage(**body.model_dump()), client=call.client)


def record_push(call: Call) -> ImageInfo:
    from shipway.packaging.images import record_push

    uri = _version_uri(call)
    return record_push(uri, call.path["image_id"], call.body.pushed_ref, client=call.client)


def record_sbom_push(call: Call) -> ImageInfo:
    from shipway.packaging.images import record_sbom_push

    uri = _version_uri(call)
    return record_sbom_push(uri, call.path["image_id"], call.body.sbom_digest, client=call.client)


_MODEL = f"{API}/models/{{name}}"
_VERSION = f"{_MODEL}/versions/{{version}}"
_ALIAS = f"{_MODEL}/aliases/{{alias}}"
_IMAGES = f"{_VERSION}/images"

ENDPOINTS = [
    Endpoint(
        "GET",
        f"{API}/models",
        list_models,
        "List registered models",
        "models",
        "viewer",
        query=(limit_param("At most this many, by name (default: all).", None), OFFSET),
        returns=list[RegisteredModelInfo],
    ),
    Endpoint("GET", _MODEL, get_model, "Show a model and its versions", "models", "viewer"),
    Endpoint(
        "GET",
        f"{_MODEL}/versions",
        list_versions,
        "List a model's versions",
        "models",
        "viewer",
        query=(limit_param("At most this many, oldest first (default: all).", None), OFFSET),
        returns=list[ModelVersionInfo],
    ),
    Endpoint(
        "POST",
        f"{_MODEL}/versions",
        register,
        "Register a model version",
        "models",
        "developer",
        body=NewVersion,
        status=201,
        returns=ModelVersionInfo,
        description="From a run's logged model, or from a model saved with no run: upload "
        "its manifest and every file it names to /api/v1/artifacts, then name the manifest.",
    ),
    Endpoint(
        "GET",
        _VERSION,
        get_version,
        "Show a model version",
        "models",
        "viewer",
        returns=ModelVersionInfo,
    ),
    Endpoint(
        "POST",
        f"{_VERSION}/archive",
        archive,
        "Archive a model version",
        "models",
        "developer",
        returns=ModelVersionInfo,
    ),
    Endpoint(
        "PATCH",
        f"{_VERSION}/card",
        update_card,
        "Edit a version's model card",
        "models",
        "developer",
        body=CardBody,
        returns=ModelVersionInfo,
    ),
    Endpoint(
        "GET",
        _ALIAS,
        get_alias,
        "Show the version an alias points at",
        "models",
        "viewer",
        returns=ModelVersionInfo,
    ),
    Endpoint(
        "PUT",
        _ALIAS,
        set_alias,
        "Point an alias at a version",
        "models",
        "developer",
        body=AliasBody,
        returns=ModelVersionInfo,
        description="An alias naming an environment with an approval policy (production, by "
        "default) needs an approved request for this version first: 403 otherwise.",
    ),
    Endpoint("DELETE", _ALIAS, delete_alias, "Delete an alias", "models", "developer"),
    Endpoint(
        "GET",
        _IMAGES,
        list_images,
        "List a version's images",
        "models",
        "viewer",
        returns=list[ImageInfo],
        description="Every image built from the version, oldest first, with where it was "
        "pushed and its SBOM.",
    ),
    Endpoint(
        "POST",
        _IMAGES,
        record_image,
        "Record an image built from a version",
        "models",
        "developer",
        body=ImageBody,
        status=201,
        returns=ImageInfo,
        description="The image is built where the engine is (`shipway build`); upload its "
        "SBOM to /api/v1/artifacts first: 409 otherwise.",
    ),
    Endpoint(
        "POST",
        f"{_IMAGES}/{{image_id}}/push",
        record_push,
        "Record an image push",
        "models",
        "developer",
        body=PushBody,
        returns=ImageInfo,
        description="The newest record of the image is marked pushed to `pushed_ref`; an "
        "SBOM recorded beside an earlier push is cleared.",
    ),
    Endpoint(
        "POST",
        f"{_IMAGES}/{{image_id}}/sbom-push",
        record_sbom_push,
        "Record an image's SBOM push",
        "models",
        "developer",
        body=SbomPushBody,
        returns=ImageInfo,
        description="The SBOM was pushed beside the pushed image as an OCI artifact: 404 if "
        "the image is not recorded as pushed.",
    ),
]
