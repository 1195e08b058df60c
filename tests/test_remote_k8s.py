"""`shipway k8s apply|status|rollback` and cluster canaries through a team server.

The cluster is reached from the caller's machine (a fake Kubernetes API on loopback, through
the kubeconfig, as in tests/test_k8s_apply.py); only the store's reads and writes go through
a live team server (`SHIPWAY_TRACKING_URI`, `SHIPWAY_TOKEN`, and a `SHIPWAY_HOME` of the
caller's own). The server's store is read directly to see what it recorded, and as whom.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import shipway
from k8s_fakes import FakeKubernetes, FakePrometheus, TrackLoad
from server_helpers import Team, team_server
from shipway.deploy import records
from shipway.deploy.analysis import Checks
from shipway.deploy.kubernetes import RenderOptions, rollouts
from shipway.deploy.kubernetes.apply import apply, live_status, rollback
from shipway.deploy.kubernetes.prometheus import PrometheusMetricsSource
from shipway.deploy.rollout import new_rollout
from shipway.errors import ApprovalRequiredError, ForbiddenError
from shipway.governance.approvals import approve, request_approval
from shipway.governance.audit import audit_log
from shipway.records import AuditEntry
from test_k8s_apply import DIGEST, NS, credit, fake
from test_k8s_canary import prometheus
from test_remote import _close_connections, remote_client

__all__ = ["_close_connections", "credit", "fake", "prometheus"]

API = "/api/v1"


@pytest.fixture
def team(credit: list[shipway.ModelVersionInfo], shipway_home: Path) -> Iterator[Team]:
    """A team server over the store `credit` registered two versions (and images) in."""
    server = shipway.Client()
    try:
        with team_server(server) as team:
            yield team
    finally:
        server.store.close()


@pytest.fixture
def as_user(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], shipway.Client]:
    """Make the default client (the CLI's, and the API's without client=) the server's, as
    the user of a role, with a SHIPWAY_HOME of its own; the same as an explicit client."""

    def switch(role: str) -> shipway.Client:
        home = tmp_path / f"home-{role}"
        home.mkdir(exist_ok=True)
        monkeypatch.setenv("SHIPWAY_TRACKING_URI", team.url)
        monkeypatch.setenv("SHIPWAY_TOKEN", team.tokens[role])
        monkeypatch.setenv("SHIPWAY_HOME", str(home))
        return remote_client(team.url, team.tokens[role], home=home)

    return switch


def _apply(uri: str, env: str = "staging") -> object:
    return apply(RenderOptions(uri, Path(".")), env, poll_s=0.05)


def _image(fake: FakeKubernetes) -> str:
    dep = fake.get("deployments", NS, "credit")
    assert dep is not None
    image: str = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def _k8s_events(team: Team) -> list[AuditEntry]:
    return [e for e in audit_log(limit=1000, client=team.client) if e.action.startswith("k8s.")]


def test_a_developer_applies_through_the_server(
    team: Team, fake: FakeKubernetes, as_user: Callable[[str], shipway.Client], tmp_path: Path
) -> None:
    as_user("developer")
    done = _apply("models:/credit/1")
    # The objects went to the cluster from this machine...
    assert _image(fake) == f"registry.example/credit@sha256:{DIGEST[1]}"
    assert fake.get("namespaces", "", NS) is not None
    # ...and the record to the server, with what the cluster reported and the render options.
    dep = records.get_deployment("staging", client=team.client)
    assert (dep.runtime, dep.host, dep.port, dep.version, dep.status) == (
        "kubernetes", "fake", 80, 1, "running",
    )  # fmt: skip
    assert dep.observed["namespace"] == NS and dep.observed["digest"] == f"sha256:{DIGEST[1]}"
    assert dep.observed["revision"] == 1 and dep.observed["options"]["uri"] == "models:/credit/1"
    assert done.deployment == records.get_deployment("staging")  # type: ignore[attr-defined]
    [event] = _k8s_events(team)
    assert (event.action, event.actor, event.source) == ("k8s.apply", "dana", "127.0.0.1")
    assert event.after is not None and event.after["namespace"] == NS
    assert shipway.get_model_version("models:/credit@staging", client=team.client).version == 1
    assert not (tmp_path / "home-developer" / "shipway.db").exists()  # no local store


def test_status_and_rollback_through_the_server_from_the_cli(
    team: Team, fake: FakeKubernetes, as_user: Callable[[str], shipway.Client]
) -> None:
    from shipway.cli import create_app

    as_user("developer")
    runner, app = CliRunner(), create_app()
    for version in (1, 2):
        out = runner.invoke(app, ["k8s", "apply", f"models:/credit/{version}", "--env", "staging"])
        assert out.exit_code == 0, out.output
        assert "is available in staging" in out.output
    assert _image(fake).endswith(DIGEST[2])
    out = runner.invoke(app, ["k8s", "status", "--env", "staging"])
    assert out.exit_code == 0, out.output
    assert "models:/credit/2" in out.output and "available" in out.output
    live = live_status("staging")
    assert (live.recorded.version, live.stable.revision, live.stable.version) == (2, 2, "2")

    out = runner.invoke(app, ["k8s", "rollback", "--env", "staging"])
    assert out.exit_code == 0, out.output
    assert "rolled back to revision 3: models:/credit/1" in out.output
    assert _image(fake).endswith(DIGEST[1])
    dep = records.get_deployment("staging", client=team.client)
    assert (dep.version, dep.observed["revision"], dep.observed["rolled_back_from"]) == (1, 3, 2)
    events = _k8s_events(team)
    assert [(e.action, e.actor) for e in events] == [
        ("k8s.apply", "dana"), ("k8s.apply", "dana"), ("k8s.rollback", "dana"),
    ]  # fmt: skip
    assert events[-1].before is not None and events[-1].before["version"] == 2
    assert shipway.get_model_version("models:/credit@staging", client=team.client).version == 1
    # forward again, to a revision by number, through the Python API
    assert rollback("staging", to_revision=2, poll_s=0.05).version == 2


def test_production_needs_its_approval_before_any_api_call(
    team: Team, fake: FakeKubernetes, as_user: Callable[[str], shipway.Client]
) -> None:
    dev = as_user("developer")
    with pytest.raises(ApprovalRequiredError, match="approvals request models:/credit/1"):
        _apply("models:/credit/1", "production")
    assert fake.calls == []
    assert records.find_deployment("production", client=team.client) is None

    asked = request_approval("models:/credit/1", "production", client=dev)
    approve(asked.id, client=remote_client(team.url, team.tokens["approver"]))
    _apply("models:/credit/1", "production")
    assert fake.get("deployments", "credit-production", "credit") is not None
    assert records.get_deployment("production", client=team.client).version == 1
    prod = shipway.get_model_version("models:/credit@production", client=team.client)
    assert prod.version == 1


def test_a_viewer_is_refused_before_any_api_call(
    team: Team, fake: FakeKubernetes, as_user: Callable[[str], shipway.Client]
) -> None:
    from shipway.cli import create_app

    as_user("viewer")
    with pytest.raises(ForbiddenError, match=r"vic \(viewer\) may not"):
        _apply("models:/credit/1")
    out = CliRunner().invoke(create_app(), ["k8s", "apply", "models:/credit/1", "--env",
                                            "staging"])  # fmt: skip
    assert out.exit_code != 0 and "vic (viewer) may not" in str(out.exception)
    assert fake.calls == []
    assert records.find_deployment("staging", client=team.client) is None
    assert _k8s_events(team) == []


def test_a_viewers_rollback_is_refused_before_the_cluster_is_touched(
    team: Team, fake: FakeKubernetes, as_user: Callable[[str], shipway.Client]
) -> None:
    as_user("developer")
    _apply("models:/credit/1")
    _apply("models:/credit/2")
    as_user("viewer")
    calls = len(fake.calls)
    with pytest.raises(ForbiddenError, match=r"vic \(viewer\) may not .*: needs developer"):
        rollback("staging", poll_s=0.05)
    assert len(fake.calls) == calls  # not even a read
    assert records.get_deployment("staging", client=team.client).version == 2


def test_the_server_checks_records_it_cannot_see_on_the_cluster(
    team: Team, fake: FakeKubernetes, as_user: Callable[[str], shipway.Client]
) -> None:
    """What a client could send without having done it: the server's own checks refuse it."""
    as_user("developer")
    _apply("models:/credit/1")
    body = {"model": "credit", "version": 2, "replicas": 1, "context": "fake",
            "namespace": NS, "port": 80, "image": "registry.example/credit:v2",
            "observed": {"app": "credit", "namespace": NS}}  # fmt: skip
    with team.http("developer") as dev:
        r = dev.post(f"{API}/deployments/production/kubernetes", json=body)
        assert r.status_code == 403 and "needs an approval for production" in r.json()["error"]
        # a "rollback" to a version that never ran there is no rollback: its approval is due
        r = dev.post(f"{API}/deployments/production/kubernetes",
                     json=body | {"event": "k8s.rollback"})  # fmt: skip
        assert r.status_code == 403, r.text
        r = dev.post(f"{API}/deployments/staging/kubernetes", json=body | {"model": "other"})
        assert r.status_code == 409 and "serves model 'credit'" in r.json()["error"]
        r = dev.post(f"{API}/deployments/staging/kubernetes", json=body | {"extra": 1})
        assert r.status_code == 422
        # a rollout must start from the recorded stable version, and keep its versions
        state = new_rollout(environment="staging", model="credit", stable_version=1,
                            canary_version=2, steps=[10, 100], interval_s=1,
                            now=time.time())  # fmt: skip
        wrong = state.model_copy(update={"stable_version": 2, "canary_version": 1})
        r = dev.post(f"{API}/rollouts", json={"state": wrong.model_dump(mode="json")})
        assert r.status_code == 409 and "the rollout's stable version" in r.json()["error"]
        r = dev.post(f"{API}/rollouts", json={"state": state.model_dump(mode="json")})
        assert r.status_code == 201, r.text
        r = dev.get(f"{API}/deployments/staging/rollouts/active")
        assert r.status_code == 200 and r.json()["id"] == state.id
        other = state.model_copy(update={"canary_version": 3})
        r = dev.post(
            f"{API}/rollouts/{state.id}/state", json={"state": other.model_dump(mode="json")}
        )
        assert r.status_code == 409 and "cannot change its canary_version" in r.json()["error"]
        # with a rollout running, nothing else is recorded there
        r = dev.post(f"{API}/deployments/staging/kubernetes", json=body)
        assert r.status_code == 409 and f"Rollout {state.id}" in r.json()["error"]
        # a request is taken once
        records.request_rollout("staging", "abort", client=team.client)
        r = dev.post(f"{API}/rollouts/{state.id}/take-request")
        assert r.json() == {"rollout": state.id, "request": "abort"}
        r = dev.post(f"{API}/rollouts/{state.id}/take-request")
        assert r.json() == {"rollout": state.id, "request": None}
    with team.http("viewer") as viewer:
        r = viewer.get(f"{API}/deployments/staging/rollouts/active")
        assert r.status_code == 200 and r.json()["id"] == state.id
        r = viewer.post(f"{API}/rollouts/{state.id}/take-request")
        assert r.status_code == 403
    assert records.get_deployment("staging", client=team.client).version == 1


def test_a_cluster_canary_through_the_server_is_promoted_on_request(
    team: Team,
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
    as_user: Callable[[str], shipway.Client],
) -> None:
    prom, url = prometheus
    prom.tracks = {"stable": TrackLoad(rps=90), "canary": TrackLoad(rps=50)}
    dev = as_user("developer")
    _apply("models:/credit/1")
    started = rollouts.start(
        RenderOptions("models:/credit/2", Path(".")), "staging", steps=[10, "pause", 100],
        interval_s=0.3, checks=Checks(min_requests=20), poll_s=0.05,
        source=lambda ns, app: PrometheusMetricsSource(url, namespace=ns, app=app),
    )  # fmt: skip
    stored = records.active_rollout("staging", client=team.client)
    assert stored is not None and stored.id == started.controller.state.id

    asked: list[str] = []

    def on_change(state: object) -> None:  # `shipway rollout promote` from another terminal
        if getattr(state, "status", None) == "paused" and not asked:
            asked.append(records.request_rollout("staging", "promote", client=dev))

    final = rollouts.run(started, tick_s=0.05, on_change=on_change)
    assert final.status == "promoted", final.reason
    assert asked == [final.id]
    assert [w["credit-canary"] for w in fake.route_weights][-2:] == [100, 0]
    assert _image(fake).endswith(DIGEST[2])
    dep = records.get_deployment("staging", client=team.client)
    assert (dep.version, dep.image) == (2, f"registry.example/credit@sha256:{DIGEST[2]}")
    assert dep.observed["options"]["uri"] == "models:/credit/1"  # kept for the next rollout
    latest = records.latest_rollout("staging", client=team.client)
    assert latest is not None and latest.status == "promoted"
    events = audit_log(limit=1000, client=team.client)
    mine = {(e.action, e.actor) for e in events}
    assert {("rollout.start", "dana"), ("rollout.request.promote", "dana"),
            ("rollout.promoted", "dana"), ("k8s.promote", "dana")} <= mine  # fmt: skip
    assert shipway.get_model_version("models:/credit@staging", client=team.client).version == 2


@pytest.mark.slow
def test_the_cli_starts_a_cluster_canary_and_resumes_one_through_the_server(
    team: Team,
    fake: FakeKubernetes,
    prometheus: tuple[FakePrometheus, str],
    as_user: Callable[[str], shipway.Client],
) -> None:
    from shipway.cli import create_app

    prom, url = prometheus
    prom.tracks = {"stable": TrackLoad(rps=90), "canary": TrackLoad(rps=50)}
    dev = as_user("developer")
    runner, app = CliRunner(), create_app()
    _apply("models:/credit/1")
    out = runner.invoke(app, ["k8s", "rollout", "start", "models:/credit/2", "--env", "staging",
                              "--steps", "10,100", "--interval", "300ms",
                              "--prometheus-url", url])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert records.get_deployment("staging", client=team.client).version == 2

    # A canary back to version 1 whose following process dies when it pauses...
    first = rollouts.start(
        RenderOptions("models:/credit/1", Path(".")), "staging", steps=[10, "pause", 100],
        interval_s=0.3, checks=Checks(min_requests=20), poll_s=0.05,
        source=lambda ns, app: PrometheusMetricsSource(url, namespace=ns, app=app),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while first.controller.state.status != "paused":
        assert time.monotonic() < deadline, first.controller.state
        time.sleep(0.05)
        before = first.controller.state
        after = first.controller.tick(time.time())
        if after != before:
            records.save_rollout(after, previous=before, client=dev)
    for close in first.closers:
        close()
    paused = records.active_rollout("staging", client=team.client)
    assert paused is not None and paused.weight == 10
    # ...is carried on by another one, and promoted as asked from a third.
    records.request_rollout("staging", "promote", client=dev)
    out = runner.invoke(app, ["k8s", "rollout", "resume", "--env", "staging",
                              "--prometheus-url", url])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert f"Resuming rollout {paused.id}" in out.output
    latest = records.latest_rollout("staging", client=team.client)
    assert latest is not None and latest.id == paused.id and latest.status == "promoted"
    assert records.get_deployment("staging", client=team.client).version == 1
    assert _image(fake).endswith(DIGEST[1])
    promotions = [e for e in _k8s_events(team) if e.action == "k8s.promote"]
    assert [(e.actor, e.after and e.after["version"]) for e in promotions] == [
        ("dana", 2), ("dana", 1),
    ]  # fmt: skip
