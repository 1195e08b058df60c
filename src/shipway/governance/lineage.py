"""Lineage: which version is live, where and since when, and everything that made it.

The registry's lineage (run, code commit, datasets, environment lock, images, alias history)
plus what happened to the version after it was registered: the environments running it, the
approvals that let it there (who decided, under which policy), and the latest monitoring
result of the model. This is the answer to "which version is live, and what data and code
made it?". A version trained by `shipway pipeline run` or `shipway retrain` also leads to
that pipeline run and how each of its stages went.
"""

from __future__ import annotations

from typing import Any

from shipway.client import Client, get_client
from shipway.registry.lineage import lineage as version_lineage

__all__ = ["lineage"]


def lineage(uri: str, *, client: Client | None = None) -> dict[str, Any]:
    """Everything about the version ``uri`` names (see the module docstring), as plain data."""
    from shipway.deploy.records import list_deployments
    from shipway.governance.approvals import list_approvals
    from shipway.monitoring.history import list_results

    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.lineage(uri, client=client)
    data = version_lineage(uri, client=client)
    name, version = data["model"]["name"], data["model"]["version"]
    deployments = [d for d in list_deployments(client=client) if d.model == name]
    data["deployments"] = [
        {
            "environment": d.environment,
            "live_version": d.live_version,
            "since": d.since.isoformat(),
            "status": d.status,
            "url": d.url,
            "runtime": d.runtime,
            "image": d.image,
            "this_version": d.live_version == version,
        }
        for d in deployments
    ]
    data["live_in"] = [
        d.environment for d in deployments if d.live_version == version and d.status != "stopped"
    ]
    data["approvals"] = [
        a.to_dict()
        for a in list_approvals(client=client)
        if a.model == name and a.version == version
    ]
    data["pipeline"] = _pipeline(data, client)
    latest = list_results(name, limit=1, client=client)
    data["monitoring"] = (
        None
        if not latest
        else {
            "result": latest[0].id,
            "time": latest[0].created_at.isoformat(),
            "version": latest[0].version,
            "rows": latest[0].current.rows,
            "drifted_features": latest[0].drift.drifted_columns,
            "dataset_drift": latest[0].drift.drifted,
            "worst_alert": latest[0].worst,
        }
    )
    return data


def _pipeline(data: dict[str, Any], client: Client) -> dict[str, Any] | None:
    """The pipeline run whose train stage made the version (its run's `pipeline_run` tag)."""
    from shipway.errors import NotFoundError
    from shipway.pipeline.records import get_pipeline_run

    run_id = ((data.get("run") or {}).get("tags") or {}).get("pipeline_run")
    if not run_id:
        return None
    try:
        found = get_pipeline_run(run_id, client=client)
    except NotFoundError:
        return {"id": run_id, "missing": True}
    return {
        "id": found.id,
        "trigger": found.trigger,
        "status": found.status,
        "commit": found.commit,
        "branch": found.branch,
        "started_at": found.started_at.isoformat(),
        "stages": {s.name: s.status for s in found.stages},
    }
