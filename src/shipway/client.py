"""The client: one store and one artefact store, chosen by the settings.

Module-level functions (`shipway.start_run`, `shipway.register_model`, ...) use the default
client for the current settings; pass a `Client` around explicitly to work with several stores.

Every audited change goes through `Client.write()`, so the audit entry names the client's actor
and source. The team server serves each request through `client.as_user(user, source)`.

With `SHIPWAY_TRACKING_URI` set, `client.remote` is the team server's HTTP API, and the public
functions that work remotely hand over to it first thing (`if client.remote: ...`); the local
store is then out of bounds, so nothing reads or writes the wrong place by accident.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING

from shipway.artifacts import ArtifactStore
from shipway.config import Settings
from shipway.errors import InvalidInputError

if TYPE_CHECKING:
    from shipway.remote import RemoteApi
    from shipway.store import Store, Transaction


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.actor = self.settings.actor
        self.source: str | None = None

    @cached_property
    def remote(self) -> RemoteApi | None:
        """The team server's API when `SHIPWAY_TRACKING_URI` is set, else None (local)."""
        if not self.settings.tracking_uri:
            return None
        from shipway.remote import RemoteApi

        return RemoteApi(self.settings.tracking_uri, self.settings.token)

    @cached_property
    def store(self) -> Store:
        if self.settings.tracking_uri:
            raise InvalidInputError(
                "This operation needs the local store, but SHIPWAY_TRACKING_URI points at a "
                f"team server ({self.settings.tracking_uri}) and it does not work through one yet.",
                "Unset SHIPWAY_TRACKING_URI to work on this machine's store, or use the "
                "server's REST API (its /docs page).",
            )
        # Imported here: serving a bundle (as container images do) needs no metadata database,
        # so SQLAlchemy and Alembic need not be installed there.
        from shipway.store import Store

        return Store(self.settings.resolved_database_url)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(
            self.settings.resolved_artifact_url, self.settings.artifact_options or None
        )

    def write(self) -> AbstractContextManager[Transaction]:
        """A unit of work on the store, audited as this client's actor and source."""
        return self.store.write(self.actor, self.source)

    def child_env(self, **extra: str) -> dict[str, str]:
        """This process's environment for a child process (an agent, a training script, a
        hook) that must work where this client works: the same team server, or the same
        database and artefacts as this client's actor, whatever the parent's variables say."""
        env = dict(os.environ)
        for var in ("SHIPWAY_TRACKING_URI", "SHIPWAY_TOKEN", "SHIPWAY_ARTIFACT_OPTIONS"):
            env.pop(var, None)
        settings = self.settings
        if settings.tracking_uri:
            env["SHIPWAY_TRACKING_URI"] = settings.tracking_uri
            if settings.token is not None:
                env["SHIPWAY_TOKEN"] = settings.token.get_secret_value()
        else:
            env["SHIPWAY_HOME"] = str(settings.home)
            env["SHIPWAY_DATABASE_URL"] = settings.resolved_database_url
            env["SHIPWAY_ARTIFACT_URL"] = settings.resolved_artifact_url
            if settings.artifact_options:
                env["SHIPWAY_ARTIFACT_OPTIONS"] = json.dumps(settings.artifact_options)
        env["SHIPWAY_ACTOR"] = self.actor
        return env | extra

    def as_user(self, user: str, source: str | None = None) -> Client:
        """A view of the same store and artefacts whose writes are audited as `user`, `source`.

        Cheap enough to make per request: it shares this client's engine and artefact store
        (nothing is opened or migrated), and closing the store closes it for both.
        """
        view = copy.copy(self)
        view.__dict__.update(store=self.store, artifacts=self.artifacts)
        view.actor, view.source = user, source
        return view


_lock = threading.Lock()
_clients: dict[tuple[str, ...], Client] = {}


def get_client() -> Client:
    """The client for the settings in force now (they are re-read, so tests can change them)."""
    settings = Settings()
    key = (
        settings.resolved_database_url,
        settings.resolved_artifact_url,
        settings.actor,
        settings.tracking_uri or "",
        settings.token.get_secret_value() if settings.token else "",
    )
    with _lock:
        if key not in _clients:
            _clients[key] = Client(settings)
        return _clients[key]
