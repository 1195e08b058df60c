"""A monitoring job: load the reference and the window a :class:`MonitorSpec` names, run, store.

This is what ``shipway monitor run`` and ``shipway monitor watch`` do, as a function:
either a model URI (reference = its training data, current = a window of its prediction
log or a file) or two plain files with no model registered.

Through a team server the job runs there, where the prediction log and the reference profiles
are (:mod:`shipway.remote.monitoring` uploads any local file first); the spec is checked here
first either way, so a bad one fails the same way before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from shipway.client import Client, get_client
from shipway.errors import InvalidInputError
from shipway.monitoring.history import save_result
from shipway.monitoring.monitor import AlertPolicy, Roles, monitor
from shipway.monitoring.result import MonitorResult, Source
from shipway.monitoring.sources import model_reference, prediction_window, read_table

__all__ = ["MonitorSpec", "check_spec", "run_job"]


@dataclass(frozen=True)
class MonitorSpec:
    """What to compare. Either ``model_uri`` or ``reference`` (a file) must be given."""

    model_uri: str | None = None
    reference: Path | None = None
    current: Path | None = None
    window: timedelta | None = None
    since: datetime | None = None
    rows: int | None = None
    roles: Roles = field(default_factory=Roles)
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    freq: str | None = None
    store: bool = True


def run_job(spec: MonitorSpec, *, client: Client | None = None) -> MonitorResult:
    """Run ``spec`` once; the result is stored unless ``spec.store`` is false."""
    client = client or get_client()
    check_spec(spec)
    if client.remote:
        from shipway.remote import monitoring as remote

        return remote.run_job(spec, client=client)
    result = _model_job(spec, client) if spec.model_uri is not None else _file_job(spec)
    if spec.store:
        save_result(result, client=client)
    return result


def check_spec(spec: MonitorSpec) -> None:
    """Refuse a spec that names nothing to compare, or too much."""
    if spec.rows is not None and spec.rows < 1:
        raise InvalidInputError(f"--rows must be at least 1, got {spec.rows}.")
    if spec.model_uri is not None and spec.reference is not None:
        raise InvalidInputError(
            "Give either a model or --reference, not both.",
            "With a model, the reference is its training dataset.",
        )
    if spec.model_uri is None and (spec.reference is None or spec.current is None):
        raise InvalidInputError(
            "Nothing to monitor.",
            "Name a model (models:/NAME@ALIAS) or give --reference and --current files.",
        )


def _file_job(spec: MonitorSpec) -> MonitorResult:
    assert spec.reference is not None and spec.current is not None
    reference = read_table(spec.reference, "reference")
    current = read_table(spec.current, "current")
    if spec.rows is not None:
        current = current.tail(spec.rows)
    return monitor(
        reference,
        current,
        roles=spec.roles,
        policy=spec.policy,
        reference_source=Source(kind="file", description=str(spec.reference), rows=len(reference)),
        current_source=Source(kind="file", description=str(spec.current), rows=len(current)),
        freq=spec.freq,
    )


def _model_job(spec: MonitorSpec, client: Client) -> MonitorResult:
    assert spec.model_uri is not None
    ref = model_reference(spec.model_uri, target=spec.roles.target, client=client)
    roles = replace(
        spec.roles,
        target=ref.target,
        prediction=spec.roles.prediction or "prediction",
        scores=spec.roles.scores or ref.scores,
    )
    if spec.current is not None:
        current = read_table(spec.current, "current")
        if spec.rows is not None:
            current = current.tail(spec.rows)
        source = Source(kind="file", description=str(spec.current), rows=len(current))
        if roles.prediction not in current:  # plain inputs: no outputs to check
            roles = replace(roles, prediction=None, scores=())
    else:
        current, source = prediction_window(
            ref.model,
            version=ref.version,
            target=ref.target,
            window=spec.window,
            since=spec.since,
            rows=spec.rows,
            client=client,
        )
        roles = replace(roles, time=roles.time or "time")
    return monitor(
        ref.profile,
        current,
        roles=roles,
        policy=spec.policy,
        features=[c for c in ref.inputs if c in ref.profile.column_names],
        model=ref.model,
        version=ref.version,
        reference_source=ref.source,
        current_source=source,
        freq=spec.freq,
        performance_reference=ref.performance_reference,
    )
