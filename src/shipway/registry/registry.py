"""Registering models, resolving URIs, moving aliases, archiving and model cards.

Versions are numbered 1, 2, 3... per model, with no gaps: the number is taken under the store's
write lock in the same transaction that inserts the version, after every artefact is stored.
A process killed half-way leaves orphan blobs at worst, never a visible half-version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipway.client import Client, get_client
from shipway.errors import ConflictError, InvalidInputError, NotFoundError
from shipway.flavors import LoadedModel, load_from_manifest, save_to_store
from shipway.flavors.model import read_manifest
from shipway.records import LoggedModel, ModelVersionInfo, RegisteredModelInfo
from shipway.registry.uri import ModelRef, check_alias, check_name, parse
from shipway.store import tables as t
from shipway.store import utc, utcnow
from shipway.tracking.run import Run

CARD_FIELDS = ("description", "intended_use", "limitations", "ethical_considerations")


def _find_model(session: Session, name: str) -> t.RegisteredModel:
    row = session.scalar(select(t.RegisteredModel).where(t.RegisteredModel.name == name))
    if row is None:
        names = session.scalars(select(t.RegisteredModel.name)).all()
        raise NotFoundError.missing("model", name, names)
    return row


def _aliases_of(session: Session, version_id: int) -> list[str]:
    return sorted(session.scalars(select(t.Alias.alias).where(t.Alias.version_id == version_id)))


def _resolve(session: Session, ref: ModelRef) -> tuple[t.RegisteredModel, t.ModelVersion]:
    model = _find_model(session, ref.name)
    versions = select(t.ModelVersion).where(t.ModelVersion.model_id == model.id)
    if ref.alias is not None:
        alias = session.get(t.Alias, (model.id, ref.alias))
        if alias is None:
            names = session.scalars(select(t.Alias.alias).where(t.Alias.model_id == model.id))
            raise NotFoundError.missing("alias", ref.alias, names, of=f"model '{ref.name}'")
        return model, session.get_one(t.ModelVersion, alias.version_id)
    if ref.version is not None:
        row = session.scalar(versions.where(t.ModelVersion.version == ref.version))
        if row is None:
            existing = session.scalars(
                select(t.ModelVersion.version).where(t.ModelVersion.model_id == model.id)
            )
            raise NotFoundError.missing(
                "version", str(ref.version), [str(v) for v in existing], of=f"model '{ref.name}'"
            )
        return model, row
    row = session.scalar(
        versions.where(t.ModelVersion.archived.is_(False)).order_by(t.ModelVersion.version.desc())
    )
    if row is None:
        raise NotFoundError(f"Model '{ref.name}' has no live versions.")
    return model, row


def _info(session: Session, model: t.RegisteredModel, mv: t.ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=model.name,
        version=mv.version,
        run_id=mv.run_id,
        flavor=mv.flavor,
        manifest_digest=mv.manifest_digest,
        signature=mv.signature,
        card=mv.card,
        archived=mv.archived,
        aliases=_aliases_of(session, mv.id),
        created_by=mv.created_by,
        created_at=utc(mv.created_at),
    )


def _default_card(session: Session, run_id: str | None, description: str | None) -> dict[str, Any]:
    card: dict[str, Any] = dict.fromkeys(CARD_FIELDS)
    card["description"] = description
    card["metrics"], card["datasets"] = {}, []
    if run_id is not None:
        from shipway.tracking.run import _run_info

        run = _run_info(session, session.get_one(t.Run, run_id))
        card["metrics"] = run.metrics
        card["datasets"] = [
            {"name": d.name, "content_hash": d.content_hash, "rows": d.num_rows, "role": d.role}
            for d in run.datasets
        ]
    return card


def run_model_name(run_id: str, models: Mapping[str, str]) -> str:
    """Which of the models a run logged (name -> manifest digest) registering the run means:
    its only one, or the one called `model`; anything else is ambiguous or missing."""
    if not models:
        raise InvalidInputError(
            f"Run {run_id} has logged no model.", "Call run.log_model(model) first."
        )
    if len(models) > 1 and "model" not in models:
        raise InvalidInputError(
            f"Run {run_id} logged several models ({', '.join(sorted(models))}).",
            "Register one of them by URI: runs:/RUN_ID/NAME.",
        )
    return "model" if "model" in models else next(iter(models))


def _source_model(
    source: Run | LoggedModel | str | object, client: Client, input_example: Any
) -> LoggedModel:
    if isinstance(source, LoggedModel):
        return source
    if isinstance(source, Run):
        models = source.info().models
        name = run_model_name(source.id, models)
        return _logged(client, source.id, name, models[name])
    if isinstance(source, str):
        if not source.startswith("runs:/"):
            raise InvalidInputError(
                f"Cannot register '{source}'.", "Pass a run, a logged model or runs:/RUN_ID/NAME."
            )
        run_id, _, name = source.removeprefix("runs:/").partition("/")
        from shipway.tracking.run import get_run

        models = get_run(run_id, client=client).models
        name = name or "model"
        if name not in models:
            raise NotFoundError.missing("model", name, models, of=f"run {run_id}")
        return _logged(client, run_id, name, models[name])
    return save_to_store(client.artifacts, source, input_example=input_example)


def _logged(client: Client, run_id: str, name: str, digest: str) -> LoggedModel:
    manifest = read_manifest(client.artifacts, digest)
    return LoggedModel(digest, manifest["flavor"], manifest.get("signature"), run_id, name)


def register_model(
    source: Run | LoggedModel | str | object,
    name: str,
    *,
    description: str | None = None,
    input_example: Any = None,
    client: Client | None = None,
) -> ModelVersionInfo:
    """Register a new, immutable version of model `name`.

    `source` is a run (its logged model), a `LoggedModel`, a `runs:/RUN_ID/NAME` URI, or a
    model object, which is saved first.
    """
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.register_model(
            source, name, description=description, input_example=input_example, client=client
        )
    check_name(name)
    logged = _source_model(source, client, input_example)
    with client.write() as tx:
        model = tx.session.scalar(select(t.RegisteredModel).where(t.RegisteredModel.name == name))
        if model is None:
            model = t.RegisteredModel(name=name, description=description, created_at=utcnow())
            tx.session.add(model)
            tx.session.flush()
            tx.audit("model.create", f"model:{name}")
        last = tx.session.scalar(
            select(func.max(t.ModelVersion.version)).where(t.ModelVersion.model_id == model.id)
        )
        mv = t.ModelVersion(
            model_id=model.id,
            version=(last or 0) + 1,
            run_id=logged.run_id,
            manifest_digest=logged.manifest_digest,
            flavor=logged.flavor,
            signature=logged.signature,
            card=_default_card(tx.session, logged.run_id, description),
            archived=False,
            created_by=client.actor,
            created_at=utcnow(),
        )
        tx.session.add(mv)
        tx.session.flush()
        tx.audit(
            "model.register",
            f"model:{name}",
            after={"version": mv.version, "run_id": mv.run_id, "manifest": mv.manifest_digest},
        )
        return _info(tx.session, model, mv)


def get_model_version(uri: str, *, client: Client | None = None) -> ModelVersionInfo:
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.get_model_version(uri, client=client)
    with client.store.read() as session:
        return _info(session, *_resolve(session, parse(uri)))


def list_versions(name: str, *, client: Client | None = None) -> list[ModelVersionInfo]:
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.list_versions(name, client=client)
    with client.store.read() as session:
        model = _find_model(session, name)
        rows = session.scalars(
            select(t.ModelVersion)
            .where(t.ModelVersion.model_id == model.id)
            .order_by(t.ModelVersion.version)
        )
        return [_info(session, model, mv) for mv in rows]


def list_models(*, client: Client | None = None) -> list[RegisteredModelInfo]:
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.list_models(client=client)
    with client.store.read() as session:
        out = []
        for m in session.scalars(select(t.RegisteredModel).order_by(t.RegisteredModel.name)):
            versions = session.scalars(
                select(t.ModelVersion.version).where(t.ModelVersion.model_id == m.id)
            ).all()
            aliases = {
                a.alias: mv.version
                for a, mv in session.execute(
                    select(t.Alias, t.ModelVersion)
                    .join(t.ModelVersion, t.ModelVersion.id == t.Alias.version_id)
                    .where(t.Alias.model_id == m.id)
                )
            }
            out.append(
                RegisteredModelInfo(
                    m.name,
                    m.description,
                    max(versions, default=None),
                    len(versions),
                    dict(sorted(aliases.items())),
                    utc(m.created_at),
                )
            )
        return out


def load_model(uri: str, *, client: Client | None = None) -> LoadedModel:
    """Load a registered model: every file's digest is verified on the way."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.load_model(uri, client=client)
    info = get_model_version(uri, client=client)
    return load_from_manifest(client.artifacts, info.manifest_digest)


def set_alias(
    uri: str, alias: str, *, client: Client | None = None, approved: bool = False
) -> ModelVersionInfo:
    """Point `alias` at the version `uri` names (moving it if it exists).

    An alias named after an environment whose policy requires approval (`production`, by
    default) moves only to a version approved for it: ApprovalRequiredError otherwise.
    `approved=True` is for the deployment agent, whose move follows an approved deployment.
    """
    from shipway.governance.approvals import require_approval

    client = client or get_client()
    if client.remote:  # the server checks approvals itself (and `approved` is not for callers)
        from shipway.remote import registry as remote

        return remote.set_alias(uri, alias, client=client)
    check_alias(alias)
    with client.write() as tx:
        model, mv = _resolve(tx.session, parse(uri))
        if mv.archived:
            raise ConflictError(
                f"models:/{model.name}/{mv.version} is archived; an alias cannot point at it."
            )
        if not approved:
            require_approval(tx.session, alias, model.name, mv.version)
        row = tx.session.get(t.Alias, (model.id, alias))
        before = None
        if row is None:
            tx.session.add(t.Alias(model_id=model.id, alias=alias, version_id=mv.id))
        else:
            before = {"version": tx.session.get_one(t.ModelVersion, row.version_id).version}
            row.version_id = mv.id
        tx.session.flush()
        tx.audit("alias.set", f"model:{model.name}@{alias}", before, {"version": mv.version})
        return _info(tx.session, model, mv)


def delete_alias(name: str, alias: str, *, client: Client | None = None) -> None:
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.delete_alias(name, alias, client=client)
    with client.write() as tx:
        model, mv = _resolve(tx.session, ModelRef(check_name(name), alias=check_alias(alias)))
        tx.session.delete(tx.session.get_one(t.Alias, (model.id, alias)))
        tx.audit("alias.delete", f"model:{name}@{alias}", {"version": mv.version}, None)


def archive_version(uri: str, *, client: Client | None = None) -> ModelVersionInfo:
    """Archive a version: it stays readable for lineage but is no longer 'latest'."""
    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.archive_version(uri, client=client)
    with client.write() as tx:
        model, mv = _resolve(tx.session, parse(uri))
        aliases = _aliases_of(tx.session, mv.id)
        if aliases:
            raise ConflictError(
                f"models:/{model.name}/{mv.version} is still aliased as {', '.join(aliases)}.",
                "Move or delete those aliases first (shipway models alias).",
            )
        if not mv.archived:
            mv.archived = True
            tx.audit(
                "model.archive",
                f"model:{model.name}/{mv.version}",
                {"archived": False},
                {"archived": True},
            )
        return _info(tx.session, model, mv)


def update_model_card(
    uri: str,
    *,
    description: str | None = None,
    intended_use: str | None = None,
    limitations: str | None = None,
    ethical_considerations: str | None = None,
    client: Client | None = None,
) -> ModelVersionInfo:
    """Edit the prose of a version's model card; fields left as None are kept."""
    client = client or get_client()
    given = {
        "description": description,
        "intended_use": intended_use,
        "limitations": limitations,
        "ethical_considerations": ethical_considerations,
    }
    fields = {k: v for k, v in given.items() if v is not None}
    if client.remote:
        from shipway.remote import registry as remote

        return remote.update_model_card(uri, given, client=client)
    with client.write() as tx:
        model, mv = _resolve(tx.session, parse(uri))
        before = {k: mv.card.get(k) for k in fields}
        mv.card = {**mv.card, **fields}
        tx.audit("model.card", f"model:{model.name}/{mv.version}", before, fields)
        return _info(tx.session, model, mv)
