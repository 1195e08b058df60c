"""Registered models, versions, aliases, model cards and lineage over the API.

Moving an alias into an environment that has an approval policy needs an approved request for
that exact version (`check_approved`, enforced by the registry itself), whatever the caller's
role: the role says who may ask, the approval says whether this version may go there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shipway.errors import InvalidInputError
from shipway.records import LoggedModel, ModelVersionInfo, RegisteredModelInfo
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


_MODEL = f"{API}/models/{{name}}"
_VERSION = f"{_MODEL}/versions/{{version}}"
_ALIAS = f"{_MODEL}/aliases/{{alias}}"

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
]
