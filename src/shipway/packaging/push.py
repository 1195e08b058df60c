"""Pushing an image to an OCI registry, and recording the digest the registry stored.

A registry on loopback (127.0.0.0/8, ::1, localhost) is reached over plain HTTP automatically;
any other only over TLS, unless `insecure=True`. The registry is probed first (`GET /v2/`), so
an unreachable one is a one-line error rather than the engine's retry log; nothing is recorded
unless the push succeeded. `push_sbom` then puts the image's CycloneDX SBOM beside it, and
`push_model` the model itself (its manifest and files, each layer's digest the same as the
blob's digest in Shipway's store), through the registry's HTTP API, as OCI artifacts whose
`subject` is the image manifest: `oras discover` lists them, `oras pull` fetches them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

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


# The SBOM, pushed beside the image as an OCI artifact whose `subject` is the image manifest,
# under the cosign-style tag `sha256-<hex>.sbom` (registries without the referrers API, such
# as distribution 2.8, can only be searched by tag).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
MANIFEST_TYPES = (
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class _Registry:
    """The few registry API calls an artifact push needs; any refusal is a `PushFailedError`."""

    def __init__(self, http: httpx.Client, host: str, repo: str) -> None:
        self.http, self.host, self.repo = http, host, repo

    def call(self, method: str, url: str, ok: tuple[int, ...], **kw: Any) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise PushFailedError(
                f"Registry {self.host} is unreachable ({type(exc).__name__}: {exc})."
            ) from None
        if response.status_code not in ok:
            detail = response.text.strip().replace("\n", " ")[:300]
            hint = " (it needs credentials, which the SBOM push does not send)" if (
                response.status_code == 401) else ""  # fmt: skip
            raise PushFailedError(
                f"Registry {self.host} refused {method} {response.request.url.path} "
                f"with {response.status_code}{hint}: {detail or 'no detail'}."
            )
        return response

    def put_blob(self, data: bytes) -> str:
        digest = _digest(data)
        base = f"/v2/{self.repo}/blobs/"
        if self.call("HEAD", base + digest, (200, 404)).status_code == 200:
            return digest
        started = self.call("POST", base + "uploads/", (202,))
        location = started.headers.get("Location")
        if not location:
            raise PushFailedError(f"Registry {self.host} started an upload but gave no Location.")
        url = httpx.URL(location)
        if not url.is_absolute_url:
            url = self.http.base_url.join(location)
        self.call("PUT", str(url.copy_merge_params({"digest": digest})), (201,), content=data,
                  headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        return digest

    def descriptor(self, reference: str) -> dict[str, Any]:
        got = self.call("GET", f"/v2/{self.repo}/manifests/{reference}", (200,),
                        headers={"Accept": ", ".join(MANIFEST_TYPES)})  # fmt: skip
        if _digest(got.content) != reference:
            raise PushFailedError(f"Registry {self.host} answered {reference} with other bytes.")
        media_type = got.headers.get("Content-Type", "").split(";")[0].strip()
        return {"mediaType": media_type, "digest": reference, "size": len(got.content)}


@dataclass(frozen=True)
class Layer:
    media_type: str
    title: str
    data: bytes


MODEL_ARTIFACT = "application/vnd.shipway.model.v1"
MODEL_MANIFEST = "application/vnd.shipway.model.manifest.v1+json"


def push_sbom(pushed_ref: str, sbom: bytes, *, insecure: bool = False,
              timeout: float = 30.0) -> str:  # fmt: skip
    """Push `sbom` (CycloneDX JSON) beside the image `pushed_ref` (registry/repo@sha256:...).

    Returns the digest of the SBOM artifact's manifest, tagged `sha256-<image hex>.sbom`.
    """
    layer = Layer(CYCLONEDX_JSON, "sbom.cdx.json", sbom)
    return push_artifact(pushed_ref, [layer], artifact_type=CYCLONEDX_JSON, suffix="sbom",
                         insecure=insecure, timeout=timeout)  # fmt: skip


def push_model(pushed_ref: str, manifest: bytes, files: dict[str, bytes], *,
               insecure: bool = False, timeout: float = 120.0) -> str:  # fmt: skip
    """Push a model (its manifest, then each file by name) beside the image `pushed_ref`.

    Returns the digest of the artifact's manifest, tagged `sha256-<image hex>.model`.
    """
    layers = [Layer(MODEL_MANIFEST, "model.json", manifest)]
    layers += [Layer("application/octet-stream", name, data) for name, data in files.items()]
    return push_artifact(pushed_ref, layers, artifact_type=MODEL_ARTIFACT, suffix="model",
                         insecure=insecure, timeout=timeout)  # fmt: skip


def artifact_tag(image_digest: str, suffix: str) -> str:
    return f"sha256-{image_digest.removeprefix('sha256:')}.{suffix}"


def push_artifact(
    pushed_ref: str,
    layers: list[Layer],
    *,
    artifact_type: str,
    suffix: str,
    insecure: bool = False,
    timeout: float = 30.0,
) -> str:
    """Push `layers` as one OCI artifact whose subject is the image `pushed_ref`, tagged
    `sha256-<image hex>.<suffix>`; the digest of its manifest."""
    name, _, image_digest = pushed_ref.partition("@")
    host = registry_host(name)
    repo = name.split("/", 1)[1]
    if not image_digest.startswith("sha256:"):
        raise PushFailedError(f"'{pushed_ref}' is not a pushed image (REPOSITORY@sha256:...).")
    tls = not (insecure or is_loopback(host))
    base = f"{'https' if tls else 'http'}://{host}"
    with httpx.Client(base_url=base, timeout=timeout, verify=tls) as http:
        reg = _Registry(http, host, repo)
        subject = reg.descriptor(image_digest)
        described = [
            {"mediaType": layer.media_type, "digest": reg.put_blob(layer.data),
             "size": len(layer.data),
             "annotations": {"org.opencontainers.image.title": layer.title}}
            for layer in layers
        ]  # fmt: skip
        empty = reg.put_blob(b"{}")
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
            "layers": described,
            "subject": subject,
        }
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        digest = _digest(body)
        put = reg.call("PUT", f"/v2/{repo}/manifests/{artifact_tag(image_digest, suffix)}",
                       (201,), content=body, headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        stored = put.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            raise PushFailedError(f"Registry {host} stored the {suffix} manifest as {stored}, "
                                  f"not {digest}.")  # fmt: skip
    return digest
