"""Monitoring results and reference profiles kept in the store.

Results go in one table with a summary to list by and the whole result as JSON; saving one
is an audited change (``monitor.run``), like every other write. Profiles are content in the
artefact store, found by a key that names everything they were computed from.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import func, select

from shipway.client import Client, get_client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.monitoring.profile import Profile
from shipway.monitoring.result import MonitorResult
from shipway.store import tables as t
from shipway.store import utcnow

__all__ = ["get_result", "latest_results", "list_results", "save_result", "stored_profile"]


def save_result(result: MonitorResult, *, client: Client | None = None) -> None:
    client = client or get_client()
    with client.write() as tx:
        tx.session.add(
            t.MonitorRun(
                id=result.id,
                model=result.model,
                version=result.version,
                created_by=client.actor,
                created_at=result.created_at,
                current_rows=result.current.rows,
                n_drifted=result.drift.n_drifted,
                n_tested=result.drift.n_tested,
                dataset_drifted=result.drift.drifted,
                worst=result.worst,
                result=result.to_dict(),
            )
        )
        tx.audit(
            "monitor.run",
            f"monitor:{result.model or '(files)'}",
            after={
                "id": result.id,
                "version": result.version,
                "drifted": result.drift.drifted_columns,
                "alerts": len(result.alerts),
            },
        )


def get_result(result_id: str, *, client: Client | None = None) -> MonitorResult:
    """The stored result with this id, or the one whose id starts with it."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.get_result(result_id, client=client)
    with client.store.read() as session:
        row = session.get(t.MonitorRun, result_id)
        if row is None and result_id:
            matches = session.scalars(
                select(t.MonitorRun).where(t.MonitorRun.id.startswith(result_id, autoescape=True))
            ).all()
            if len(matches) > 1:
                raise InvalidInputError(
                    f"'{result_id}' is the start of {len(matches)} result ids.",
                    "Give more of the id.",
                )
            row = matches[0] if matches else None
        if row is None:
            recent = session.scalars(
                select(t.MonitorRun.id).order_by(t.MonitorRun.created_at.desc()).limit(5)
            ).all()
            raise NotFoundError.missing("monitoring result", result_id, list(recent))
        return MonitorResult.from_dict(row.result)


def list_results(
    model: str | None = None, *, limit: int = 50, client: Client | None = None
) -> list[MonitorResult]:
    """Results, newest first; of one model when ``model`` is given."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.list_results(model, limit=limit, client=client)
    query = (
        select(t.MonitorRun.result)
        .order_by(t.MonitorRun.created_at.desc(), t.MonitorRun.id.desc())
        .limit(limit)
    )
    if model is not None:
        query = query.where(t.MonitorRun.model == model)
    with client.store.read() as session:
        return [MonitorResult.from_dict(r) for r in session.scalars(query)]


def latest_results(*, client: Client | None = None) -> list[MonitorResult]:
    """The newest result of each model (model-less runs count as one model), by model name."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import operations as remote

        return remote.latest_results(client=client)
    newest = (
        select(t.MonitorRun.model, func.max(t.MonitorRun.created_at).label("at"))
        .group_by(t.MonitorRun.model)
        .subquery()
    )
    query = (
        select(t.MonitorRun.result)
        .join(
            newest,
            (t.MonitorRun.model.is_not_distinct_from(newest.c.model))
            & (t.MonitorRun.created_at == newest.c.at),
        )
        .order_by(t.MonitorRun.model)
    )
    with client.store.read() as session:
        seen: set[str | None] = set()
        results = []
        for data in session.scalars(query):
            result = MonitorResult.from_dict(data)
            if result.model not in seen:  # two runs in the same microsecond: keep one
                seen.add(result.model)
                results.append(result)
        return results


def stored_profile(
    key: str,
    compute: Callable[[], Profile],
    *,
    dataset_id: int | None = None,
    client: Client | None = None,
) -> Profile:
    """The profile stored under ``key``, computing and storing it on first use."""
    client = client or get_client()
    with client.store.read() as session:
        digest = session.scalar(
            select(t.ReferenceProfile.blob_digest).where(t.ReferenceProfile.key == key)
        )
    if digest is not None:
        return Profile.from_dict(json.loads(client.artifacts.get_bytes(digest)))
    computed = compute()
    digest = client.artifacts.put_bytes(json.dumps(computed.to_dict()).encode())
    with client.write() as tx:
        exists = tx.session.scalar(
            select(t.ReferenceProfile.id).where(t.ReferenceProfile.key == key)
        )
        if exists is None:  # another process may have stored it meanwhile: same content
            tx.session.add(
                t.ReferenceProfile(
                    key=key, dataset_id=dataset_id, blob_digest=digest, created_at=utcnow()
                )
            )
    return computed
