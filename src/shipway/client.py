"""The client: one store and one artefact store, chosen by the settings.

Module-level functions (`shipway.start_run`, `shipway.register_model`, ...) use the default
client for the current settings; pass a `Client` around explicitly to work with several stores.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from shipway.artifacts import ArtifactStore
from shipway.config import Settings

if TYPE_CHECKING:
    from shipway.store import Store


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.actor = self.settings.actor

    @cached_property
    def store(self) -> Store:
        # Imported here: serving a bundle (as container images do) needs no metadata database,
        # so SQLAlchemy and Alembic need not be installed there.
        from shipway.store import Store

        return Store(self.settings.resolved_database_url)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(
            self.settings.resolved_artifact_url, self.settings.artifact_options or None
        )


_lock = threading.Lock()
_clients: dict[tuple[str, str, str], Client] = {}


def get_client() -> Client:
    """The client for the settings in force now (they are re-read, so tests can change them)."""
    settings = Settings()
    key = (
        settings.resolved_database_url,
        settings.resolved_artifact_url,
        settings.actor,
    )
    with _lock:
        if key not in _clients:
            _clients[key] = Client(settings)
        return _clients[key]
