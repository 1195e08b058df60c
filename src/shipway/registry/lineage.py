"""Lineage: what made a model version, and every move of its model's aliases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from shipway.client import Client, get_client
from shipway.registry.registry import _info, _resolve
from shipway.registry.uri import parse
from shipway.store import tables as t
from shipway.store import utc
from shipway.tracking.run import _run_info


def lineage(uri: str, *, client: Client | None = None) -> dict[str, Any]:
    client = client or get_client()
    with client.store.read() as session:
        model, mv = _resolve(session, parse(uri))
        version = _info(session, model, mv).to_dict()
        from shipway.packaging.images import images_of

        built = [i.to_dict() for i in images_of(session, model, mv)]
        run = _run_info(session, session.get_one(t.Run, mv.run_id)) if mv.run_id else None
        events = session.scalars(
            select(t.AuditEvent)
            .where(
                or_(
                    t.AuditEvent.subject == f"model:{model.name}",
                    t.AuditEvent.subject.startswith(f"model:{model.name}@", autoescape=True),
                    t.AuditEvent.subject.startswith(f"model:{model.name}/", autoescape=True),
                )
            )
            .order_by(t.AuditEvent.seq)
        )
        history = [
            {
                "time": utc(e.time).isoformat(),
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject.removeprefix("model:"),
                "from": (e.before or {}).get("version"),
                "to": (e.after or {}).get("version"),
            }
            for e in events
            if e.action in ("alias.set", "alias.delete")
        ]
    env = run.environment if run else {}
    return {
        "model": version,
        "run": None
        if run is None
        else {
            "id": run.id,
            "experiment": run.experiment,
            "status": run.status,
            "actor": run.actor,
            "start_time": run.start_time.isoformat(),
            "end_time": run.end_time.isoformat() if run.end_time else None,
            "params": run.params,
            "metrics": run.metrics,
            "tags": run.tags,
        },
        "code": env.get("git"),
        "datasets": [d.to_dict() | {"schema": None} for d in run.datasets] if run else [],
        "environment": {
            "python": env.get("runtime", {}).get("python"),
            "platform": env.get("runtime", {}).get("platform"),
            "packages": env.get("packages"),
            "seeds": env.get("seeds"),
        },
        "alias_history": history,
        "images": built,
    }
