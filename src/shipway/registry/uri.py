"""Model URIs: `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `models:/NAME` (latest version)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipway.errors import InvalidInputError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # s3:, runs:, file:, https: ...


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidInputError(
            f"'{name}' is not a valid model name.",
            "Use letters, digits, '_', '-' and '.', starting with a letter or digit.",
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias):
        raise InvalidInputError(
            f"'{alias}' is not a valid alias.",
            "Use lower-case letters, digits, '_' and '-', starting with a letter "
            "(for example champion, challenger, staging, production).",
        )
    return alias


def parse(uri: str) -> ModelRef:
    """Parse a model URI; the `models:/` prefix is optional on the command line."""
    scheme = _SCHEME.match(uri)
    if scheme and scheme.group(0) != "models:":
        registered = " (a run's model: register it first, with register_model)" if (
            scheme.group(0) == "runs:"
        ) else ""  # fmt: skip
        raise InvalidInputError(
            f"'{uri}' is not a registered model's URI{registered}.",
            "Write models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME (the latest).",
        )
    body = uri.removeprefix("models:/").strip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return ModelRef(check_name(name), alias=check_alias(alias))
    if "/" in body:
        name, version = body.split("/", 1)
        if not (version.isascii() and version.isdigit()) or int(version) < 1:
            raise InvalidInputError(
                f"'{uri}': version '{version}' is not a positive whole number.",
                "Write models:/NAME/VERSION or models:/NAME@ALIAS.",
            )
        return ModelRef(check_name(name), version=int(version))
    return ModelRef(check_name(body))
