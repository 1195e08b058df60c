"""Pushing an image to an OCI registry, and recording the digest the registry stored.

A registry on loopback (127.0.0.0/8, ::1, localhost) is reached over plain HTTP automatically;
any other only over TLS, unless `insecure=True`. The registry is probed first (`GET /v2/`), so
an unreachable one is a one-line error rather than the engine's retry log; nothing is recorded
unless the push succeeded.
"""

from __future__ import annotations

import ipaddress

import httpx

from shipway.errors import PackagingError, PushFailedError
from shipway.packaging.engines import Engine
from shipway.packaging.labels import check_tag, split_reference


def registry_host(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" not in ref or not ("." in first or ":" in first or first == "localhost"):
        raise PushFailedError(
            f"'{ref}' names no registry host.",
            "Push to HOST[:PORT]/REPOSITORY, e.g. 127.0.0.1:5000/credit.",
        )
    return first


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def destination(registry: str, local_tag: str) -> str:
    """`registry` (HOST/REPO or HOST/REPO:TAG) with the local tag's tag when it has none."""
    _, tag = split_reference(local_tag)
    return check_tag(registry, tag)


def probe(host: str, *, tls: bool, timeout: float = 10.0) -> None:
    url = f"{'https' if tls else 'http'}://{host}/v2/"
    try:
        response = httpx.get(url, timeout=timeout, verify=tls)
    except httpx.HTTPError as exc:
        raise PushFailedError(
            f"Registry {host} is unreachable ({type(exc).__name__}: {exc}).",
            "Nothing was pushed or recorded. Check the address and that the registry is running.",
        ) from None
    if response.status_code not in (200, 401):
        raise PushFailedError(
            f"{url} answered {response.status_code}; that is not an OCI registry API.",
            "Nothing was pushed or recorded.",
        )


def push_image(engine: Engine, image: str, registry: str, *, insecure: bool = False) -> str:
    """Push `image` to `registry`; returns `registry/repo@sha256:...` as stored there."""
    dest = destination(registry, image)
    host = registry_host(dest)
    tls = not (insecure or is_loopback(host))
    probe(host, tls=tls)
    try:
        digest = engine.push(image, dest, tls_verify=tls)
    except PackagingError as exc:
        raise PushFailedError(f"Pushing {image} to {dest} failed: {exc.message}",
                              "Nothing was recorded as pushed.") from None  # fmt: skip
    if not digest.startswith("sha256:"):
        raise PushFailedError(f"{engine.name} pushed {dest} but reported no digest.")
    return f"{split_reference(dest)[0]}@{digest}"
