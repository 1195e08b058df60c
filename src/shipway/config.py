"""Settings, read from `SHIPWAY_*` environment variables.

Everything defaults to an embedded setup under `SHIPWAY_HOME` (SQLite and local files), so
nothing needs configuring on one machine; PostgreSQL and S3-compatible storage are one
variable away.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from pydantic import Field
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

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shipway.db'}"

    @property
    def resolved_artifact_url(self) -> str:
        return self.artifact_url or (self.home / "artifacts").as_uri()
