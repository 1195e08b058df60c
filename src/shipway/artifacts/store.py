"""A content-addressed (SHA-256) blob store over any fsspec filesystem.

Blobs live at `ROOT/sha256/ab/cdef...`. A blob is written under a temporary name and renamed
into place, so a reader never sees half a blob; an existing digest is not written twice. Every
read re-hashes the bytes and refuses a blob that no longer matches its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from shipway.errors import CorruptArtifactError, InvalidInputError, NotFoundError

_CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise InvalidInputError(
                f"Cannot open artefact store '{url}': {exc}",
                "For s3:// install the extra: pip install 'shipway[s3]'.",
            ) from exc
        self.root = self.root.rstrip("/")

    def _path(self, digest: str) -> str:
        if not _DIGEST.match(digest):
            raise InvalidInputError(f"'{digest}' is not a SHA-256 digest.")
        return f"{self.root}/sha256/{digest[:2]}/{digest[2:]}"

    def location(self, digest: str) -> str:
        """Where a blob lives, for messages and for people."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self._path(digest)}"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        if not self.exists(digest):
            tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
            self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            self.fs.pipe_file(tmp, data)
            self._commit(tmp, digest)
        return digest

    def put_file(self, path: str | Path) -> str:
        digest = sha256_file(path)
        if not self.exists(digest):
            tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
            self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            self.fs.put_file(str(path), tmp)
            self._commit(tmp, digest)
        return digest

    def _commit(self, tmp: str, digest: str) -> None:
        final = self._path(digest)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(tmp, final)

    def _open(self, digest: str) -> BinaryIO:
        try:
            return self.fs.open(self._path(digest), "rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise NotFoundError(
                f"Blob {digest} not found at {self.location(digest)}.",
                "The artefact store may have been moved or pruned; check SHIPWAY_ARTIFACT_URL.",
            ) from None

    def _corrupt(self, digest: str, actual: str) -> CorruptArtifactError:
        return CorruptArtifactError(
            f"Blob {digest} at {self.location(digest)} is corrupted: its content hashes to "
            f"{actual[:12]}..., not {digest[:12]}...; refusing to load it.",
            "Restore the blob from a backup, or log the artefact again.",
        )

    def get_bytes(self, digest: str) -> bytes:
        with self._open(digest) as fh:
            data = fh.read()
        actual = sha256_bytes(data)
        if actual != digest:
            raise self._corrupt(digest, actual)
        return data

    def download(self, digest: str, dest: str | Path) -> Path:
        """Copy a blob to a local file, verifying it on the way; `dest` appears only if valid."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, self._open(digest) as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise self._corrupt(digest, h.hexdigest())
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest
