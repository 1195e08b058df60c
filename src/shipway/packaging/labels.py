"""Image tags and OCI labels, derived from the model version and the commit that trained it.

Default tag: `NAME:v{version}-{short commit}` (`-dirty` when the run's working tree had
uncommitted changes; `NAME:v{version}` when the run recorded no commit). Labels follow the OCI
image spec (`org.opencontainers.image.*`) plus `io.shipway.model.*`; `created` is the model
version's registration time, so the same version always gets the same labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shipway.errors import InvalidInputError
from shipway.records import ModelVersionInfo

# The distribution spec's grammar for repository paths and tags.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Provenance:
    """Where the model came from: the training run's recorded git state."""

    commit: str | None = None
    dirty: bool = False
    source: str | None = None

    @classmethod
    def from_environment(cls, environment: dict[str, Any]) -> Provenance:
        git = environment.get("git") or {}
        return cls(git.get("commit"), bool(git.get("dirty")), git.get("repository"))


def repository_name(model_name: str) -> str:
    """A model name as an image repository: lower case, other characters as '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", model_name.lower()).strip("._-")
    name = re.sub(r"[._-]{2,}", "-", name)
    return name or "model"


def default_tag(info: ModelVersionInfo, prov: Provenance, kind: str = "inference") -> str:
    """`NAME:v{version}-{sha}`; a training image's is `NAME:train-v{version}-{sha}`."""
    tag = ("train-" if kind == "training" else "") + f"v{info.version}"
    if prov.commit:
        tag += f"-{prov.commit[:7]}" + ("-dirty" if prov.dirty else "")
    return f"{repository_name(info.name)}:{tag}"


def split_reference(ref: str) -> tuple[str, str | None]:
    """`host:port/path:tag` into repository and tag (None when it has no tag)."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, None


def check_tag(ref: str, default_version_tag: str | None = None) -> str:
    """Validate an image reference; one given without a tag gets `default_version_tag`."""
    repo, tag = split_reference(ref)
    if tag is None:
        tag = default_version_tag or "latest"
    if not _REPOSITORY.fullmatch(repo):
        raise InvalidInputError(
            f"'{repo}' is not a valid image repository.",
            "Use lower-case letters, digits and . _ - separated by '/', "
            "optionally after a registry host[:port]/.",
        )
    if not _TAG.fullmatch(tag):
        raise InvalidInputError(
            f"'{tag}' is not a valid image tag.",
            "Use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'.",
        )
    return f"{repo}:{tag}"


def image_labels(
    info: ModelVersionInfo, prov: Provenance, shipway_version: str, kind: str = "inference"
) -> dict[str, str]:
    title = f"{info.name} training" if kind == "training" else f"{info.name} model server"
    labels = {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": str(info.version),
        "org.opencontainers.image.created": info.created_at.isoformat(),
        "org.opencontainers.image.revision": prov.commit or "unknown",
        "org.opencontainers.image.source": prov.source or "unknown",
        "io.shipway.model.name": info.name,
        "io.shipway.model.version": str(info.version),
        "io.shipway.model.digest": f"sha256:{info.manifest_digest}",
        "io.shipway.model.uri": info.uri,
        "io.shipway.version": shipway_version,
    }
    if kind != "inference":
        labels["io.shipway.image.kind"] = kind
    if prov.dirty:
        labels["io.shipway.source.dirty"] = "true"
    return labels
