"""Sessions over the metadata database, and the one place every change goes through.

`Store.write()` is a unit of work: it holds the write lock, and every change made inside it
appends its audit event in the same transaction, so a change and its audit entry are
committed together or not at all (a killed process leaves neither).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shipway.store.engine import create_store_engine, migrate, take_write_lock


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """Datetimes come back naive from SQLite and in the session zone from PostgreSQL."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Transaction:
    session: Session
    actor: str
    source: str | None = None  # where the change came from (a client address), when known

    def audit(
        self,
        action: str,
        subject: str,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        from shipway.governance.audit import append_event

        append_event(self.session, self.actor, action, subject, before, after, source=self.source)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_store_engine(url)
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(shipway_write=True), expire_on_commit=False
        )

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write(self, actor: str, source: str | None = None) -> Iterator[Transaction]:
        """A unit of work whose audit entries name `actor` and, when given, `source`."""
        with self._write_sessions() as session, session.begin():
            take_write_lock(session.connection())
            yield Transaction(session, actor, source)

    def close(self) -> None:
        self.engine.dispose()
