"""Content-addressed blob storage."""

from shipway.artifacts.store import ArtifactStore, sha256_bytes, sha256_file

__all__ = ["ArtifactStore", "sha256_bytes", "sha256_file"]
