"""The hash-chained audit log: what it records, and that tampering with it is detected."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

import shipway
from serving_helpers import run_cli
from shipway import AuditEntry
from shipway.client import get_client
from shipway.governance.audit import GENESIS, entry_hash, export
from shipway.store.tables import AuditEvent


def _model(c: float = 1.0) -> LogisticRegression:
    X = np.arange(40.0).reshape(20, 2)
    y = (X[:, 0] > 19).astype(int)
    return LogisticRegression(C=c).fit(X, y)


def _history(client: shipway.Client) -> list[AuditEntry]:
    return shipway.audit_log(limit=10_000, client=client)


def _changes(client: shipway.Client) -> list[AuditEntry]:
    """A history touching every kind of change; returns the entries it appended."""
    with shipway.start_run(experiment="audit", client=client) as run:
        run.log_model(_model())
    v1 = shipway.register_model(run, "credit", client=client)
    v2 = shipway.register_model(_model(0.5), "credit", client=client)
    shipway.set_alias(v1.uri, "champion", client=client)
    shipway.set_alias(v2.uri, "champion", client=client)
    shipway.archive_version(v1.uri, client=client)
    with pytest.raises(RuntimeError), shipway.start_run(experiment="audit", client=client):
        raise RuntimeError("diverged")
    return _history(client)


def _execute(client: shipway.Client, sql: str, **params: Any) -> int:
    """Raw SQL straight at the database, the way someone tampering with it would."""
    with client.store.engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount


def _renumber(client: shipway.Client, old: int, new: int) -> None:
    _execute(client, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=new, old=old)


def _json_param(client: shipway.Client) -> str:
    return "CAST(:value AS JSON)" if client.store.engine.dialect.name == "postgresql" else ":value"


def test_every_change_appends_an_event_with_actor_and_before_after(
    backend: shipway.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside any git checkout: the runs record no commit
    entries = _changes(backend)
    runs = [e.subject for e in entries if e.action == "run.create"]
    assert len(runs) == 2
    ok_run, failed_run = runs
    v1 = shipway.get_model_version("models:/credit/1", client=backend)
    v2 = shipway.get_model_version("models:/credit/2", client=backend)
    created = {"experiment": "audit", "commit": None, "dirty": None}

    assert [(e.action, e.subject, e.before, e.after) for e in entries] == [
        ("experiment.create", "experiment:audit", None, None),
        ("run.create", ok_run, None, created),
        ("run.finish", ok_run, {"status": "running"}, {"status": "finished", "error": None}),
        ("model.create", "model:credit", None, None),
        (
            "model.register",
            "model:credit",
            None,
            {"version": 1, "run_id": v1.run_id, "manifest": v1.manifest_digest},
        ),
        (
            "model.register",
            "model:credit",
            None,
            {"version": 2, "run_id": None, "manifest": v2.manifest_digest},
        ),
        ("alias.set", "model:credit@champion", None, {"version": 1}),
        ("alias.set", "model:credit@champion", {"version": 1}, {"version": 2}),
        ("model.archive", "model:credit/1", {"archived": False}, {"archived": True}),
        ("run.create", failed_run, None, created),
        (
            "run.fail",
            failed_run,
            {"status": "running"},
            {"status": "failed", "error": "RuntimeError: diverged"},
        ),
    ]
    assert ok_run == f"run:{v1.run_id}"
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert {e.actor for e in entries} == {backend.actor}
    times = [e.time for e in entries]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert len({e.hash for e in entries}) == len(entries)


def test_a_refused_change_appends_nothing(backend: shipway.Client) -> None:
    v1 = shipway.register_model(_model(), "guarded", client=backend)
    shipway.set_alias(v1.uri, "champion", client=backend)
    before = _history(backend)

    with pytest.raises(shipway.ConflictError):
        shipway.archive_version(v1.uri, client=backend)  # still aliased
    with pytest.raises(shipway.NotFoundError):
        shipway.set_alias("models:/guarded/7", "champion", client=backend)

    assert _history(backend) == before
    assert shipway.get_model_version(v1.uri, client=backend).archived is False


def test_audit_log_filters_and_limits(backend: shipway.Client) -> None:
    entries = _changes(backend)
    credit = shipway.audit_log(subject="model:credit", limit=100, client=backend)
    last_two = shipway.audit_log(limit=2, client=backend)

    assert credit == [e for e in entries if e.subject.startswith("model:credit")]
    assert last_two == entries[-2:]


def test_verify_accepts_an_intact_chain(backend: shipway.Client) -> None:
    assert shipway.verify_audit(client=backend).ok  # an empty log is intact
    entries = _changes(backend)

    report = shipway.verify_audit(client=backend)

    assert report.ok
    assert report.checked == len(entries)
    assert report.first_bad_seq is None
    assert report.problem is None


def test_editing_an_entrys_after_is_reported_as_altered(backend: shipway.Client) -> None:
    entries = _changes(backend)
    target = next(e for e in entries if e.action == "model.register" and e.after["version"] == 2)
    forged = {**target.after, "manifest": "0" * 64}

    changed = _execute(
        backend,
        f'UPDATE audit_events SET "after" = {_json_param(backend)} WHERE seq = :seq',
        value=json.dumps(forged),
        seq=target.seq,
    )
    assert changed == 1
    assert next(e for e in _history(backend) if e.seq == target.seq).after == forged
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == target.seq
    assert report.checked == target.seq - 1
    assert report.problem is not None
    assert "altered" in report.problem
    assert str(target.seq) in report.problem


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "someone-else"), ("action", "model.unregister"), ("subject", "model:debit")],
)
def test_editing_any_field_is_reported_as_altered(
    backend: shipway.Client, column: str, value: str
) -> None:
    entries = _changes(backend)
    target = entries[4]

    _execute(
        backend,
        f"UPDATE audit_events SET {column} = :value WHERE seq = :seq",
        value=value,
        seq=target.seq,
    )
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == target.seq
    assert "altered" in (report.problem or "")


def test_editing_an_entry_and_rehashing_it_is_still_caught(backend: shipway.Client) -> None:
    # A forger who recomputes the edited entry's own hash still breaks the link to the next.
    entries = _changes(backend)
    target = entries[5]
    forged_after = {**target.after, "manifest": "f" * 64}
    with backend.store.engine.connect() as conn:
        time, prev = conn.execute(
            sa.select(AuditEvent.time, AuditEvent.prev_hash).where(AuditEvent.seq == target.seq)
        ).one()
    new_hash = entry_hash(
        target.seq,
        time,
        target.actor,
        target.action,
        target.subject,
        target.before,
        forged_after,
        prev,
    )
    _execute(
        backend,
        f'UPDATE audit_events SET "after" = {_json_param(backend)}, hash = :h WHERE seq = :seq',
        value=json.dumps(forged_after),
        h=new_hash,
        seq=target.seq,
    )
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == target.seq + 1
    assert report.checked == target.seq


def test_deleting_a_middle_entry_is_reported_as_removed(backend: shipway.Client) -> None:
    entries = _changes(backend)
    gone = entries[len(entries) // 2].seq
    assert 1 < gone < entries[-1].seq

    assert _execute(backend, "DELETE FROM audit_events WHERE seq = :seq", seq=gone) == 1
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == gone
    assert report.checked == gone - 1
    assert "removed" in (report.problem or "")
    assert str(gone) in (report.problem or "")


def test_deleting_the_first_entry_is_reported(backend: shipway.Client) -> None:
    _changes(backend)
    _execute(backend, "DELETE FROM audit_events WHERE seq = 1")
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == 1
    assert report.checked == 0


def test_deleting_and_renumbering_is_still_caught(backend: shipway.Client) -> None:
    # Closing the gap in `seq` after a delete does not help: the hashes no longer chain.
    entries = _changes(backend)
    gone = 4
    _execute(backend, "DELETE FROM audit_events WHERE seq = :seq", seq=gone)
    for seq in range(gone + 1, entries[-1].seq + 1):
        _renumber(backend, seq, seq - 1)
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == gone
    assert report.checked == gone - 1


def test_swapping_two_entries_is_reported(backend: shipway.Client) -> None:
    entries = _changes(backend)
    a, b = entries[3].seq, entries[6].seq
    for old, new in [(a, -1), (b, a), (-1, b)]:  # exchange the two rows' places in the chain
        _renumber(backend, old, new)
    reordered = _history(backend)
    assert [e.action for e in reordered] != [e.action for e in entries]
    assert [e.seq for e in reordered] == [e.seq for e in entries]

    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == a
    assert report.checked == a - 1
    assert "reordered" in (report.problem or "")


def test_swapping_adjacent_entries_is_reported(backend: shipway.Client) -> None:
    entries = _changes(backend)
    a, b = entries[-2].seq, entries[-1].seq
    for old, new in [(a, -1), (b, a), (-1, b)]:
        _renumber(backend, old, new)
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == a


def test_actor_defaults_to_the_os_user(
    backend: shipway.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHIPWAY_ACTOR", raising=False)
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getpass reads these first
        monkeypatch.delenv(var, raising=False)
    os_user = pwd.getpwuid(os.getuid()).pw_name
    client = shipway.Client()
    try:
        assert client.actor == os_user
        with shipway.start_run(experiment="who", client=client) as run:
            run.log_model(_model())
        version = shipway.register_model(run, "who", client=client)
        shipway.set_alias(version.uri, "champion", client=client)
        entries = _history(client)
        run_actor = run.info().actor
    finally:
        client.store.close()

    assert {e.actor for e in entries} == {os_user}
    assert version.created_by == os_user
    assert run_actor == os_user


def test_shipway_actor_overrides_the_os_user(
    backend: shipway.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    os_user = pwd.getpwuid(os.getuid()).pw_name
    shipway.register_model(_model(), "who", client=backend)  # as the default actor
    monkeypatch.setenv("SHIPWAY_ACTOR", "alice@example.com")
    client = shipway.Client()
    try:
        assert client.actor == "alice@example.com"
        with shipway.start_run(experiment="who", client=client) as run:
            run.log_model(_model(0.3))
        version = shipway.register_model(run, "who", client=client)
        shipway.archive_version("models:/who/1", client=client)
        run_actor = run.info().actor
        # Module-level calls read the settings too.
        shipway.set_alias("models:/who/2", "champion")
        entries = _history(client)
    finally:
        client.store.close()
        get_client().store.close()

    assert entries[0].actor == entries[1].actor == backend.actor == os_user
    assert [e.action for e in entries[-2:]] == ["model.archive", "alias.set"]
    assert {e.actor for e in entries[2:]} == {"alice@example.com"}
    assert version.created_by == "alice@example.com"
    assert run_actor == "alice@example.com"
    assert shipway.verify_audit(client=backend).ok


# =============================================================================
# Sources (the client address behind a change) and `as_user` views
# =============================================================================


def _old_entry_hash(e: AuditEntry, prev: str) -> str:
    """The hash exactly as entries were hashed before sources existed."""
    body = {
        "seq": e.seq,
        "time": e.time.isoformat(timespec="microseconds"),
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "before": e.before,
        "after": e.after,
        "prev": prev,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_entries_without_a_source_hash_exactly_as_before(backend: shipway.Client) -> None:
    entries = _changes(backend)

    prev = GENESIS
    for e in entries:
        assert e.source is None
        assert e.hash == _old_entry_hash(e, prev)
        prev = e.hash
    assert shipway.verify_audit(client=backend).ok


def test_an_as_user_view_audits_every_change_with_its_user_and_source(
    backend: shipway.Client,
) -> None:
    shipway.register_model(_model(), "credit", client=backend)  # locally: no source
    view = backend.as_user("bob", source="10.1.2.3")

    entries = _changes(view)

    assert view.store is backend.store and view.artifacts is backend.artifacts
    assert (backend.actor, backend.source) != ("bob", "10.1.2.3")
    local, viewed = entries[:2], entries[2:]
    assert [(e.action, e.actor, e.source) for e in local] == [
        ("model.create", backend.actor, None),
        ("model.register", backend.actor, None),
    ]
    assert {(e.actor, e.source) for e in viewed} == {("bob", "10.1.2.3")}
    assert shipway.get_model_version("models:/credit/2", client=backend).created_by == "bob"
    assert shipway.get_run(viewed[1].subject.removeprefix("run:"), client=backend).actor == "bob"
    for e, prev in zip(viewed, entries[1:], strict=False):
        with_source = entry_hash(
            e.seq, e.time, e.actor, e.action, e.subject, e.before, e.after, prev.hash, e.source
        )
        assert e.hash == with_source != _old_entry_hash(e, prev.hash)
    assert shipway.verify_audit(client=backend).ok


def test_every_audited_write_goes_through_client_write() -> None:
    # `Client.write()` is what carries an as_user view's source; a direct `store.write(...)`
    # would silently drop it.
    src = Path(shipway.__file__).parent
    direct = [
        f"{path.relative_to(src)}:{n}"
        for path in src.rglob("*.py")
        if path.name != "client.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "store.write(" in line
    ]
    assert direct == []


@pytest.mark.parametrize(
    ("seq_of", "value"),
    [("sourced", "10.9.9.9"), ("sourced", None), ("local", "10.1.2.3")],
)
def test_editing_a_source_breaks_the_chain(
    backend: shipway.Client, seq_of: str, value: str | None
) -> None:
    shipway.register_model(_model(), "credit", client=backend)
    shipway.register_model(_model(), "credit", client=backend.as_user("bob", "10.1.2.3"))
    shipway.register_model(_model(), "credit", client=backend)
    entries = _history(backend)
    sourced = next(e for e in entries if e.source is not None)
    target = sourced if seq_of == "sourced" else entries[0]

    _execute(
        backend,
        "UPDATE audit_events SET source = :value WHERE seq = :seq",
        value=value,
        seq=target.seq,
    )
    report = shipway.verify_audit(client=backend)

    assert not report.ok
    assert report.first_bad_seq == target.seq
    assert "altered" in (report.problem or "")


# =============================================================================
# Export (JSON Lines)
# =============================================================================

EXPORT_FIELDS = [
    "seq",
    "time",
    "actor",
    "source",
    "action",
    "subject",
    "before",
    "after",
    "prev_hash",
    "hash",
]


def _recheck(lines: list[dict[str, Any]], prev: str = GENESIS) -> None:
    """Re-verify an exported chain from the lines alone."""
    for line in lines:
        assert list(line) == EXPORT_FIELDS
        assert line["prev_hash"] == prev
        recomputed = entry_hash(
            line["seq"],
            datetime.fromisoformat(line["time"]),
            line["actor"],
            line["action"],
            line["subject"],
            line["before"],
            line["after"],
            line["prev_hash"],
            line["source"],
        )
        assert recomputed == line["hash"]
        prev = line["hash"]


def test_export_writes_the_chain_as_json_lines(backend: shipway.Client, tmp_path: Path) -> None:
    _changes(backend)
    _changes(backend.as_user("bob", "10.1.2.3"))
    entries = _history(backend)
    path = tmp_path / "audit.jsonl"

    written = export(path, client=backend)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    stream = io.StringIO()
    tail = export(stream, since_seq=5, client=backend)

    assert written == len(entries) == len(lines)
    assert [line["seq"] for line in lines] == [e.seq for e in entries]
    assert [line["hash"] for line in lines] == [e.hash for e in entries]
    assert [(line["actor"], line["source"]) for line in lines] == [
        (e.actor, e.source) for e in entries
    ]
    _recheck(lines)
    assert stream.getvalue() == "".join(f"{line}\n" for line in path.read_text().splitlines()[5:])
    assert tail == len(entries) - 5
    assert export(io.StringIO(), since_seq=len(entries), client=backend) == 0


def test_audit_export_cli(shipway_home: Path, tmp_path: Path) -> None:
    client = shipway.Client()
    try:
        _changes(client.as_user("bob", "10.1.2.3"))
        entries = _history(client)
    finally:
        client.store.close()
    out_file = tmp_path / "audit.jsonl"

    everything = run_cli(shipway_home, "audit", "export")
    since = run_cli(shipway_home, "audit", "export", "--since", "3", "-o", str(out_file))
    verified = run_cli(shipway_home, "audit", "verify")

    assert everything.returncode == since.returncode == verified.returncode == 0, since.stderr
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [line["hash"] for line in lines] == [e.hash for e in entries]
    _recheck(lines)
    later = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert later == lines[3:]
    _recheck(later, prev=lines[2]["hash"])
    assert f"Exported {len(entries) - 3} audit entries" in since.stdout
