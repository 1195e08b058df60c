"""Running the app under uvicorn: one process, or N worker processes sharing the port.

Workers rebuild the app from an environment variable (uvicorn imports the app by name in each
worker); with several workers, metrics are aggregated across processes through prometheus-client's
multiprocess mode. SIGTERM stops accepting connections, lets in-flight requests finish (up to
`drain_seconds`), then flushes the prediction log and exits.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from shipway.serving.settings import ServerSettings

SPEC_ENV = "SHIPWAY_SERVE_SPEC"


def app_from_env() -> Any:
    """uvicorn factory for worker processes."""
    from shipway.serving.app import create_app

    spec = json.loads(os.environ[SPEC_ENV])
    return create_app(spec["uris"], ServerSettings(**spec["settings"]))


def serve(
    uris: Sequence[str],
    settings: ServerSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    drain_seconds: float = 30.0,
    log_level: str = "info",
) -> None:
    import uvicorn

    # Fail fast in the parent on a bad URI, before any worker starts.
    from shipway.packaging import bundle
    from shipway.registry.registry import get_model_version

    for uri in uris:
        if bundle.is_bundle_uri(uri):
            bundle.read_bundle(bundle.bundle_path(uri))
        else:
            get_model_version(uri)
    os.environ[SPEC_ENV] = json.dumps({"uris": list(uris), "settings": settings.model_dump()})
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shipway-metrics-")
    uvicorn.run(
        "shipway.serving.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=int(drain_seconds),
        access_log=False,
        loop="auto",
        http="auto",
    )
