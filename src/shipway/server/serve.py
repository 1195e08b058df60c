"""Running the team server under uvicorn, in one process.

One process is enough: every write serialises on the store's write lock anyway, and reads run
in the thread pool. Client addresses come from the socket; `X-Forwarded-For` is believed only
from the proxies named in `forwarded_allow_ips`, since the address ends up in the audit log.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from shipway.client import Client


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8800,
    client: Client | None = None,
    forwarded_allow_ips: str | None = None,
    log_level: str = "info",
) -> None:
    import uvicorn

    from shipway.server.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(client)
    # After a graceful shutdown uvicorn re-raises the SIGTERM it caught, under the handler in
    # place before it started: make that one exit with status 0 rather than die of the signal.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_cleanly) if main else None
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            proxy_headers=forwarded_allow_ips is not None,
            forwarded_allow_ips=forwarded_allow_ips,
            server_header=False,
            timeout_graceful_shutdown=30,
        )
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
