"""`start_run()`: a tracked training run.

    with shipway.start_run(experiment="credit", seed=42) as run:
        run.log_params({"C": 1.0})
        run.log_dataset(train_df, name="credit-train")
        ...
        run.log_metric("auc", 0.83)
        run.log_model(model, input_example=train_df.head())

The run captures its code version, environment and seeds by itself. An exception in the block
marks the run failed with the error, and is re-raised. A dataset logged with the `path` of the
file it was read from can be put back there when the run is reproduced
(`shipway runs reproduce`, which sets `SHIPWAY_REPRODUCES` so the new run is tagged with the
run it reproduces).
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shipway.client import Client, get_client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.flavors import save_to_store
from shipway.records import DatasetInfo, LoggedModel, RunInfo
from shipway.store import tables as t
from shipway.store import utc, utcnow
from shipway.store.store import Transaction
from shipway.tracking import capture
from shipway.tracking.datasets import describe
from shipway.types import Signature

DATASET_PATH_TAG = "shipway.dataset_path."
"""Tag prefix recording the file a dataset was read from: `shipway.dataset_path.NAME`."""
REPRODUCES_ENV = "SHIPWAY_REPRODUCES"
"""Set to a run id, runs started in this process are tagged `reproduces=<run id>`."""
PIPELINE_ENV = "SHIPWAY_PIPELINE_RUN"
"""Set by `shipway pipeline run` for its stages: runs are tagged `pipeline_run=<id>`, so a
model version leads back to the pipeline run that trained it."""


class Run:
    def __init__(self, client: Client, run_id: str, experiment: str) -> None:
        self.client = client
        self.id = run_id
        self.experiment = experiment

    def __repr__(self) -> str:
        return f"<Run {self.id} experiment={self.experiment!r}>"

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        with self.client.write() as tx:
            for key, value in params.items():
                tx.session.merge(t.Param(run_id=self.id, key=str(key), value=str(value)))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = utcnow()
        rows = []
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"Metric '{key}' must be a number, got {value!r}."
                ) from None
            if math.isnan(number):
                raise InvalidInputError(f"Metric '{key}' is NaN; log a number.")
            rows.append(
                t.Metric(run_id=self.id, key=key, value=number, step=step or 0, timestamp=now)
            )
        with self.client.write() as tx:
            tx.session.add_all(rows)

    def set_tag(self, key: str, value: Any) -> None:
        with self.client.write() as tx:
            tx.session.merge(t.Tag(run_id=self.id, key=key, value=str(value)))

    def set_seed(self, seed: int) -> list[str]:
        """Seed python, numpy and torch (when imported) and record the seed with the run."""
        seeded = capture.seed_everything(seed)
        with self.client.write() as tx:
            _record_seeds(
                tx.session.get_one(t.Run, self.id), set={"seed": seed, "generators": seeded}
            )
        return seeded

    def log_dataset(
        self, df: Any, name: str, role: str = "training", *, path: str | Path | None = None
    ) -> DatasetInfo:
        """Log `df`; `path`, the file it was read from (as is), lets a reproduction of the run
        restore the file there from the logged copy."""
        content_hash, schema, parquet = describe(df)
        blob = self.client.artifacts.put_bytes(parquet)
        with self.client.write() as tx:
            link_dataset(tx, self.id, name, content_hash, blob, schema, len(df), role)
            if path is not None:
                key, value = dataset_path_tag(name, path)
                tx.session.merge(t.Tag(run_id=self.id, key=key, value=value))
        return DatasetInfo(name, content_hash, blob, len(df), schema, role)

    def log_artifact(self, path: str | Path, name: str | None = None) -> str:
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"No file at {path} to log as an artefact.")
        digest = self.client.artifacts.put_file(path)
        with self.client.write() as tx:
            tx.session.merge(
                t.Artifact(
                    run_id=self.id,
                    path=name or path.name,
                    digest=digest,
                    size=path.stat().st_size,
                    kind="file",
                )
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
        """Save ``model`` with this run; its signature is ``signature`` or inferred from
        ``input_example`` (see :func:`shipway.infer_signature`)."""
        logged = save_to_store(
            self.client.artifacts,
            model,
            input_example=input_example,
            requirements=requirements,
            artifacts=artifacts,
            signature=signature,
        )
        seeds = _model_seeds(model)
        with self.client.write() as tx:
            tx.session.merge(
                t.Artifact(
                    run_id=self.id,
                    path=name,
                    digest=logged.manifest_digest,
                    size=0,
                    kind="model",
                )
            )
            if seeds:
                row = tx.session.get_one(t.Run, self.id)
                found = row.environment.get("seeds", {}).get("found", {})
                _record_seeds(row, found={**found, **seeds})
        return LoggedModel(logged.manifest_digest, logged.flavor, logged.signature, self.id, name)

    def info(self) -> RunInfo:
        return get_run(self.id, client=self.client)


def dataset_path_tag(name: str, path: str | Path) -> tuple[str, str]:
    """The tag naming the file a dataset was read from, as an absolute path: a reproduction
    maps it into its worktree through the run's recorded repository root."""
    return f"{DATASET_PATH_TAG}{name}", str(Path(path).resolve())


def _record_seeds(row: t.Run, **entries: dict[str, Any]) -> None:
    """Replace entries of the run's `environment["seeds"]` (a new dict, so the JSON column is
    seen as changed)."""
    env = dict(row.environment)
    env["seeds"] = {**env.get("seeds", {}), **entries}
    row.environment = env


def _model_seeds(model: object) -> dict[str, Any]:
    """`random_state` values found in a scikit-learn estimator's parameters."""
    get_params = getattr(model, "get_params", None)
    if not callable(get_params):
        return {}
    try:
        params = get_params(deep=True)
    except Exception:
        return {}
    return {k: v for k, v in params.items() if k.endswith("random_state") and isinstance(v, int)}


@contextlib.contextmanager
def start_run(
    experiment: str = "default",
    *,
    name: str | None = None,
    seed: int | None = None,
    tags: Mapping[str, Any] | None = None,
    client: Client | None = None,
) -> Iterator[Run]:
    client = client or get_client()
    for var, tag in ((REPRODUCES_ENV, "reproduces"), (PIPELINE_ENV, "pipeline_run")):
        if os.environ.get(var):
            tags = {**(tags or {}), tag: os.environ[var]}
    if client.remote:
        from shipway.remote import tracking as remote

        with remote.start_run(experiment, name=name, seed=seed, tags=tags, client=client) as run:
            yield run
        return
    if not experiment.strip():
        raise InvalidInputError("The experiment name is empty.")
    git = capture.git_state()
    lock = "\n".join(capture.package_lock()) + "\n"
    environment: dict[str, Any] = {
        "git": git,
        "runtime": capture.runtime(),
        "packages": {
            "count": lock.count("\n"),
            "lock_digest": client.artifacts.put_bytes(lock.encode()),
        },
        "seeds": {"found": capture.found_seeds()},
    }
    if seed is not None:
        environment["seeds"]["set"] = {"seed": seed, "generators": capture.seed_everything(seed)}
    run_id = uuid.uuid4().hex
    with client.write() as tx:
        exp = tx.session.scalar(select(t.Experiment).where(t.Experiment.name == experiment))
        if exp is None:
            exp = t.Experiment(name=experiment, created_at=utcnow())
            tx.session.add(exp)
            tx.session.flush()
            tx.audit("experiment.create", f"experiment:{experiment}")
        tx.session.add(
            t.Run(
                id=run_id,
                experiment_id=exp.id,
                name=name,
                status="running",
                actor=client.actor,
                start_time=utcnow(),
                environment=environment,
            )
        )
        for key, value in (tags or {}).items():
            tx.session.add(t.Tag(run_id=run_id, key=key, value=str(value)))
        tx.audit(
            "run.create",
            f"run:{run_id}",
            after={"experiment": experiment, "commit": git["commit"], "dirty": git["dirty"]},
        )
    run = Run(client, run_id, experiment)
    try:
        yield run
    except BaseException as exc:
        _finish(client, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    _finish(client, run_id, "finished", None)


def _finish(client: Client, run_id: str, status: str, error: str | None) -> None:
    with client.write() as tx:
        row = tx.session.get_one(t.Run, run_id)
        row.status, row.error, row.end_time = status, error, utcnow()
        tx.audit(
            f"run.{'finish' if status == 'finished' else 'fail'}",
            f"run:{run_id}",
            before={"status": "running"},
            after={"status": status, "error": error},
        )


def _run_info(session: Any, row: t.Run) -> RunInfo:
    exp = session.get_one(t.Experiment, row.experiment_id)
    params = {
        p.key: p.value for p in session.scalars(select(t.Param).where(t.Param.run_id == row.id))
    }
    metrics: dict[str, float] = {}
    for m in session.scalars(
        select(t.Metric).where(t.Metric.run_id == row.id).order_by(t.Metric.step, t.Metric.id)
    ):
        metrics[m.key] = m.value  # the last value of each metric
    tags = {g.key: g.value for g in session.scalars(select(t.Tag).where(t.Tag.run_id == row.id))}
    datasets = [
        DatasetInfo(d.name, d.content_hash, d.blob_digest, d.num_rows, d.schema, ri.role)
        for ri, d in session.execute(
            select(t.RunInput, t.Dataset)
            .join(t.Dataset, t.Dataset.id == t.RunInput.dataset_id)
            .where(t.RunInput.run_id == row.id)
        )
    ]
    arts = list(session.scalars(select(t.Artifact).where(t.Artifact.run_id == row.id)))
    return RunInfo(
        id=row.id,
        experiment=exp.name,
        name=row.name,
        status=row.status,
        error=row.error,
        actor=row.actor,
        start_time=utc(row.start_time),
        end_time=utc(row.end_time) if row.end_time else None,
        environment=row.environment,
        params=params,
        metrics=metrics,
        tags=tags,
        datasets=datasets,
        artifacts={a.path: a.digest for a in arts if a.kind == "file"},
        models={a.path: a.digest for a in arts if a.kind == "model"},
    )


def get_run(run_id: str, *, client: Client | None = None) -> RunInfo:
    client = client or get_client()
    if client.remote:
        from shipway.remote import tracking as remote

        return remote.get_run(run_id, client=client)
    with client.store.read() as session:
        row = session.get(t.Run, run_id)
        if row is None:
            matches = session.scalars(
                select(t.Run.id).where(t.Run.id.startswith(run_id, autoescape=True)).limit(2)
            ).all()
            if len(matches) == 1 and len(run_id) >= 4:  # a unique prefix, as with git
                row = session.get_one(t.Run, matches[0])
            else:
                recent = session.scalars(
                    select(t.Run.id).order_by(t.Run.start_time.desc()).limit(20)
                ).all()
                raise NotFoundError.missing("run", run_id, recent)
        return _run_info(session, row)


def list_runs(
    experiment: str | None = None,
    *,
    tag: str | None = None,
    limit: int = 100,
    client: Client | None = None,
) -> list[RunInfo]:
    """The newest runs first (ties by id), of one experiment and with one tag (`KEY=VALUE`)
    when given."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import tracking as remote

        return remote.list_runs(experiment, tag=tag, limit=limit, client=client)
    with client.store.read() as session:
        query = runs_query(session, experiment, tag).limit(limit)
        return [_run_info(session, row) for row in session.scalars(query)]


def runs_query(session: Any, experiment: str | None, tag: str | None) -> Any:
    """The runs `list_runs` and the team server list, newest first, ties by id (so pages
    neither overlap nor skip)."""
    query = select(t.Run).order_by(t.Run.start_time.desc(), t.Run.id.desc())
    if experiment is not None:
        exp = session.scalar(select(t.Experiment).where(t.Experiment.name == experiment))
        if exp is None:
            names = session.scalars(select(t.Experiment.name)).all()
            raise NotFoundError.missing("experiment", experiment, names)
        query = query.where(t.Run.experiment_id == exp.id)
    if tag is not None:
        key, eq, value = tag.partition("=")
        if not eq or not key:
            raise InvalidInputError(f"Cannot read the tag filter '{tag}'.", "Write KEY=VALUE.")
        tagged = select(t.Tag.run_id).where(t.Tag.key == key, t.Tag.value == value)
        query = query.where(t.Run.id.in_(tagged))
    return query


def link_dataset(
    tx: Transaction,
    run_id: str,
    name: str,
    content_hash: str,
    blob_digest: str,
    schema: list[dict[str, Any]],
    num_rows: int,
    role: str,
) -> t.Dataset:
    """Link a dataset to a run, creating (and auditing) it the first time its name and content
    hash are seen. Used by `Run.log_dataset` and by the team server for remote runs."""
    ds = tx.session.scalar(
        select(t.Dataset).where(t.Dataset.name == name, t.Dataset.content_hash == content_hash)
    )
    if ds is None:
        ds = t.Dataset(
            name=name,
            content_hash=content_hash,
            blob_digest=blob_digest,
            schema=schema,
            num_rows=num_rows,
            created_at=utcnow(),
        )
        tx.session.add(ds)
        tx.session.flush()
        tx.audit(
            "dataset.create",
            f"dataset:{name}",
            after={"content_hash": content_hash, "rows": num_rows},
        )
    tx.session.merge(t.RunInput(run_id=run_id, dataset_id=ds.id, role=role))
    return ds
