"""Model bundles: a version exported with its blobs, served with no store at all."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

import shipway
from serving_helpers import live_server, records, train_credit
from shipway.client import get_client
from shipway.packaging.bundle import blob_store, export_bundle, read_bundle
from shipway.serving import ServerSettings, create_app
from shipway.serving.runtime import ServedModel


def test_export_serves_the_same_predictions_without_the_store(
    shipway_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version, model, features = train_credit()
    bundle = export_bundle(version.uri, tmp_path / "bundle")
    assert read_bundle(bundle).manifest_digest == version.manifest_digest

    # A different, empty home: the bundle alone must be enough.
    monkeypatch.setenv("SHIPWAY_HOME", str(tmp_path / "elsewhere"))
    app = create_app([f"bundle:{bundle}"], ServerSettings(prediction_log=False))
    with live_server(app) as url:
        answer = httpx.post(f"{url}/predict", json=records(features.head(5))).json()
    assert answer["version"] == version.version
    assert np.allclose(answer["probabilities"], model.predict_proba(features.head(5)))
    assert not (tmp_path / "elsewhere" / "shipway.db").exists()


def test_a_tampered_bundle_blob_is_refused(shipway_home: Path, tmp_path: Path) -> None:
    version, _, _ = train_credit()
    bundle = export_bundle(version.uri, tmp_path / "bundle")
    blobs = [p for p in (bundle / "blobs").rglob("*") if p.is_file()]
    victim = max(blobs, key=lambda p: p.stat().st_size)  # the model file, not the manifest
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(shipway.CorruptArtifactError, match=victim.parent.name):
        ServedModel.load(f"bundle:{bundle}", get_client())
    assert blob_store(bundle).exists(version.manifest_digest)


def test_missing_bundle_is_a_clear_error(shipway_home: Path, tmp_path: Path) -> None:
    with pytest.raises(shipway.NotFoundError, match=r"model\.json is missing"):
        read_bundle(tmp_path)
