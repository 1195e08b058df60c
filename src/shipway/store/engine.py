"""Opening the metadata database: engine settings per backend, and migrations applied on open.

Writers are serialised on purpose. SQLite takes its write lock up front (`BEGIN IMMEDIATE`),
PostgreSQL a transaction-scoped advisory lock. One writer at a time keeps version numbers
gapless and the audit hash chain linear without retry loops, and metadata writes are small.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from shipway.errors import InvalidInputError

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE_LOCK_KEY = 7_465_301  # any constant: the advisory lock that serialises writers


def create_store_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidInputError(
            f"SHIPWAY_DATABASE_URL '{url}' is not a database URL.",
            "Use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB.",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":  # psycopg 3 is the driver we ship, not psycopg2
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise InvalidInputError(
        f"Unsupported database '{parsed.get_backend_name()}' in SHIPWAY_DATABASE_URL.",
        "Shipway supports SQLite and PostgreSQL.",
    )


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        _use_wal(database)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("shipway_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(database: str) -> None:
    """Put the database file in WAL mode (a property of the file) once, before any other use.

    Switching a file to WAL takes an exclusive lock without waiting on the busy timeout, so
    two processes opening a fresh store at once could fail with "database is locked". The
    switch is made under a file lock instead, before this process reads or writes anything.
    """
    with _file_lock(database):
        conn = sqlite3.connect(database, timeout=60)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()


@contextlib.contextmanager
def _file_lock(database: str) -> Iterator[None]:
    """The lock beside a SQLite store file that its WAL switch and its migrations take."""
    with open(f"{database}.migrate.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def take_write_lock(conn: Any) -> None:
    """Serialise writers on PostgreSQL (SQLite already did, with BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _WRITE_LOCK_KEY})


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Keep two processes opening a fresh store from migrating it at the same time."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _file_lock(engine.url.database):
            yield
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _WRITE_LOCK_KEY + 1})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _WRITE_LOCK_KEY + 1})
                conn.commit()
    else:
        yield


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    # A write transaction from the start, so SQLite never has to upgrade a read lock mid-way.
    with _migration_lock(engine), engine.execution_options(shipway_write=True).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
