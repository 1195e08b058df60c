"""The content-addressed artefact store, on local files and on S3 (a real moto server)."""

from __future__ import annotations

import hashlib
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from servers import S3Server
from shipway.artifacts import ArtifactStore
from shipway.errors import CorruptArtifactError, InvalidInputError, NotFoundError


@dataclass
class Blobs:
    """An artefact store plus raw access to its storage that bypasses the store's own code."""

    store: ArtifactStore
    listing: Callable[[], list[str]]  # every object under the root, relative to it
    overwrite: Callable[[str, bytes], None]  # replace a blob's bytes in place
    remove: Callable[[str], None]


def _blob_key(digest: str) -> str:
    return f"sha256/{digest[:2]}/{digest[2:]}"


def _file_blobs(root: Path) -> Blobs:
    root.mkdir()
    return Blobs(
        store=ArtifactStore(root.as_uri()),
        listing=lambda: sorted(
            p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
        ),
        overwrite=lambda d, data: (root / _blob_key(d)).write_bytes(data),
        remove=lambda d: (root / _blob_key(d)).unlink(),
    )


def _s3_blobs(url: str, server: S3Server) -> Blobs:
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    s3 = server.client()

    def listing() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        return sorted(
            o["Key"].removeprefix(f"{prefix}/") for page in pages for o in page.get("Contents", [])
        )

    return Blobs(
        store=ArtifactStore(url),
        listing=listing,
        overwrite=lambda d, data: s3.put_object(
            Bucket=bucket, Key=f"{prefix}/{_blob_key(d)}", Body=data
        ),
        remove=lambda d: s3.delete_object(Bucket=bucket, Key=f"{prefix}/{_blob_key(d)}"),
    )


@pytest.fixture(params=["file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Blobs:
    if request.param == "file":
        return _file_blobs(tmp_path / "blobs")
    return _s3_blobs(request.getfixturevalue("s3_bucket_url"), request.getfixturevalue("s3_server"))


def _blob_keys(blobs: Blobs) -> list[str]:
    return [k for k in blobs.listing() if k.startswith("sha256/")]


def test_put_then_get_round_trips_and_names_the_blob_by_its_sha256(blobs: Blobs) -> None:
    data = b"weights \x00\x01\x02" * 1000
    digest = blobs.store.put_bytes(data)

    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.store.exists(digest)
    assert blobs.store.get_bytes(digest) == data
    assert _blob_keys(blobs) == [_blob_key(digest)]


def test_put_file_and_download_round_trip(blobs: Blobs, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(bytes(range(256)) * 5000)  # spans more than one read chunk

    digest = blobs.store.put_file(src)
    dest = blobs.store.download(digest, tmp_path / "out" / "nested" / "model.bin")

    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]  # no .part- left


def test_same_bytes_are_stored_once(blobs: Blobs, tmp_path: Path) -> None:
    data = b"the same bytes"
    first = blobs.store.put_bytes(data)
    second = blobs.store.put_bytes(data)
    src = tmp_path / "same.txt"
    src.write_bytes(data)
    third = blobs.store.put_file(src)
    other = blobs.store.put_bytes(b"different bytes")

    assert first == second == third
    assert other != first
    assert _blob_keys(blobs) == sorted([_blob_key(first), _blob_key(other)])


def test_writes_leave_no_temporary_objects(blobs: Blobs, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"from a file")
    digests = [blobs.store.put_bytes(f"blob {i}".encode()) for i in range(5)]
    digests.append(blobs.store.put_file(src))
    digests.append(blobs.store.put_bytes(b"blob 0"))  # a duplicate

    assert blobs.listing() == sorted({_blob_key(d) for d in digests})


def test_a_reader_never_sees_a_partly_written_blob(tmp_path: Path) -> None:
    # Local files only: on S3 a PUT is atomic by contract, and moto's threaded server is
    # not safe under concurrent reads of a key being written, so racing it tests moto.
    blobs = _file_blobs(tmp_path / "blobs")
    data = np.random.default_rng(0).bytes(24 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    seen: list[str] = []
    done = threading.Event()

    def read_while_writing() -> None:
        while not done.is_set():
            try:
                got = blobs.store.get_bytes(digest)
            except NotFoundError:
                seen.append("missing")
                continue
            except Exception as exc:  # CorruptArtifactError: a half-written blob was visible
                seen.append(repr(exc))
                continue
            seen.append("complete" if got == data else "wrong")

    reader = threading.Thread(target=read_while_writing)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the two threads as finely as possible
    reader.start()
    try:
        assert blobs.store.put_bytes(data) == digest
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(interval)

    assert blobs.store.get_bytes(digest) == data
    assert "missing" in seen  # the reader really did race the writer
    assert set(seen) <= {"missing", "complete"}


def test_an_edited_blob_is_refused_by_get_bytes_naming_its_digest(blobs: Blobs) -> None:
    digest = blobs.store.put_bytes(b"good model bytes")
    blobs.overwrite(digest, b"evil model bytes")

    with pytest.raises(CorruptArtifactError) as excinfo:
        blobs.store.get_bytes(digest)

    assert digest in str(excinfo.value)
    assert isinstance(excinfo.value, shipway.IntegrityError)


def test_an_edited_blob_is_refused_by_download_and_no_file_appears(
    blobs: Blobs, tmp_path: Path
) -> None:
    digest = blobs.store.put_bytes(b"x" * 3_000_000)
    blobs.overwrite(digest, b"x" * 2_999_999 + b"y")
    out_dir = tmp_path / "out"
    dest = out_dir / "model.skops"

    with pytest.raises(CorruptArtifactError) as excinfo:
        blobs.store.download(digest, dest)

    assert digest in str(excinfo.value)
    assert not dest.exists()
    assert list(out_dir.iterdir()) == []  # no partial download either


def test_a_truncated_blob_is_refused(blobs: Blobs, tmp_path: Path) -> None:
    digest = blobs.store.put_bytes(b"complete content")
    blobs.overwrite(digest, b"")

    with pytest.raises(CorruptArtifactError, match=digest):
        blobs.store.get_bytes(digest)
    with pytest.raises(CorruptArtifactError, match=digest):
        blobs.store.download(digest, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_a_missing_blob_is_not_found(blobs: Blobs, tmp_path: Path) -> None:
    digest = blobs.store.put_bytes(b"soon gone")
    blobs.remove(digest)
    never = hashlib.sha256(b"never stored").hexdigest()

    for missing in (digest, never):
        assert not blobs.store.exists(missing)
        with pytest.raises(NotFoundError, match=missing):
            blobs.store.get_bytes(missing)
        with pytest.raises(NotFoundError, match=missing):
            blobs.store.download(missing, tmp_path / "out" / "x")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("bad", ["abc", "../../etc/passwd", "A" * 64, "g" * 64])
def test_a_malformed_digest_is_invalid_input(blobs: Blobs, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        blobs.store.get_bytes(bad)


def test_settings_route_a_whole_workflow_to_s3(
    shipway_home: Path,
    s3_bucket_url: str,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHIPWAY_ARTIFACT_URL", s3_bucket_url)
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(20, 3)), columns=["a", "b", "c"])
    y = (X["a"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)

    with shipway.start_run(experiment="s3-routing") as run:
        run.log_dataset(X, name="train")
        logged = run.log_model(model, input_example=X.head())
    version = shipway.register_model(run, "s3-model")
    shipway.set_alias(version.uri, "champion")
    loaded = shipway.load_model("models:/s3-model@champion")

    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    bucket, prefix = s3_bucket_url.removeprefix("s3://").split("/", 1)
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/sha256/")
    in_bucket = {o["Key"].removeprefix(f"{prefix}/") for o in listing.get("Contents", [])}
    assert _blob_key(logged.manifest_digest) in in_bucket
    assert _blob_key(run.info().datasets[0].blob_digest) in in_bucket
    assert len(in_bucket) >= 4  # manifest, model file, dataset, package lock
    local = shipway_home / "artifacts"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))


def test_settings_route_to_s3_and_corruption_there_blocks_loading(
    shipway_home: Path,
    s3_bucket_url: str,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHIPWAY_ARTIFACT_URL", s3_bucket_url)
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    y = (X["a"] > 9).astype(int)
    version = shipway.register_model(LogisticRegression().fit(X, y), "tampered")
    manifest = shipway.load_model(version.uri).manifest
    model_digest = manifest["files"]["model.skops"]

    bucket, prefix = s3_bucket_url.removeprefix("s3://").split("/", 1)
    s3_server.client().put_object(
        Bucket=bucket, Key=f"{prefix}/{_blob_key(model_digest)}", Body=b"not the model"
    )

    monkeypatch.setattr(tempfile, "tempdir", str(shipway_home))
    with pytest.raises(CorruptArtifactError, match=model_digest):
        shipway.load_model(version.uri)
    assert list(shipway_home.glob("shipway-model-*")) == []  # the failed load cleaned up
