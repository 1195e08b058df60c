"""Runs through the team server: `start_run` yields a `RemoteRun`, which logs by HTTP.

The run captures its code version, environment and seeds on this machine, exactly as locally,
and sends them with the request that creates it. Files (the package lock, datasets as Parquet,
artefacts, model files) are uploaded by digest before the request that refers to them.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shipway.artifacts import ArtifactStore
from shipway.client import Client
from shipway.errors import InvalidInputError, ShipwayError
from shipway.flavors import save_to_store
from shipway.flavors.model import read_manifest
from shipway.records import DatasetInfo, LoggedModel, RunInfo
from shipway.remote import records
from shipway.remote._http import PAGE, RemoteApi, segment
from shipway.tracking import capture
from shipway.tracking.datasets import describe
from shipway.tracking.run import Run, _model_seeds, dataset_path_tag
from shipway.types import Signature

MAX_LIMIT = PAGE
"""The server's page size limit for lists (`RemoteApi.get_list` reads longer ones)."""


def api_of(client: Client) -> RemoteApi:
    api = client.remote
    assert api is not None, "a remote call on a local client"
    return api


class RemoteRun(Run):
    """A run on the team server; the same methods as `Run`, each one request (or a few)."""

    @property
    def _path(self) -> str:
        return f"/runs/{segment(self.id)}"

    def log_params(self, params: Mapping[str, Any]) -> None:
        body = {str(k): str(v) for k, v in params.items()}
        api_of(self.client).post(f"{self._path}/params", {"params": body})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        numbers: dict[str, float] = {}
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"Metric '{key}' must be a number, got {value!r}."
                ) from None
            if math.isnan(number):
                raise InvalidInputError(f"Metric '{key}' is NaN; log a number.")
            numbers[key] = number
        api_of(self.client).post(f"{self._path}/metrics", {"metrics": numbers, "step": step or 0})

    def set_tag(self, key: str, value: Any) -> None:
        api_of(self.client).post(f"{self._path}/tags", {"tags": {key: str(value)}})

    def set_seed(self, seed: int) -> list[str]:
        seeded = capture.seed_everything(seed)
        api_of(self.client).post(
            f"{self._path}/seeds", {"set": {"seed": seed, "generators": seeded}}
        )
        return seeded

    def log_dataset(
        self, df: Any, name: str, role: str = "training", *, path: str | Path | None = None
    ) -> DatasetInfo:
        content_hash, schema, parquet = describe(df)
        api = api_of(self.client)
        blob = api.upload_bytes(parquet)
        data = api.post(
            f"{self._path}/datasets",
            {
                "name": name,
                "content_hash": content_hash,
                "blob_digest": blob,
                "num_rows": len(df),
                "schema": schema,
                "role": role,
            },
        )
        if path is not None:
            self.set_tag(*dataset_path_tag(name, path))
        return records.dataset(data)

    def log_artifact(self, path: str | Path, name: str | None = None) -> str:
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"No file at {path} to log as an artefact.")
        api = api_of(self.client)
        digest = api.upload_file(path)
        api.post(
            f"{self._path}/artifacts",
            {"name": name or path.name, "digest": digest, "size": path.stat().st_size},
        )
        return digest

    def log_model(
        self,
        model: object,
        name: str = "model",
        *,
        input_example: Any = None,
        requirements: list[str] | None = None,
        artifacts: dict[str, str | Path] | None = None,
        signature: Signature | None = None,
    ) -> LoggedModel:
        """Save the model here (as locally), upload its blobs, then log it with the run."""
        api = api_of(self.client)
        with tempfile.TemporaryDirectory(prefix="shipway-stage-") as tmp:
            staging = ArtifactStore(Path(tmp).as_uri())
            logged = save_to_store(
                staging,
                model,
                input_example=input_example,
                requirements=requirements,
                artifacts=artifacts,
                signature=signature,
            )
            upload_model(api, staging, logged.manifest_digest)
        api.post(f"{self._path}/models", {"manifest_digest": logged.manifest_digest, "name": name})
        seeds = _model_seeds(model)
        if seeds:
            api.post(f"{self._path}/seeds", {"found": seeds})
        return LoggedModel(logged.manifest_digest, logged.flavor, logged.signature, self.id, name)


def upload_model(api: RemoteApi, staging: ArtifactStore, manifest_digest: str) -> None:
    """Every file the manifest names, then the manifest itself."""
    manifest = read_manifest(staging, manifest_digest)
    digests = [*manifest["files"].values(), *(manifest.get("artifacts") or {}).values()]
    for digest in [*dict.fromkeys(digests), manifest_digest]:
        api.upload_file(staging._path(digest))


@contextlib.contextmanager
def start_run(
    experiment: str,
    *,
    name: str | None,
    seed: int | None,
    tags: Mapping[str, Any] | None,
    client: Client,
) -> Iterator[Run]:
    if not experiment.strip():
        raise InvalidInputError("The experiment name is empty.")
    api = api_of(client)
    lock = "\n".join(capture.package_lock()) + "\n"
    environment: dict[str, Any] = {
        "git": capture.git_state(),
        "runtime": capture.runtime(),
        "packages": {"count": lock.count("\n"), "lock_digest": api.upload_bytes(lock.encode())},
        "seeds": {"found": capture.found_seeds()},
    }
    if seed is not None:
        environment["seeds"]["set"] = {"seed": seed, "generators": capture.seed_everything(seed)}
    created = api.post(
        "/runs",
        {
            "experiment": experiment,
            "name": name,
            "tags": {str(k): str(v) for k, v in (tags or {}).items()},
            "environment": environment,
        },
    )
    run = RemoteRun(client, created["id"], experiment)
    try:
        yield run
    except BaseException as exc:
        # The block's own error matters more than a failure to record it.
        with contextlib.suppress(ShipwayError):
            _end(api, run.id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    _end(api, run.id, "finished", None)


def _end(api: RemoteApi, run_id: str, status: str, error: str | None) -> None:
    api.patch(f"/runs/{segment(run_id)}", {"status": status, "error": error})


def get_run(run_id: str, *, client: Client) -> RunInfo:
    return records.run(api_of(client).get(f"/runs/{segment(run_id)}"))


def list_runs(
    experiment: str | None, *, tag: str | None = None, limit: int, client: Client
) -> list[RunInfo]:
    """The newest `limit` runs, read a page (1000) at a time."""
    data = api_of(client).get_list("/runs", max(1, limit), _id, experiment=experiment, tag=tag)
    return [records.run(d) for d in data]


def _id(entry: Mapping[str, Any]) -> Any:
    return entry["id"]
