"""Monitoring jobs and long lists through the team server.

One live server over one store for the module: a credit model served with its prediction log
on, in the server's home, so a job run through the server reads the same log as a local job
on the server's store; the two must agree. The client side has a home of its own, which must
stay empty: nothing runs or is stored on the caller's machine but the HTML report.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import shipway
from server_helpers import Team, module_store, team_server
from serving_helpers import FEATURES, credit_frame, live_server, run_cli, train_credit
from shipway.errors import ForbiddenError, InvalidInputError, NotFoundError
from shipway.monitoring.history import get_result, list_results
from shipway.monitoring.job import MonitorSpec, run_job
from shipway.monitoring.monitor import AlertPolicy, Roles
from shipway.monitoring.watch import Hooks, Schedule, watch
from shipway.serving import create_app
from shipway.store import tables as t
from test_monitoring_job import _files, _send
from test_remote import _close_connections, remote_client

pytestmark = pytest.mark.slow
__all__ = ["_close_connections"]  # the autouse fixture closing each test's connections

PAGED = 1234
"""More runs and audit entries than one page (1000) holds."""


@dataclass
class Served:
    team: Team
    uri: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("remote-monitoring-home")
    with module_store(home) as client:
        version, _, _ = train_credit()
        frame = credit_frame(400, seed=11)
        drifted = frame.assign(income=frame["income"] * 3)
        with live_server(create_app([version.uri])) as url:
            _send(url, drifted[FEATURES], frame["default"].iloc[:300])
        with team_server(client) as team:
            yield Served(team, version.uri)


def _developer(served: Served) -> shipway.Client:
    return remote_client(served.team.url, served.team.tokens["developer"])


def _spec(served: Served, **changes: object) -> MonitorSpec:
    spec = MonitorSpec(
        model_uri=served.uri, window=timedelta(hours=1), roles=Roles(target="default")
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def _cli_env(served: Served, role: str) -> dict[str, str]:
    return {"SHIPWAY_TRACKING_URI": served.team.url, "SHIPWAY_TOKEN": served.team.tokens[role]}


# -- monitoring jobs -------------------------------------------------------------------------


def test_a_model_job_runs_on_the_server_and_agrees_with_a_local_one(served: Served) -> None:
    local = run_job(_spec(served, store=False), client=served.team.client)
    remote = run_job(_spec(served), client=_developer(served))

    assert remote.id != local.id
    assert (remote.model, remote.version) == (local.model, local.version) == ("credit", 1)
    assert remote.current.kind == "predictions" and remote.current.rows == local.current.rows
    assert remote.current.rows == 400
    assert remote.current.description == local.current.description
    assert remote.reference == local.reference
    assert remote.features == local.features == FEATURES
    assert "income" in remote.drift.drifted_columns
    assert remote.drift.drifted_columns == local.drift.drifted_columns
    assert remote.drift.n_tested == local.drift.n_tested
    assert remote.performance is not None and local.performance is not None
    assert remote.performance.labelled == local.performance.labelled == 300
    assert [a.name for a in remote.alerts] == [a.name for a in local.alerts]

    # Stored on the server as the token's user, listable there and through it.
    assert get_result(remote.id, client=served.team.client) == remote
    assert remote.id in [r.id for r in list_results("credit", client=_developer(served))]
    entry = shipway.audit_log(limit=5, subject="monitor:credit", client=served.team.client)[-1]
    assert (entry.action, entry.actor) == ("monitor.run", "dana")
    assert entry.after is not None and entry.after["id"] == remote.id


def test_thresholds_and_no_store_travel_with_the_spec(served: Served) -> None:
    before = {r.id for r in list_results("credit", limit=1000, client=served.team.client)}
    lax = _spec(served, store=False, rows=100, policy=AlertPolicy(share=1.0))
    remote = run_job(lax, client=_developer(served))
    local = run_job(lax, client=served.team.client)
    assert remote.current.rows == local.current.rows == 100
    assert remote.drift.share == 1.0 and remote.drift.drifted == local.drift.drifted
    assert remote.drift.drifted_columns == local.drift.drifted_columns
    after = {r.id for r in list_results("credit", limit=1000, client=served.team.client)}
    assert after == before  # store=False: returned, not kept


def test_a_viewer_may_not_run_a_job_and_bad_specs_fail_before_sending(served: Served) -> None:
    viewer = remote_client(served.team.url, served.team.tokens["viewer"])
    before = len(list_results(limit=1000, client=served.team.client))
    with pytest.raises(ForbiddenError, match="run a monitoring job"):
        run_job(_spec(served), client=viewer)
    assert len(list_results(limit=1000, client=served.team.client)) == before

    nowhere = remote_client("http://127.0.0.1:9", served.team.tokens["developer"])
    with pytest.raises(InvalidInputError, match="Nothing to monitor"):
        run_job(MonitorSpec(), client=nowhere)
    with pytest.raises(InvalidInputError, match="--rows must be at least 1"):
        run_job(_spec(served, rows=0), client=nowhere)
    with pytest.raises(InvalidInputError, match="not both"):
        run_job(_spec(served, reference=Path("ref.csv")), client=nowhere)


def test_local_files_are_uploaded_and_named_as_given(served: Served, tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    spec = MonitorSpec(reference=ref, current=cur)
    remote = run_job(spec, client=_developer(served))
    local = run_job(MonitorSpec(reference=ref, current=cur, store=False))
    assert remote.model is None and remote.drift.drifted_columns == local.drift.drifted_columns
    assert remote.drift.drifted_columns == ["a"]
    assert remote.reference == local.reference and remote.current == local.current
    assert remote.reference.description == str(ref) and remote.current.rows == 2000
    assert get_result(remote.id, client=served.team.client) == remote

    # A model's reference against a local file of current inputs.
    inputs = tmp_path / "inputs.parquet"
    credit_frame(300, seed=5).assign(age=lambda f: f["age"] + 25)[FEATURES].to_parquet(inputs)
    with_model = run_job(_spec(served, window=None, current=inputs), client=_developer(served))
    assert with_model.current.kind == "file" and with_model.current.description == str(inputs)
    assert with_model.current.rows == 300 and "age" in with_model.drift.drifted_columns

    # Errors name the file as the caller knows it, not where the server kept it.
    with pytest.raises(InvalidInputError, match="No current file"):
        run_job(
            MonitorSpec(reference=ref, current=tmp_path / "gone.csv"), client=_developer(served)
        )
    bad = tmp_path / "cur.xlsx"
    bad.write_text("not a table")
    with pytest.raises(InvalidInputError, match="unknown format") as err:
        run_job(MonitorSpec(reference=ref, current=bad), client=_developer(served))
    assert str(bad) in str(err.value) and "shipway-monitor-" not in str(err.value)


def test_the_cli_monitors_through_the_server_and_writes_the_report_here(
    served: Served, tmp_path: Path
) -> None:
    home = tmp_path / "client-home"
    report, out = tmp_path / "report.html", tmp_path / "result.json"
    done = run_cli(
        home, "monitor", "run", served.uri, "--window", "1h", "--target", "default",
        "-o", str(report), "--json", str(out), "--fail-on", "never",
        env=_cli_env(served, "developer"), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "income" in done.stdout and "1 of 7 features drifted" in done.stdout
    data = json.loads(out.read_text())
    assert data["current"]["rows"] == 400
    assert get_result(data["id"], client=served.team.client).to_dict() == data
    html = report.read_text()
    assert "<html" in html and "income" in html and data["id"] in html
    assert not (home / "shipway.db").exists()  # nothing ran or was kept on this machine

    denied = run_cli(
        home, "monitor", "run", served.uri, "--window", "1h", env=_cli_env(served, "viewer")
    )
    assert denied.returncode != 0 and "Traceback" not in denied.stderr
    assert "may not run a monitoring job" in denied.stderr


def test_watch_runs_each_job_on_the_server(served: Served, tmp_path: Path) -> None:
    seen: list[tuple[object, str | None]] = []
    report = tmp_path / "latest.html"
    fired = watch(
        _spec(served),
        Schedule(every=timedelta(milliseconds=10)),
        Hooks(command="true"),
        runs=2,
        report=report,
        on_result=lambda r, e: seen.append((r, e)),
        client=_developer(served),
        sleep=lambda s: None,
    )
    assert [e for _, e in seen] == [None, None] and fired == 2
    ids = [r.id for r, _ in seen if r is not None]  # type: ignore[attr-defined]
    stored = {r.id for r in list_results("credit", limit=1000, client=served.team.client)}
    assert set(ids) <= stored and len(set(ids)) == 2
    assert ids[-1] in report.read_text()


# -- pages longer than the server's ----------------------------------------------------------


def _add_runs(client: shipway.Client, experiment: str, n: int) -> list[str]:
    """`n` runs straight into the store, many sharing a start time; ids in list order."""
    base = datetime(2030, 1, 1, tzinfo=UTC)
    rows: list[tuple[datetime, str]] = []
    with client.write() as tx:
        exp = t.Experiment(name=experiment, created_at=base)
        tx.session.add(exp)
        tx.session.flush()
        for i in range(n):
            start = base + timedelta(seconds=i // 10)  # ten runs per instant
            run_id = uuid.uuid4().hex
            rows.append((start, run_id))
            tx.session.add(
                t.Run(
                    id=run_id,
                    experiment_id=exp.id,
                    name=f"r{i}",
                    status="finished",
                    actor="dana",
                    start_time=start,
                    environment={},
                )
            )
    return [run_id for _, run_id in sorted(rows, reverse=True)]


def test_runs_list_past_one_page_in_order_without_repeats(served: Served) -> None:
    expected = _add_runs(served.team.client, "paging", PAGED)
    viewer = remote_client(served.team.url, served.team.tokens["viewer"])
    runs = shipway.list_runs("paging", limit=5000, client=viewer)
    assert [r.id for r in runs] == expected
    assert len({r.id for r in runs}) == PAGED
    assert [r.id for r in shipway.list_runs("paging", limit=1100, client=viewer)] == expected[:1100]
    assert len(shipway.list_runs(limit=1001, client=viewer)) == 1001
    # The server's pages themselves: stable, adjacent, and never past 1000.
    with served.team.http("viewer") as http:
        first = http.get("/api/v1/runs", params={"experiment": "paging", "limit": 1000}).json()
        rest = http.get("/api/v1/runs", params={"experiment": "paging", "offset": 1000}).json()
        assert [r["id"] for r in first + rest][:1100] == expected[:1100]
        assert http.get("/api/v1/runs", params={"limit": 1001}).status_code == 422
        assert http.get("/api/v1/runs", params={"offset": -1}).status_code == 422


def test_audit_entries_list_past_one_page_as_locally(served: Served) -> None:
    with served.team.client.as_user("dana").write() as tx:
        for i in range(PAGED):
            tx.audit("test.page", f"paging:{i:05d}")
    viewer = remote_client(served.team.url, served.team.tokens["viewer"])
    remote = shipway.audit_log(limit=5000, subject="paging:", client=viewer)
    local = shipway.audit_log(limit=5000, subject="paging:", client=served.team.client)
    assert remote == local
    assert [e.subject for e in remote] == [f"paging:{i:05d}" for i in range(PAGED)]
    newest = shipway.audit_log(limit=1100, subject="paging:", client=viewer)
    assert newest == local[-1100:]


def test_other_lists_take_an_offset(served: Served) -> None:
    with served.team.http("viewer") as http:
        every = http.get("/api/v1/audit", params={"limit": 10}).json()
        older = http.get("/api/v1/audit", params={"limit": 5, "offset": 5}).json()
        assert older == every[:5]  # offset counts back from the newest
        for path in ("/api/v1/models", "/api/v1/models/credit/versions", "/api/v1/approvals",
                     "/api/v1/monitoring/results", "/api/v1/rollouts"):  # fmt: skip
            whole = http.get(path, params={"limit": 1000}).json()
            assert http.get(path, params={"offset": 1, "limit": 1000}).json() == whole[1:], path
            assert http.get(path, params={"offset": -1}).status_code == 422, path
    results = list_results("credit", limit=3, client=served.team.client)
    paged = list_results("credit", limit=3, client=_developer(served))
    assert [r.id for r in paged] == [r.id for r in results]


# -- a model registered with no run ----------------------------------------------------------


def test_a_bare_model_object_registers_through_the_server(served: Served) -> None:
    from sklearn.linear_model import LogisticRegression

    from shipway.records import LoggedModel

    frame = credit_frame(200, seed=2)
    numeric = ["age", "income", "debt_ratio"]
    model = LogisticRegression(max_iter=300).fit(frame[numeric], frame["default"])
    developer = _developer(served)
    version = shipway.register_model(
        model, "bare", description="no run", input_example=frame[numeric].head(5), client=developer
    )
    assert (version.name, version.version, version.run_id) == ("bare", 1, None)
    assert version.created_by == "dana" and version.card["description"] == "no run"
    assert version.signature is not None  # from the input example, saved on this machine
    assert served.team.client.artifacts.exists(version.manifest_digest)
    assert shipway.get_model_version("models:/bare/1", client=served.team.client) == version
    loaded = shipway.load_model("models:/bare/1", client=developer)
    assert list(loaded.predict(frame[numeric])) == list(model.predict(frame[numeric]))
    entry = shipway.audit_log(limit=1, subject="model:bare", client=served.team.client)[-1]
    assert (entry.action, entry.actor) == ("model.register", "dana")

    again = shipway.register_model(model, "bare", client=developer)
    assert (again.version, again.run_id, again.signature) == (2, None, None)

    # A manifest the server lacks is refused, and nothing is registered.
    missing = LoggedModel("0" * 64, "sklearn", None)
    with pytest.raises(NotFoundError, match="not found"):
        shipway.register_model(missing, "bare", client=developer)
    with pytest.raises(ForbiddenError):
        shipway.register_model(
            model, "bare", client=remote_client(served.team.url, served.team.tokens["viewer"])
        )
    assert [v.version for v in shipway.list_versions("bare", client=developer)] == [1, 2]
