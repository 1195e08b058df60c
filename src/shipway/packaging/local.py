"""Running an image locally and waiting until its model server is ready."""

from __future__ import annotations

import time

import httpx

from shipway.errors import PackagingError
from shipway.packaging.engines import Engine


def wait_ready(url: str, *, timeout: float = 120.0, is_running: object = None) -> float:
    """Poll `{url}/v2/health/ready` until it answers 200; returns the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if callable(is_running) and not is_running():
            break
        time.sleep(0.1)
    raise PackagingError(f"The server at {url} did not become ready within {timeout:.0f} s.")


def run_image(
    engine: Engine, image: str, *, port: int, name: str | None = None, timeout: float = 120.0
) -> tuple[str, str, float]:
    """Start `image` with `port` published on loopback; returns (container, url, seconds)."""
    container = engine.run(image, port=port, name=name)
    url = f"http://127.0.0.1:{port}"
    try:
        seconds = wait_ready(url, timeout=timeout)
    except PackagingError as exc:
        logs = engine.logs(container)
        engine.stop(container)
        tail = "\n".join(logs.strip().splitlines()[-15:])
        raise PackagingError(f"{exc.message} Its log ends:\n{tail}") from None
    return container, url, seconds
