"""Settings, read from `SHIPWAY_*` environment variables.

Everything defaults to an embedded setup under `SHIPWAY_HOME` (SQLite and local files), so
nothing needs configuring on one machine; PostgreSQL and S3-compatible storage are one
variable away. `SHIPWAY_TRACKING_URI` (with `SHIPWAY_TOKEN`) points the Python API and the
CLI at a team server instead.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return os.environ.get("USER", "unknown")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPWAY_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".shipway")
    database_url: str | None = None
    artifact_url: str | None = None
    artifact_options: dict[str, Any] = Field(default_factory=dict)
    actor: str = Field(default_factory=_default_actor)
    tracking_uri: str | None = None
    """A team server (`http://host:port`): the API and the CLI then work through it."""
    token: SecretStr | None = None
    """The API token for `tracking_uri`; a SecretStr, so repr() and str() never show it."""

    @field_validator("tracking_uri")
    @classmethod
    def _check_tracking_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip().rstrip("/")  # its scheme is checked where it is used

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shipway.db'}"

    @property
    def resolved_artifact_url(self) -> str:
        return self.artifact_url or (self.home / "artifacts").as_uri()
