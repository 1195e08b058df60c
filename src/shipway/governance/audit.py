"""The append-only, hash-chained audit log.

Each entry's hash covers its own fields and the previous entry's hash, so editing, deleting
or reordering any entry breaks the chain from that point on; `verify` names the first break.

An entry's `source` (the client address, for changes made through the team server) is hashed
only when it is set, so entries written before sources existed hash, and verify, as they did.
`export` writes the chain as JSON Lines carrying everything needed to re-check it elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipway.records import AuditEntry
from shipway.store.store import utc, utcnow
from shipway.store.tables import AuditEvent

GENESIS = "0" * 64


def entry_hash(
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    subject: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    prev_hash: str,
    source: str | None = None,
) -> str:
    body: dict[str, Any] = {
        "seq": seq,
        "time": utc(time).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "before": before,
        "after": after,
        "prev": prev_hash,
    }
    if source is not None:
        body["source"] = source
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append_event(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    source: str | None = None,
) -> AuditEvent:
    """Append one entry. The caller holds the store's write lock, so the chain stays linear."""
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    # Round-trip JSON now so the hash covers exactly what the database will give back.
    before = json.loads(json.dumps(before, default=str)) if before is not None else None
    after = json.loads(json.dumps(after, default=str)) if after is not None else None
    source = source[:100] if source is not None else None  # the column's width
    now = utcnow()
    event = AuditEvent(
        seq=seq,
        time=now,
        actor=actor,
        action=action,
        subject=subject,
        before=before,
        after=after,
        prev_hash=prev,
        hash=entry_hash(seq, now, actor, action, subject, before, after, prev, source),
        source=source,
    )
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(session: Session) -> VerifyReport:
    """Walk the chain in order and report the first entry that was altered, removed or moved."""
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for ev in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)):
        if ev.seq != expected_seq:
            return VerifyReport(
                False,
                checked,
                expected_seq,
                f"entry {expected_seq} is missing (next entry is {ev.seq}): removed",
            )
        if ev.prev_hash != expected_prev:
            return VerifyReport(
                False,
                checked,
                ev.seq,
                f"entry {ev.seq} does not follow entry {ev.seq - 1}: removed or reordered",
            )
        recomputed = entry_hash(
            ev.seq,
            ev.time,
            ev.actor,
            ev.action,
            ev.subject,
            ev.before,
            ev.after,
            ev.prev_hash,
            ev.source,
        )
        if recomputed != ev.hash:
            return VerifyReport(False, checked, ev.seq, f"entry {ev.seq} ({ev.action}) was altered")
        expected_prev, expected_seq, checked = ev.hash, ev.seq + 1, checked + 1
    return VerifyReport(True, checked)


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def audit_log(
    *, limit: int = 100, subject: str | None = None, client: Any = None
) -> list[AuditEntry]:
    """The newest `limit` audit entries, oldest first."""
    from shipway.client import get_client

    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.audit_log(limit, subject, client=client)
    with client.store.read() as session:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
        if subject:
            query = query.where(AuditEvent.subject.startswith(subject, autoescape=True))
        rows = list(session.scalars(query))
    return [
        AuditEntry(
            e.seq, utc(e.time), e.actor, e.action, e.subject, e.before, e.after, e.hash, e.source
        )
        for e in reversed(rows)
    ]


def verify_audit(*, client: Any = None) -> VerifyReport:
    """Check the whole hash chain."""
    from shipway.client import get_client

    client = client or get_client()
    if client.remote:
        from shipway.remote import registry as remote

        return remote.verify_audit(client=client)
    with client.store.read() as session:
        return verify(session)


def export_line(ev: AuditEvent) -> str:
    """One entry as a JSON line, its `time` exactly as hashed so the chain can be re-checked."""
    return json.dumps(
        {
            "seq": ev.seq,
            "time": utc(ev.time).isoformat(timespec="microseconds"),
            "actor": ev.actor,
            "source": ev.source,
            "action": ev.action,
            "subject": ev.subject,
            "before": ev.before,
            "after": ev.after,
            "prev_hash": ev.prev_hash,
            "hash": ev.hash,
        },
        separators=(",", ":"),
        default=str,
    )


def _lines(session: Session, since_seq: int | None) -> Iterator[str]:
    query = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=500)
    if since_seq is not None:
        query = query.where(AuditEvent.seq > since_seq)
    for ev in session.scalars(query):
        yield export_line(ev) + "\n"


def export(
    path_or_stream: str | os.PathLike[str] | IO[str],
    *,
    since_seq: int | None = None,
    client: Any = None,
) -> int:
    """Write the audit log as JSON Lines, oldest first; returns how many entries were written.

    Each line holds seq, time, actor, source, action, subject, before, after, prev_hash and
    hash. `since_seq` keeps only the entries after that one: pass the last seq of a previous
    export to continue it. A path is written whole or not at all (a temporary file renamed).
    """
    from shipway.client import get_client

    client = client or get_client()
    if not isinstance(path_or_stream, str | os.PathLike):
        with client.store.read() as session:
            return _write(path_or_stream, _lines(session, since_seq))
    path = Path(path_or_stream)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh, client.store.read() as session:
            written = _write(fh, _lines(session, since_seq))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


def _write(stream: IO[str], lines: Iterator[str]) -> int:
    written = 0
    for line in lines:
        stream.write(line)
        written += 1
    stream.flush()
    return written
