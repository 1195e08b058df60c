"""Deployments and rollouts driven through the team server (`SHIPWAY_TRACKING_URI`).

One live server over one store for the module, with models registered in it. A developer's
remote client deploys, rolls out, promotes, aborts, stops and starts environments whose agents
run on the server's machine (here: processes started by the in-thread server), and the
deployments answer on their ports. A viewer may do none of it, production needs an approval,
and options the API cannot carry are refused before anything is asked of the server. Each
test uses environments of its own, and brings them down whatever happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import shipway
from deploy_helpers import Load, bring_down, register_doubler
from server_helpers import Team, module_store, team_server
from serving_helpers import free_port, run_cli
from shipway.deploy import control, records
from shipway.deploy.analysis import Checks
from shipway.errors import (
    ApprovalRequiredError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
)
from test_remote import _close_connections, remote_client

__all__ = ["_close_connections"]  # the autouse fixture closing each test's connections

MODEL = "rd"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """The server, with three versions of a doubler registered (the third triples)."""
    home = tmp_path_factory.mktemp("remote-deploy-home")
    with module_store(home) as client, team_server(client) as team:
        register_doubler(MODEL)
        register_doubler(MODEL)
        register_doubler(MODEL, factor=3)
        yield team


@pytest.fixture
def environments(team: Team) -> Iterator[list[str]]:
    """Environments the test starts; each is brought down (locally, on the server's store)
    afterwards, whatever happened."""
    started: list[str] = []
    yield started
    bring_down(started)


def _uri(version: int) -> str:
    return f"models:/{MODEL}/{version}"


def _eventually(check: Callable[[], bool], within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _predict(url: str) -> tuple[list[float], str]:
    r = httpx.post(f"{url}/predict", json=[{"x": 1.0}], timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"], r.headers["x-shipway-version"]


# -- the Python API -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_developer_deploys_rolls_out_stops_and_starts_through_the_server(
    team: Team, environments: list[str]
) -> None:
    dana = remote_client(team.url, team.tokens["developer"])
    env = "rd-staging"
    environments.append(env)
    port = free_port()
    said: list[str] = []
    dep = control.deploy(_uri(1), env, port=port, client=dana, progress=said.append)
    assert (dep.environment, dep.live_version, dep.status) == (env, 1, "running")
    assert dep.agent_alive and dep.url == f"http://127.0.0.1:{port}"
    assert _predict(dep.url) == ([2.0], "1")
    local = records.get_deployment(env, client=team.client)
    assert local.live_version == 1 and local.agent_pid == dep.agent_pid

    # a canary promoted by hand under traffic, every move read through the server
    # (an absolute p99 bound: p99 over a window's few requests is their slowest)
    with Load(dep.url) as load:
        state = control.rollout_start(
            _uri(2), env, steps=[20, "pause", 100], interval_s=2,
            checks=Checks(min_requests=5, max_p99_ms=5000), client=dana,
        )  # fmt: skip
        assert (state.stable_version, state.canary_version, state.status) == (1, 2, "running")
        paused = control.wait_rollout(env, state.id, client=dana, timeout_s=120)
        assert paused.status == "paused" and paused.weight == 20, paused
        with pytest.raises(ConflictError, match="is paused in rd-staging") as clash:
            control.rollout_start(_uri(3), env, steps=[50], interval_s=1, client=dana)
        assert clash.value.hint is not None and "rollout abort --env rd-staging" in clash.value.hint
        assert records.request_rollout(env, "promote", client=dana) == state.id
        final = control.wait_rollout(env, state.id, client=dana, timeout_s=120, until_paused=False)
        assert _eventually(lambda: _predict(dep.url)[1] == "2")
    assert final.status == "promoted", final
    assert load.failed == 0, (load.statuses, load.errors[:3])
    assert load.versions["1"] > 0 and load.versions["2"] > 0
    live = records.get_deployment(env, client=dana)
    assert (live.version, live.live_version) == (2, 2)

    # another canary, aborted: traffic stays with the promoted version
    with pytest.raises(ConflictError, match="No rollout is running in rd-staging"):
        records.request_rollout(env, "abort", client=dana)
    other = control.rollout_start(_uri(3), env, steps=[10, "pause", 100], interval_s=1, client=dana)
    assert records.request_rollout(env, "abort", client=dana) == other.id
    aborted = control.wait_rollout(env, other.id, client=dana, timeout_s=120)
    assert aborted.status == "aborted", aborted
    assert records.get_deployment(env, client=dana).live_version == 2
    assert _predict(dep.url) == ([2.0], "2")

    # stopped, then started again from its records
    assert control.down(env, client=dana) is None
    stopped = records.get_deployment(env, client=dana)
    assert stopped.status == "stopped" and not stopped.agent_alive
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{dep.url}/-/healthy", timeout=2)
    again = control.up(env, client=dana)
    assert (again.live_version, again.status, again.port) == (2, "running", port)
    assert again.agent_alive and again.agent_pid != dep.agent_pid
    assert _predict(again.url) == ([2.0], "2")

    # each request is audited as the token's user, not as whoever runs the server
    by_dana = [
        e.action
        for e in shipway.audit_log(limit=1000, subject=f"environment:{env}", client=team.client)
        if e.actor == "dana"
    ]
    for action in ("deploy.request", "rollout.start", "rollout.request.promote",
                   "rollout.request.abort", "deploy.request.stop"):  # fmt: skip
        assert action in by_dana, (action, by_dana)


def test_a_viewer_may_not_act_on_deployments(team: Team) -> None:
    vic = remote_client(team.url, team.tokens["viewer"])
    env = "rd-viewer"
    actions: list[Callable[[], object]] = [
        lambda: control.deploy(_uri(1), env, port=free_port(), client=vic),
        lambda: control.up(env, client=vic),
        lambda: control.down(env, client=vic),
        lambda: control.rollout_start(_uri(2), env, steps=[10, 100], interval_s=1, client=vic),
        lambda: records.request_rollout(env, "promote", client=vic),
        lambda: records.request_rollout(env, "promote-full", client=vic),
        lambda: records.request_rollout(env, "abort", client=vic),
    ]
    for act in actions:
        with pytest.raises(ForbiddenError, match=r"vic \(viewer\) may not") as refused:
            act()
        assert type(refused.value) is ForbiddenError
    assert records.find_deployment(env, client=team.client) is None


def test_production_needs_an_approval_through_the_server(team: Team) -> None:
    dana = remote_client(team.url, team.tokens["developer"])
    with pytest.raises(ApprovalRequiredError) as refused:
        control.deploy(_uri(1), "production", port=free_port(), client=dana)
    hint = refused.value.hint or ""
    assert f"shipway approvals request {_uri(1)} --env production" in hint
    with pytest.raises(ApprovalRequiredError, match=f"{_uri(2)}"):
        control.rollout_start(_uri(2), "production", steps=[10, 100], interval_s=1, client=dana)
    assert records.find_deployment("production", client=team.client) is None


def test_options_the_api_cannot_carry_are_refused(team: Team) -> None:
    dana = remote_client(team.url, team.tokens["developer"])
    env = "rd-options"
    with pytest.raises(InvalidInputError, match=r"cannot listen on 0\.0\.0\.0") as host:
        control.deploy(_uri(1), env, host="0.0.0.0", client=dana)
    assert host.value.hint is not None and "SHIPWAY_TRACKING_URI" in host.value.hint
    with pytest.raises(InvalidInputError, match=r"cannot run the image rd:custom"):
        control.deploy(_uri(1), env, runtime="container", image="rd:custom", client=dana)
    with pytest.raises(InvalidInputError, match="Unknown rollout request 'pause'"):
        records.request_rollout(env, "pause", client=dana)
    with pytest.raises(InvalidInputError, match="Unknown runtime 'vm'"):
        control.deploy(_uri(1), env, runtime="vm", client=dana)
    assert records.find_deployment(env, client=team.client) is None
    events = shipway.audit_log(limit=1000, subject=f"environment:{env}", client=team.client)
    assert events == []


def test_the_stop_and_start_endpoints_are_documented(team: Team) -> None:
    with team.http("viewer") as viewer:
        spec = viewer.get("/api/v1/openapi.json").json()
    for action in ("stop", "start"):
        op = spec["paths"][f"/api/v1/deployments/{{environment}}/{action}"]["post"]
        assert op["x-shipway-role"] == "developer"
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == {"wait_s"}
        assert body["additionalProperties"] is False
    with team.http("developer") as dev:
        extra = dev.post("/api/v1/deployments/rd-none/stop", json={"wait_s": 5, "force": True})
        assert extra.status_code == 422 and "force" in extra.json()["error"]
        missing = dev.post("/api/v1/deployments/rd-none/start", json={})
        assert missing.status_code == 404 and "rd-none" in missing.json()["error"]


# -- the CLI --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_cli_drives_deployments_through_the_server(
    team: Team, environments: list[str], tmp_path: Path
) -> None:
    home = tmp_path / "client-home"  # stays empty: everything happens on the server
    env = {"SHIPWAY_TRACKING_URI": team.url, "SHIPWAY_TOKEN": team.tokens["developer"]}
    name = "rd-cli"
    environments.append(name)
    port = free_port()

    def cli(*args: str, timeout: float = 60, token: str = "developer") -> tuple[int, str, str]:
        done = run_cli(
            home, *args, timeout=timeout, env=env | {"SHIPWAY_TOKEN": team.tokens[token]}
        )
        return done.returncode, done.stdout, done.stderr

    code, out, err = cli("deploy", _uri(1), "--env", name, "--port", str(port), timeout=300)
    assert code == 0, err
    assert f"is live in {name} at http://127.0.0.1:{port}" in " ".join(out.split())
    assert _predict(f"http://127.0.0.1:{port}") == ([2.0], "1")

    code, out, err = cli(
        "rollout", "start", _uri(2), "--env", name, "--steps", "10,pause,100",
        "--interval", "1s", "--wait", timeout=300,
    )  # fmt: skip
    assert code == 0, err
    assert "paused" in out
    code, out, err = cli("rollout", "status", "--env", name, "--json")
    assert code == 0 and json.loads(out)["status"] == "paused", err
    code, _, err = cli("rollout", "start", _uri(2), "--env", name)
    assert code == 3 and f"is paused in {name}" in err and "rollout abort" in err
    code, out, err = cli("rollout", "promote", "--env", name, "--full")
    assert code == 0 and f"Asked the agent of {name} to promote" in out, err
    assert _eventually(
        lambda: (
            getattr(records.latest_rollout(name, client=team.client), "status", "") == "promoted"
        ),
        within_s=120,
    )
    assert _eventually(lambda: _predict(f"http://127.0.0.1:{port}") == ([2.0], "2"))

    code, out, err = cli("deployments", "down", name)
    assert code == 0 and f"Stopped {name}" in out, err
    assert records.get_deployment(name, client=team.client).status == "stopped"
    code, out, err = cli("deployments", "up", name, timeout=300)
    assert code == 0 and f"models:/{MODEL}/2 is live in {name}" in " ".join(out.split()), err

    # errors come back as the same exit codes and hints as locally
    code, _, err = cli("deploy", _uri(1), "--env", name, "--host", "0.0.0.0")
    assert code == 2 and "cannot listen on 0.0.0.0" in err
    code, _, err = cli("deploy", _uri(1), "--env", "production")
    assert code == 9 and f"approvals request {_uri(1)} --env production" in " ".join(err.split())
    code, _, err = cli("deployments", "down", name, token="viewer")
    assert code == 9 and "vic (viewer) may not" in err
    assert records.get_deployment(name, client=team.client).agent_alive
    assert not (home / "shipway.db").exists()
