"""Opening the metadata store: migrations on open, SQLite settings, bad database URLs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sklearn.dummy import DummyClassifier

import shipway
from shipway.store import engine as store_engine
from shipway.store.tables import Base

EXPECTED_TABLES = {
    "alembic_version",
    "aliases",
    "api_tokens",
    "approval_policies",
    "approvals",
    "pipeline_runs",
    "audit_events",
    "datasets",
    "deployments",
    "experiments",
    "metrics",
    "model_images",
    "model_versions",
    "monitor_runs",
    "params",
    "reference_profiles",
    "rollouts",
    "registered_models",
    "run_artifacts",
    "run_inputs",
    "runs",
    "tags",
    "users",
}


def _head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(store_engine.MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def _inspect(url: str) -> tuple[set[str], list[str]]:
    """Tables and alembic revisions, read through an engine independent of Shipway's."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            revisions = (
                list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
                if "alembic_version" in tables
                else []
            )
    finally:
        engine.dispose()
    return tables, revisions


def _tiny_model() -> DummyClassifier:
    return DummyClassifier(strategy="most_frequent").fit([[0.0], [1.0]], [0, 1])


def test_the_table_list_matches_the_models() -> None:
    # Guards EXPECTED_TABLES: a new table must get a migration and a place here.
    assert {*Base.metadata.tables, "alembic_version"} == EXPECTED_TABLES


def test_a_fresh_database_is_migrated_to_head_on_open(backend: shipway.Client) -> None:
    url = backend.settings.resolved_database_url
    assert _inspect(url) == (set(), [])  # nothing exists before the store is opened

    backend.store  # noqa: B018 - opening the store is the action under test
    tables, revisions = _inspect(url)

    assert tables == EXPECTED_TABLES
    assert revisions == [_head_revision()]


def test_opening_an_existing_store_again_changes_nothing(backend: shipway.Client) -> None:
    first = shipway.register_model(_tiny_model(), "kept", client=backend)
    url = backend.settings.resolved_database_url
    before = _inspect(url)

    for _ in range(2):
        again = shipway.Client()
        try:
            versions = shipway.list_versions("kept", client=again)
            report = shipway.verify_audit(client=again)
        finally:
            again.store.close()
        assert [(v.version, v.manifest_digest) for v in versions] == [(1, first.manifest_digest)]
        assert report.ok
        assert report.checked == 2  # model.create + model.register, nothing added by opening
        assert _inspect(url) == before


def test_the_store_opens_where_the_settings_point(
    backend: shipway.Client, shipway_home: Path
) -> None:
    shipway.register_model(_tiny_model(), "where", client=backend)
    sqlite_file = shipway_home / "shipway.db"
    if backend.store.engine.dialect.name == "sqlite":
        assert backend.settings.resolved_database_url == f"sqlite:///{sqlite_file}"
        assert sqlite_file.is_file()
    else:
        assert not sqlite_file.exists()  # PostgreSQL configured: no stray SQLite file
        tables, _ = _inspect(backend.settings.resolved_database_url)
        assert "model_versions" in tables


def test_sqlite_uses_wal(shipway_home: Path) -> None:
    client = shipway.Client()
    try:
        shipway.register_model(_tiny_model(), "wal", client=client)
        with client.store.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    finally:
        client.store.close()
    assert mode == "wal"
    assert foreign_keys == 1
    # WAL is a property of the database file: an unrelated connection sees it too.
    raw = sqlite3.connect(shipway_home / "shipway.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_a_plain_postgresql_url_uses_the_shipped_driver(
    shipway_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    assert plain != postgres_url
    monkeypatch.setenv("SHIPWAY_DATABASE_URL", plain)
    client = shipway.Client()
    try:
        version = shipway.register_model(_tiny_model(), "plain-url", client=client)
        assert client.store.engine.dialect.driver == "psycopg"
    finally:
        client.store.close()
    assert version.version == 1


@pytest.mark.parametrize(
    "url",
    [
        "not a database url",
        "://nothing",
        "mysql://user@localhost/shipway",
        "oracle+oracledb://scott@localhost/xe",
    ],
)
def test_an_invalid_database_url_is_invalid_input(
    url: str, shipway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWAY_DATABASE_URL", url)
    client = shipway.Client()
    with pytest.raises(shipway.InvalidInputError) as excinfo:
        client.store  # noqa: B018 - opening the store is the action under test
    assert "SHIPWAY_DATABASE_URL" in str(excinfo.value)
    assert not (shipway_home / "shipway.db").exists()  # no fallback to the default store


def test_an_invalid_database_url_fails_module_level_calls_too(
    shipway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWAY_DATABASE_URL", "definitely not a url")
    with pytest.raises(shipway.InvalidInputError):
        shipway.list_models()


def test_the_migrations_build_exactly_the_tables_the_models_declare(
    backend: shipway.Client,
) -> None:
    # Alembic's autogenerate comparison: any column, index, constraint or type that the
    # models and the migrations disagree on shows up as a difference.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    backend.store  # noqa: B018 - opening the store runs the migrations
    engine = sa.create_engine(backend.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
