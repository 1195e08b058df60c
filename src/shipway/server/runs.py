"""Runs over the API: list and read them; create one and log to it, one request at a time.

A run created here is not a `start_run()` block on the server: the caller captured its own
code version and environment and sends them. Each request is one transaction carrying its
audit event, so every mutating request is accounted for (logging through the Python API
locally records params and metrics without one: they are the run's own data, attributed by
the run's actor). The datasets list answers "which runs used this data" across runs.
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select

from shipway.errors import ConflictError, InvalidInputError, NotFoundError
from shipway.records import DatasetInfo, RunInfo
from shipway.server._paging import OFFSET
from shipway.server.endpoints import API, Call, Endpoint, Param
from shipway.store import tables as t
from shipway.store import utc, utcnow
from shipway.store.store import Transaction
from shipway.tracking.run import link_dataset

Key = Annotated[str, StringConstraints(min_length=1, max_length=250)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NewRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiment: Name = "default"
    name: Name | None = None
    tags: dict[Key, str] = {}
    environment: dict[str, Any] = Field(
        default={}, description="What the caller captured: git state, runtime, packages, seeds."
    )


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[Key, str | int | float | bool]


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: dict[Key, float]
    step: int = 0


class Tags(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: dict[Key, str]


class LoggedModelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manifest_digest: str = Field(description="The model's manifest blob, uploaded first.")
    name: Key = "model"


class RunEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["finished", "failed"]
    error: str | None = None


def list_runs(call: Call) -> list[RunInfo]:
    """Newest first, ties by id, so that pages (`offset`) neither overlap nor skip."""
    from shipway.tracking.run import _run_info, runs_query

    q = call.query
    with call.client.store.read() as session:
        query = runs_query(session, q["experiment"], q["tag"])
        rows = session.scalars(query.offset(q["offset"]).limit(q["limit"]))
        return [_run_info(session, row) for row in rows]


def get_run(call: Call) -> RunInfo:
    from shipway.tracking import get_run

    return get_run(call.path["run_id"], client=call.client)


def create_run(call: Call) -> RunInfo:
    from shipway.tracking import get_run

    body: NewRun = call.body
    run_id = uuid.uuid4().hex
    client = call.client
    with client.write() as tx:
        exp = tx.session.scalar(select(t.Experiment).where(t.Experiment.name == body.experiment))
        if exp is None:
            exp = t.Experiment(name=body.experiment, created_at=utcnow())
            tx.session.add(exp)
            tx.session.flush()
            tx.audit("experiment.create", f"experiment:{body.experiment}")
        tx.session.add(
            t.Run(
                id=run_id,
                experiment_id=exp.id,
                name=body.name,
                status="running",
                actor=client.actor,
                start_time=utcnow(),
                environment=body.environment,
            )
        )
        for key, value in body.tags.items():
            tx.session.add(t.Tag(run_id=run_id, key=key, value=value))
        git = body.environment.get("git") or {}
        tx.audit(
            "run.create",
            f"run:{run_id}",
            after={
                "experiment": body.experiment,
                "commit": git.get("commit"),
                "dirty": git.get("dirty"),
            },
        )
    return get_run(run_id, client=client)


def _running(tx: Transaction, run_id: str) -> t.Run:
    row = tx.session.get(t.Run, run_id)
    if row is None:
        raise NotFoundError(f"Run '{run_id}' not found.", "Writes need the run's full id.")
    if row.status != "running":
        raise ConflictError(f"Run {run_id} is {row.status}; it takes no more data.")
    return row


def log_params(call: Call) -> dict[str, Any]:
    params = {k: str(v) for k, v in call.body.params.items()}
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        for key, value in params.items():
            tx.session.merge(t.Param(run_id=run.id, key=key, value=value))
        tx.audit("run.params", f"run:{run.id}", after=params)
    return {"run_id": run.id, "params": params}


def log_metrics(call: Call) -> dict[str, Any]:
    body: Metrics = call.body
    for key, value in body.metrics.items():
        if math.isnan(value):
            raise InvalidInputError(f"Metric '{key}' is NaN; log a number.")
    now = utcnow()
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        tx.session.add_all(
            t.Metric(run_id=run.id, key=k, value=v, step=body.step, timestamp=now)
            for k, v in body.metrics.items()
        )
        tx.audit("run.metrics", f"run:{run.id}", after={"step": body.step, **body.metrics})
    return {"run_id": run.id, "metrics": body.metrics, "step": body.step}


def set_tags(call: Call) -> dict[str, Any]:
    tags: dict[str, str] = call.body.tags
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        for key, value in tags.items():
            tx.session.merge(t.Tag(run_id=run.id, key=key, value=value))
        tx.audit("run.tags", f"run:{run.id}", after=tags)
    return {"run_id": run.id, "tags": tags}


def log_model(call: Call) -> dict[str, Any]:
    """Record a model whose blobs the caller uploaded: its manifest must read back whole."""
    body: LoggedModelBody = call.body
    manifest = uploaded_model(call, body.manifest_digest, "logging")
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        tx.session.merge(
            t.Artifact(
                run_id=run.id, path=body.name, digest=body.manifest_digest, size=0, kind="model"
            )
        )
        tx.audit(
            "run.model",
            f"run:{run.id}",
            after={"name": body.name, "manifest": body.manifest_digest},
        )
    return {
        "run_id": run.id,
        "name": body.name,
        "manifest_digest": body.manifest_digest,
        "flavor": manifest.get("flavor"),
        "uri": f"runs:/{run.id}/{body.name}",
    }


def uploaded_model(call: Call, manifest_digest: str, doing: str) -> dict[str, Any]:
    """The manifest of a model the caller uploaded, once every blob it names is here."""
    from shipway.flavors.model import read_manifest
    from shipway.server.artifacts import DIGEST

    if not DIGEST.fullmatch(manifest_digest):
        raise InvalidInputError(f"'{manifest_digest}' is not a SHA-256 digest.")
    manifest = read_manifest(call.client.artifacts, manifest_digest)
    missing = [d for d in _file_digests(manifest) if not call.client.artifacts.exists(d)]
    if missing:
        raise ConflictError(
            f"The model's manifest names {len(missing)} blob(s) not uploaded yet.",
            f"PUT each file to /api/v1/artifacts/{{sha256}} before {doing} the model.",
        )
    return manifest


def _file_digests(manifest: dict[str, Any]) -> list[str]:
    """Digests a manifest refers to (its `files` and `artifacts` maps name -> digest)."""
    found: list[str] = []
    for section in ("files", "artifacts"):
        entries = manifest.get(section) or {}
        if isinstance(entries, dict):
            for value in entries.values():
                digest = value.get("digest") if isinstance(value, dict) else value
                if isinstance(digest, str):
                    found.append(digest)
    return found


def end_run(call: Call) -> RunInfo:
    from shipway.tracking import get_run
    from shipway.tracking.run import _finish

    body: RunEnd = call.body
    run_id = call.path["run_id"]
    with call.client.store.read() as session:
        row = session.get(t.Run, run_id)
        if row is None:
            raise NotFoundError(f"Run '{run_id}' not found.", "Writes need the run's full id.")
    if row.status != "running":
        raise ConflictError(f"Run {run_id} is already {row.status}.")
    _finish(call.client, run_id, body.status, body.error if body.status == "failed" else None)
    return get_run(run_id, client=call.client)


class DatasetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    content_hash: str = Field(description="What `log_dataset` hashed: schema and row values.")
    blob_digest: str = Field(description="The data as Parquet, uploaded first.")
    num_rows: int = Field(ge=0)
    schema_: list[dict[str, Any]] = Field(alias="schema")
    role: Key = "training"


class ArtifactBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Key
    digest: str = Field(description="The file's blob, uploaded first.")
    size: int = Field(ge=0)


class SeedsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: dict[str, Any] | None = Field(None, description="What `run.set_seed` seeded.")
    found: dict[str, int] | None = Field(
        None, description="Seeds found in a logged model's parameters (merged)."
    )


def _uploaded(call: Call, digest: str, what: str) -> None:
    from shipway.server.artifacts import DIGEST

    if not DIGEST.fullmatch(digest):
        raise InvalidInputError(f"'{digest}' is not a SHA-256 digest.")
    if not call.client.artifacts.exists(digest):
        raise ConflictError(
            f"The {what}'s blob {digest[:12]}... is not uploaded yet.",
            "PUT it to /api/v1/artifacts/{sha256} first.",
        )


def log_dataset(call: Call) -> DatasetInfo:
    """Link a dataset (created the first time its name and content hash are seen) to a run, as
    `run.log_dataset` does locally; the caller hashed it and uploaded its Parquet blob."""
    body: DatasetBody = call.body
    _uploaded(call, body.blob_digest, "dataset")
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        ds = link_dataset(
            tx, run.id, body.name, body.content_hash, body.blob_digest, body.schema_,
            body.num_rows, body.role,
        )  # fmt: skip
        tx.audit(
            "run.dataset",
            f"run:{run.id}",
            after={"name": body.name, "content_hash": body.content_hash, "role": body.role},
        )
        return DatasetInfo(
            ds.name, ds.content_hash, ds.blob_digest, ds.num_rows, ds.schema, body.role
        )


def log_artifact(call: Call) -> dict[str, Any]:
    body: ArtifactBody = call.body
    _uploaded(call, body.digest, "artefact")
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        tx.session.merge(
            t.Artifact(
                run_id=run.id, path=body.name, digest=body.digest, size=body.size, kind="file"
            )
        )
        tx.audit("run.artifact", f"run:{run.id}", after={"name": body.name, "digest": body.digest})
    return {"run_id": run.id, "name": body.name, "digest": body.digest}


def record_seeds(call: Call) -> dict[str, Any]:
    from shipway.tracking.run import _record_seeds

    body: SeedsBody = call.body
    with call.client.write() as tx:
        run = _running(tx, call.path["run_id"])
        if body.set is not None:
            _record_seeds(run, set=body.set)
        if body.found:
            found = run.environment.get("seeds", {}).get("found", {})
            _record_seeds(run, found={**found, **body.found})
        tx.audit("run.seeds", f"run:{run.id}", after=body.model_dump(exclude_none=True))
        seeds: dict[str, Any] = run.environment.get("seeds", {})
    return {"run_id": run.id, "seeds": seeds}


def list_datasets(call: Call) -> list[dict[str, Any]]:
    """Datasets, newest first, each with the runs that logged it (and in which role)."""
    name = call.query["name"]
    query = select(t.Dataset).order_by(t.Dataset.created_at.desc(), t.Dataset.id.desc())
    if name is not None:
        query = query.where(t.Dataset.name == name)
    with call.client.store.read() as session:
        page = query.offset(call.query["offset"]).limit(call.query["limit"])
        datasets = list(session.scalars(page))
        uses = session.execute(
            select(t.RunInput.dataset_id, t.RunInput.run_id, t.RunInput.role).where(
                t.RunInput.dataset_id.in_([d.id for d in datasets])
            )
        ).all()
        counts = dict(
            session.execute(
                select(t.RunInput.dataset_id, func.count()).group_by(t.RunInput.dataset_id)
            ).all()
        )
    runs: dict[int, list[dict[str, str]]] = {}
    for dataset_id, run_id, role in uses:
        runs.setdefault(dataset_id, []).append({"run_id": run_id, "role": role})
    return [
        {
            "name": d.name,
            "content_hash": d.content_hash,
            "blob_digest": d.blob_digest,
            "num_rows": d.num_rows,
            "schema": d.schema,
            "created_at": utc(d.created_at).isoformat(),
            "used_by": counts.get(d.id, 0),
            "runs": runs.get(d.id, []),
        }
        for d in datasets
    ]


_RUN = f"{API}/runs/{{run_id}}"
ENDPOINTS = [
    Endpoint(
        "GET",
        f"{API}/runs",
        list_runs,
        "List runs",
        "runs",
        "viewer",
        query=(
            Param("experiment", "Only this experiment's runs."),
            Param("tag", "Only runs with this tag: KEY=VALUE."),
            Param("limit", "At most this many, newest first.", int, 100, 1, 1000),
            OFFSET,
        ),
        returns=list[RunInfo],
    ),
    Endpoint(
        "POST",
        f"{API}/runs",
        create_run,
        "Create a run",
        "runs",
        "developer",
        body=NewRun,
        status=201,
        returns=RunInfo,
    ),
    Endpoint(
        "GET",
        _RUN,
        get_run,
        "Show a run",
        "runs",
        "viewer",
        returns=RunInfo,
        description="A unique prefix of the id (4 characters or more) is enough.",
    ),
    Endpoint(
        "PATCH", _RUN, end_run, "End a run", "runs", "developer", body=RunEnd, returns=RunInfo
    ),
    Endpoint(
        "POST", f"{_RUN}/params", log_params, "Log run parameters", "runs", "developer", body=Params
    ),
    Endpoint(
        "POST", f"{_RUN}/metrics", log_metrics, "Log run metrics", "runs", "developer", body=Metrics
    ),
    Endpoint("POST", f"{_RUN}/tags", set_tags, "Set run tags", "runs", "developer", body=Tags),
    Endpoint(
        "POST",
        f"{_RUN}/models",
        log_model,
        "Log a model with a run",
        "runs",
        "developer",
        body=LoggedModelBody,
        status=201,
        description="Upload the manifest and every file it names to /api/v1/artifacts first.",
    ),
    Endpoint(
        "GET",
        f"{API}/datasets",
        list_datasets,
        "List datasets and the runs that used them",
        "runs",
        "viewer",
        query=(
            Param("name", "Only datasets of this name."),
            Param("limit", "At most this many, newest first.", int, 100, 1, 1000),
            OFFSET,
        ),
    ),
    Endpoint(
        "POST",
        f"{_RUN}/datasets",
        log_dataset,
        "Log a dataset with a run",
        "runs",
        "developer",
        body=DatasetBody,
        status=201,
        returns=DatasetInfo,
        description="Upload the data (Parquet) to /api/v1/artifacts first.",
    ),
    Endpoint(
        "POST",
        f"{_RUN}/artifacts",
        log_artifact,
        "Log a file with a run",
        "runs",
        "developer",
        body=ArtifactBody,
        status=201,
        description="Upload the file to /api/v1/artifacts first.",
    ),
    Endpoint(
        "POST",
        f"{_RUN}/seeds",
        record_seeds,
        "Record a run's seeds",
        "runs",
        "developer",
        body=SeedsBody,
    ),
]
