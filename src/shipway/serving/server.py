"""Running the app under uvicorn: one process, or N worker processes sharing the port.

Workers rebuild the app from an environment variable (uvicorn imports the app by name in each
worker); with several workers, metrics are aggregated across processes through prometheus-client's
multiprocess mode. SIGTERM stops accepting connections, lets in-flight requests finish (up to
`drain_seconds`), then flushes the prediction log and exits.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from shipway.serving.settings import ServerSettings, api_keys

SPEC_ENV = "SHIPWAY_SERVE_SPEC"


def app_from_env() -> Any:
    """uvicorn factory for worker processes."""
    from shipway.serving.app import create_app
    from shipway.serving.runtime import short_gil_turns

    short_gil_turns()  # this process is ours: uvicorn runs it for `shipway serve`
    spec = json.loads(os.environ[SPEC_ENV])
    return create_app(spec["uris"], ServerSettings(**spec["settings"]))


def check_uris(uris: Sequence[str]) -> None:
    """Fail fast, in the parent, on a URI that names nothing, before any worker starts."""
    from shipway.packaging import bundle

    for uri in uris:
        if bundle.is_bundle_uri(uri):
            bundle.read_bundle(bundle.bundle_path(uri))
        else:  # the registry (and SQLAlchemy) only when a store is involved
            from shipway.registry.registry import get_model_version

            get_model_version(uri)


def worker_count(text: str) -> int:
    """`--workers`: a positive number, or `auto`: one per CPU this process may run on (its
    affinity, so a container's CPU set counts, not the host's)."""
    from shipway.errors import InvalidInputError

    if text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise InvalidInputError(f"--workers must be a positive number or auto, not '{text}'.")
    return count


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with Shipway's own lines (a model ready, a model process replaced)
    printed the same way; they were otherwise shown only from warnings up, and bare."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["shipway"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


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

    check_uris(uris)
    cleanup: list[str] = []
    if settings.api_keys:
        # Workers get their settings through the environment, which child processes inherit
        # and /proc shows: keys go through a private file instead, removed on exit.
        fd, key_file = tempfile.mkstemp(prefix="shipway-keys-")
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(api_keys(settings)) + "\n")
        cleanup.append(key_file)
        settings = settings.model_copy(update={"api_keys": [], "api_key_file": Path(key_file)})
    if workers > 1:
        settings = settings.model_copy(update={"load_before_accept": True})
    spec = {"uris": list(uris), "settings": settings.model_dump(mode="json")}
    os.environ[SPEC_ENV] = json.dumps(spec)
    if workers > 1:
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if metrics_dir is None:
            metrics_dir = tempfile.mkdtemp(prefix="shipway-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            cleanup.append(metrics_dir)
        else:  # prometheus-client's rule: wipe the directory whenever the server starts
            for stale in Path(metrics_dir).glob("*.db"):
                stale.unlink()
    # After a graceful shutdown uvicorn re-raises the SIGTERM it caught, under the handler that
    # was in place before it started: make that one exit with status 0, not die of the signal.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_cleanly) if main else None
    try:
        uvicorn.run(
            "shipway.serving.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=_log_config(log_level),
            timeout_graceful_shutdown=math.ceil(drain_seconds),  # int() made 0.5 s no drain
            access_log=False,
            proxy_headers=False,  # nothing here reads client addresses; saves a middleware
            server_header=False,
            loop="auto",
            http="auto",
        )
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        for path in cleanup:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)
