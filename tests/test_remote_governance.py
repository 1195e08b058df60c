"""Approvals, policies, monitoring results, deployments and users through the team server.

One live server over one seeded store for the module; each read through the server must give
what the same read gives locally on that store, and each change through it is audited as the
token's user. Each test uses environments and models of its own, since the store is shared.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from server_helpers import Team, module_store, team_server
from serving_helpers import run_cli
from shipway.deploy import records as deploy
from shipway.deploy.rollout import new_rollout
from shipway.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from shipway.governance import approvals, identity
from shipway.monitoring import history, monitor, save_result
from test_remote import _close_connections, remote_client

pytestmark = pytest.mark.slow
__all__ = ["_close_connections"]  # the autouse fixture closing each test's connections


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("remote-governance-home")
    with module_store(home) as client, team_server(client) as team:
        team.add_user("abe", "approver")  # a second approver, for four eyes
        _seed(team.client.as_user("dana"))
        yield team


def _seed(dana: shipway.Client) -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (x["a"] > 0).astype(int)
    for c in (0.5, 2.0):
        with shipway.start_run("gov", client=dana) as run:
            run.log_model(LogisticRegression(C=c).fit(x, y))
        shipway.register_model(run, "gov", client=dana)
    ref = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    cur = pd.DataFrame({"a": rng.normal(1, 1, size=200), "b": rng.normal(size=200)})
    for version in (1, 2):
        save_result(monitor(ref, cur, model="gov", version=version), client=dana)
    deploy.request_deployment(
        "gov-staging",
        model="gov",
        version=1,
        replicas=1,
        host="127.0.0.1",
        port=9,
        runtime="process",
        image=None,
        client=dana,
    )
    state = new_rollout(
        environment="gov-staging",
        model="gov",
        stable_version=1,
        canary_version=2,
        steps=[10, 50, 100],
        interval_s=30,
        now=time.time(),
    )
    deploy.start_rollout(state, client=dana)


def _actors(team: Team, subject: str) -> list[tuple[str, str]]:
    return [
        (e.action, e.actor)
        for e in shipway.audit_log(limit=1000, subject=subject, client=team.client)
    ]


# -- approvals and policies ----------------------------------------------------------------


def test_policies_are_set_and_listed_remotely(team: Team) -> None:
    admin = remote_client(team.url, team.tokens["admin"])
    rules = [{"metric": "roc_auc", "at_least": 0.5}]
    policy = approvals.set_policy("gov-auto", "automatic", rules, 12, client=admin)
    assert (policy.environment, policy.mode, policy.rules, policy.ttl_hours) == (
        "gov-auto",
        "automatic",
        rules,
        12,
    )
    assert policy.updated_by == "ada" and policy.updated_at is not None
    assert policy == approvals.get_policy("gov-auto", client=team.client)
    manual = approvals.set_policy("gov-manual", "manual", client=admin)
    assert manual.mode == "manual" and manual.updated_by == "ada"
    remote = approvals.list_policies(client=remote_client(team.url, team.tokens["viewer"]))
    assert remote == approvals.list_policies(client=team.client)
    assert {"gov-auto", "gov-manual", "production"} <= {p.environment for p in remote}
    assert _actors(team, "policy:gov-auto") == [("policy.set", "ada")]

    # Checked here first, as locally: nothing is sent.
    with pytest.raises(InvalidInputError, match="Unknown approval mode"):
        approvals.set_policy("gov-manual", "sometimes", client=admin)
    with pytest.raises(InvalidInputError, match="valid environment"):
        approvals.set_policy("../x", "manual", client=admin)
    # Only an admin sets policies.
    for who in ("viewer", "developer", "approver"):
        with pytest.raises(ForbiddenError):
            approvals.set_policy(
                "gov-manual", "none", client=remote_client(team.url, team.tokens[who])
            )


def test_requests_and_decisions_follow_four_eyes_remotely(team: Team) -> None:
    approvals.set_policy("gov-prod", "manual", client=team.client)
    dana = remote_client(team.url, team.tokens["developer"])
    avery = remote_client(team.url, team.tokens["approver"])
    abe = remote_client(team.url, team.tokens["abe"])

    asked = approvals.request_approval("models:/gov/1", "gov-prod", comment="ok?", client=dana)
    assert (asked.status, asked.requested_by, asked.comment, asked.uri) == (
        "pending",
        "dana",
        "ok?",
        "models:/gov/1",
    )
    with pytest.raises(ConflictError, match="already pending"):
        approvals.request_approval("models:/gov/1", "gov-prod", client=dana)
    with pytest.raises(ForbiddenError):  # a developer may not decide at all
        approvals.approve(asked.id, client=dana)
    done = approvals.approve(asked.id, comment="fine", client=avery)
    assert (done.status, done.decided_by, done.decision_comment) == ("approved", "avery", "fine")
    assert done.expires_at is not None
    with pytest.raises(ConflictError, match="already approved"):
        approvals.reject(asked.id, client=abe)
    assert _actors(team, f"approval:{asked.id}") == [
        ("approval.request", "dana"),
        ("approval.approve", "avery"),
    ]

    # Four eyes: an approver who asked may not decide; another approver may.
    own = approvals.request_approval("models:/gov/2", "gov-prod", client=avery)
    with pytest.raises(ForbiddenError, match="four eyes"):
        approvals.approve(own.id, client=avery)
    with pytest.raises(ForbiddenError, match="four eyes"):
        approvals.reject(own.id, client=avery)
    rejected = approvals.reject(own.id, comment="not yet", client=abe)
    assert (rejected.status, rejected.decided_by) == ("rejected", "abe")
    assert _actors(team, f"approval:{own.id}") == [
        ("approval.request", "avery"),
        ("approval.reject", "abe"),
    ]
    with pytest.raises(NotFoundError):
        approvals.approve("nosuchid", client=abe)

    viewer = remote_client(team.url, team.tokens["viewer"])
    for filters in ({}, {"status": "approved"}, {"model": "gov"}, {"status": "rejected"}):
        local = approvals.list_approvals("gov-prod", client=team.client, **filters)
        assert approvals.list_approvals("gov-prod", client=viewer, **filters) == local
    assert [a.id for a in approvals.list_approvals("gov-prod", client=viewer)] == [
        own.id,
        asked.id,
    ]
    with pytest.raises(InvalidInputError, match="Unknown approval status"):
        approvals.list_approvals(status="maybe", client=viewer)

    # The approval counts wherever it is checked: the alias moves through the server.
    shipway.set_alias("models:/gov/1", "gov-prod", client=dana)


def test_an_automatic_policy_decides_remotely(team: Team) -> None:
    approvals.set_policy("gov-rules", "automatic", [{"metric": "nosuch", "at_least": 1}], 1,
                         client=team.client)  # fmt: skip
    decided = approvals.request_approval(
        "models:/gov/2", "gov-rules", client=remote_client(team.url, team.tokens["developer"])
    )
    assert decided.status == "rejected" and decided.decided_by == "policy:gov-rules"
    assert (
        decided.evidence and decided == approvals.list_approvals("gov-rules", client=team.client)[0]
    )


def test_a_viewer_may_not_request_or_decide(team: Team) -> None:
    approvals.set_policy("gov-view", "manual", client=team.client)
    asked = approvals.request_approval(
        "models:/gov/1", "gov-view", client=team.client.as_user("dana")
    )
    viewer = remote_client(team.url, team.tokens["viewer"])
    with pytest.raises(ForbiddenError, match=r"vic \(viewer\) may not"):
        approvals.request_approval("models:/gov/2", "gov-view", client=viewer)
    for decide in (approvals.approve, approvals.reject):
        with pytest.raises(ForbiddenError):
            decide(asked.id, client=viewer)
    assert approvals.list_approvals("gov-view", client=team.client)[0].status == "pending"


def test_the_approvals_cli_works_remotely(team: Team, tmp_path: Path) -> None:
    approvals.set_policy("gov-cli", "manual", client=team.client)
    home = tmp_path / "client-home"
    env = {"SHIPWAY_TRACKING_URI": team.url, "SHIPWAY_TOKEN": team.tokens["developer"]}

    def cli(*args: str, token: str = "developer") -> str:
        done = run_cli(home, *args, env=env | {"SHIPWAY_TOKEN": team.tokens[token]})
        assert done.returncode == 0, done.stderr
        return done.stdout

    asked = json.loads(cli("approvals", "request", "models:/gov/1", "--env", "gov-cli", "--json"))
    assert asked["requested_by"] == "dana" and asked["status"] == "pending"
    listed = json.loads(cli("approvals", "list", "--env", "gov-cli", "--json"))
    local = approvals.list_approvals("gov-cli", client=team.client)
    assert listed == [a.to_dict() for a in local]
    refused = run_cli(home, "approvals", "approve", asked["id"], env=env)
    assert refused.returncode != 0 and "may not" in refused.stderr
    approved = json.loads(cli("approvals", "approve", asked["id"], "--json", token="approver"))
    assert approved["decided_by"] == "avery"
    policies = json.loads(cli("approvals", "policy", "list", "--json"))
    assert "gov-cli" in {p["environment"] for p in policies}
    assert not (home / "shipway.db").exists()


# -- monitoring results and deployments ----------------------------------------------------


def test_monitoring_results_read_the_same_remotely(team: Team, tmp_path: Path) -> None:
    viewer = remote_client(team.url, team.tokens["viewer"])
    local = history.list_results("gov", client=team.client)
    remote = history.list_results("gov", client=viewer)
    assert [r.to_dict() for r in remote] == [r.to_dict() for r in local]
    assert [r.version for r in remote] == [2, 1]
    assert history.list_results(limit=1, client=viewer) == history.list_results(
        limit=1, client=team.client
    )
    one = local[0]
    assert history.get_result(one.id[:10], client=viewer).to_dict() == one.to_dict()
    with pytest.raises(NotFoundError):
        history.get_result("nosuchresult", client=viewer)

    home = tmp_path / "client-home"
    env = {"SHIPWAY_TRACKING_URI": team.url, "SHIPWAY_TOKEN": team.tokens["viewer"]}
    done = run_cli(home, "monitor", "list", "gov", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [r.to_dict() for r in local]
    done = run_cli(home, "monitor", "show", one.id, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == one.to_dict()


def test_deployments_read_the_same_remotely(team: Team, tmp_path: Path) -> None:
    viewer = remote_client(team.url, team.tokens["viewer"])
    local = deploy.get_deployment("gov-staging", client=team.client)
    remote = deploy.get_deployment("gov-staging", client=viewer)
    assert remote.to_dict() == local.to_dict() and remote.url == local.url
    assert [d.to_dict() for d in deploy.list_deployments(client=viewer)] == [
        d.to_dict() for d in deploy.list_deployments(client=team.client)
    ]
    rollout = deploy.latest_rollout("gov-staging", client=viewer)
    assert rollout is not None and rollout.canary_version == 2
    assert rollout == deploy.latest_rollout("gov-staging", client=team.client)
    assert deploy.latest_rollout("gov-nowhere", client=viewer) is None
    with pytest.raises(NotFoundError):
        deploy.get_deployment("gov-nowhere", client=viewer)

    home = tmp_path / "client-home"
    env = {"SHIPWAY_TRACKING_URI": team.url, "SHIPWAY_TOKEN": team.tokens["viewer"]}
    done = run_cli(home, "deployments", "show", "gov-staging", "--json", env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["model"] == "gov" and shown["rollout"]["id"] == rollout.id
    done = run_cli(home, "deployments", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "gov-staging" in {d["environment"] for d in json.loads(done.stdout)}
    done = run_cli(home, "rollout", "status", "--env", "gov-staging", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == rollout.id


# -- users and tokens ----------------------------------------------------------------------


def test_users_and_tokens_are_administered_remotely(team: Team, tmp_path: Path) -> None:
    admin = remote_client(team.url, team.tokens["admin"])
    user = identity.create_user("gov-eve", "viewer", client=admin)
    assert (user.name, user.role, user.created_by, user.disabled) == (
        "gov-eve",
        "viewer",
        "ada",
        False,
    )
    assert identity.list_users(client=admin) == identity.list_users(client=team.client)
    info, token = identity.create_token("gov-eve", name="ci", client=admin)
    assert info.user == "gov-eve" and info.status == "active" and token.startswith("shw_")
    eve = remote_client(team.url, token)
    assert shipway.list_models(client=eve)  # the new token works
    assert identity.list_tokens("gov-eve", client=admin) == identity.list_tokens(
        "gov-eve", client=team.client
    )
    promoted = identity.set_role("gov-eve", "developer", client=admin)
    assert promoted.role == "developer"
    identity.revoke_token(info.id, client=admin)
    [revoked] = identity.list_tokens("gov-eve", client=admin)
    assert revoked.status == "revoked"
    disabled = identity.disable_user("gov-eve", client=admin)
    assert disabled.disabled
    assert _actors(team, "user:gov-eve") == [
        ("users.create", "ada"),
        ("users.role", "ada"),
        ("users.disable", "ada"),
    ]
    assert _actors(team, f"token:{info.id}") == [("tokens.create", "ada"), ("tokens.revoke", "ada")]

    # Only an admin administers.
    dev = remote_client(team.url, team.tokens["developer"])
    for call in (
        lambda: identity.create_user("gov-mal", "admin", client=dev),
        lambda: identity.create_token("dana", name="more", client=dev),
        lambda: identity.set_role("dana", "admin", client=dev),
        lambda: identity.list_users(client=dev),
    ):
        with pytest.raises(ForbiddenError):
            call()

    env = {"SHIPWAY_TRACKING_URI": team.url, "SHIPWAY_TOKEN": team.tokens["admin"]}
    done = run_cli(tmp_path / "client-home", "users", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert {u["name"] for u in json.loads(done.stdout)} >= {"ada", "gov-eve"}
    bootstrap = run_cli(tmp_path / "client-home", "users", "create-admin", "gov-root", env=env)
    assert bootstrap.returncode != 0  # bootstrapping the first admin stays with the store
