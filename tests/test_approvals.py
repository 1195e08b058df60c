"""Approvals: policies per environment, four eyes, versions bound and expiring, automatic
policies deciding with evidence, and enforcement where aliases move and deployments start."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import shipway
from deploy_helpers import Doubler
from serving_helpers import free_port, run_cli
from shipway.config import Settings
from shipway.deploy import control, records
from shipway.deploy.rollout import parse_steps
from shipway.errors import (
    ApprovalRequiredError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from shipway.governance.approvals import (
    approve,
    check_approved,
    get_policy,
    list_approvals,
    list_policies,
    reject,
    request_approval,
    set_policy,
)
from shipway.monitoring.fairness import fairness
from shipway.monitoring.history import save_result
from shipway.monitoring.monitor import monitor
from shipway.monitoring.result import Alert, MonitorResult
from shipway.store import utcnow


@pytest.fixture
def bob(shipway_home: Path) -> Iterator[shipway.Client]:
    """The data scientist who registers versions and asks for approvals."""
    client = shipway.Client(Settings(actor="bob"))
    yield client
    client.store.close()


@pytest.fixture
def alice(shipway_home: Path) -> Iterator[shipway.Client]:
    """A second person, who approves."""
    client = shipway.Client(Settings(actor="alice"))
    yield client
    client.store.close()


def _version(client: shipway.Client, auc: float | None = None) -> shipway.ModelVersionInfo:
    """A new version of `credit` whose run logged `roc_auc` (when given)."""
    with shipway.start_run("credit", client=client) as run:
        if auc is not None:
            run.log_metric("roc_auc", auc)
        run.log_model(Doubler(), input_example=pd.DataFrame({"x": [1.0, 2.5]}))
    return shipway.register_model(run, "credit", client=client)


def _actions(client: shipway.Client) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in shipway.audit_log(limit=1000, client=client)]


def test_policy_defaults_and_setting_them(bob: shipway.Client) -> None:
    production = get_policy("production", client=bob)
    assert (production.mode, production.rules, production.updated_by) == ("manual", [], None)
    assert get_policy("staging", client=bob).mode == "none"
    assert [p.environment for p in list_policies(client=bob)] == ["production"]

    rules = [{"metric": "roc_auc", "at_least": "champion"}, {"monitoring": "no_critical"}]
    staging = set_policy("staging", "automatic", rules, ttl_hours=4, client=bob)
    assert staging.mode == "automatic" and staging.rules == rules and staging.ttl_hours == 4
    assert staging.updated_by == "bob"
    assert get_policy("staging", client=bob) == staging
    assert [p.environment for p in list_policies(client=bob)] == ["production", "staging"]
    set_policy("production", "none", client=bob)
    assert get_policy("production", client=bob).mode == "none"
    event = shipway.audit_log(client=bob)[-1]
    assert (event.action, event.subject, event.actor) == ("policy.set", "policy:production", "bob")
    assert event.before == {"mode": "manual", "rules": [], "ttl_hours": 72}
    assert event.after == {"mode": "none", "rules": [], "ttl_hours": 72.0}

    before = len(shipway.audit_log(limit=1000, client=bob))
    bad: list[tuple[Any, ...]] = [
        ("qa", "automatic", []),  # an automatic policy needs rules
        ("qa", "manual", [{"monitoring": "no_critical"}]),  # rules are for automatic only
        ("qa", "automatic", [{"metric": "roc_auc"}]),  # no bound
        ("qa", "automatic", [{"monitoring": "quiet"}]),
        ("qa", "sometimes", []),
        ("no env", "manual", []),
    ]
    for env, mode, rules in bad:
        with pytest.raises(InvalidInputError):
            set_policy(env, mode, rules, client=bob)
    with pytest.raises(InvalidInputError, match="positive"):
        set_policy("qa", "manual", ttl_hours=0, client=bob)
    assert len(shipway.audit_log(limit=1000, client=bob)) == before
    assert get_policy("qa", client=bob).mode == "none"


def test_an_approval_by_another_person_admits_that_exact_version(
    bob: shipway.Client, alice: shipway.Client
) -> None:
    v1, v2 = _version(bob), _version(bob)
    assert check_approved("staging", "credit", 1, client=bob) is None  # policy none
    with pytest.raises(ApprovalRequiredError) as refused:
        check_approved("production", "credit", 1, client=bob)
    assert "shipway approvals request models:/credit/1 --env production" in str(refused.value)
    assert refused.value.exit_code == 9 and refused.value.http_status == 403

    shipway.set_alias(v1.uri, "champion", client=bob)  # not an environment: no approval
    asked = request_approval(
        "models:/credit@champion", "production", comment="better recall", client=bob
    )
    assert (asked.model, asked.version, asked.status) == ("credit", 1, "pending")
    assert asked.requested_by == "bob" and asked.comment == "better recall"
    with pytest.raises(ApprovalRequiredError, match=f"approvals approve {asked.id}"):
        check_approved("production", "credit", 1, client=bob)
    with pytest.raises(ConflictError, match=f"{asked.id} .* already pending"):
        request_approval(v1.uri, "production", client=bob)

    given = approve(asked.id, comment="looks good", client=alice)
    assert (given.status, given.decided_by, given.decision_comment) == (
        "approved", "alice", "looks good",
    )  # fmt: skip
    assert given.decided_at is not None and given.expires_at is not None
    assert given.expires_at - given.decided_at == timedelta(hours=72)
    assert check_approved("production", "credit", 1, client=bob) == given
    with pytest.raises(ApprovalRequiredError, match="models:/credit/2"):
        check_approved("production", "credit", v2.version, client=bob)
    with pytest.raises(ApprovalRequiredError):
        check_approved("production", "other", 1, client=bob)
    assert list_approvals("production", client=bob) == [given]
    assert list_approvals("production", status="pending", client=bob) == []
    assert list_approvals("staging", client=bob) == []
    assert ("approval.request", "bob") in _actions(bob)
    assert ("approval.approve", "alice") in _actions(bob)


def test_approvals_round_trip_on_each_backend(backend: shipway.Client) -> None:
    """Times, JSON evidence and the expiry comparison on SQLite and PostgreSQL alike."""
    _version(backend, auc=0.8)
    other = shipway.Client(Settings(actor=f"not-{backend.actor}"))
    try:
        asked = request_approval("models:/credit/1", "production", client=backend)
        given = approve(asked.id, client=other)
        assert check_approved("production", "credit", 1, client=backend) == given
        assert given.expires_at is not None and given.expires_at.tzinfo is not None
        set_policy("qa", "automatic", [{"metric": "roc_auc", "at_least": 0.5}], client=other)
        auto = request_approval("models:/credit/1", "qa", client=backend)
        assert auto.status == "approved" and auto.evidence["rules"][0]["value"] == 0.8
        assert list_approvals(client=other) == [auto, given]
    finally:
        other.store.close()


def test_nobody_decides_their_own_request(bob: shipway.Client, alice: shipway.Client) -> None:
    _version(bob)
    asked = request_approval("models:/credit/1", "production", client=bob)
    before = _actions(bob)
    with pytest.raises(ForbiddenError, match=r"bob requested approval .* four eyes") as refused:
        approve(asked.id, client=bob)
    assert refused.value.exit_code == 9
    with pytest.raises(ForbiddenError, match="four eyes"):
        reject(asked.id, client=bob)
    assert _actions(bob) == before
    assert list_approvals(client=bob)[0].status == "pending"
    with pytest.raises(ApprovalRequiredError):
        check_approved("production", "credit", 1, client=bob)
    with pytest.raises(NotFoundError, match="Approval 'nosuch' not found"):
        approve("nosuch", client=alice)


def test_a_rejected_request_admits_nothing_and_cannot_be_approved(
    bob: shipway.Client, alice: shipway.Client
) -> None:
    _version(bob)
    asked = request_approval("models:/credit/1", "production", client=bob)
    no = reject(asked.id, comment="fails on thin files", client=alice)
    assert (no.status, no.decided_by, no.expires_at) == ("rejected", "alice", None)
    with pytest.raises(ApprovalRequiredError, match="rejected by alice"):
        check_approved("production", "credit", 1, client=bob)
    with pytest.raises(ConflictError, match="already rejected by alice"):
        approve(asked.id, client=alice)
    again = request_approval("models:/credit/1", "production", client=bob)  # asking anew is fine
    assert again.status == "pending" and again.id != asked.id
    assert [a.id for a in list_approvals(status="rejected", client=bob)] == [asked.id]


def test_approvals_and_requests_expire(bob: shipway.Client, alice: shipway.Client) -> None:
    set_policy("production", "manual", ttl_hours=3 / 3600, client=alice)  # valid three seconds
    for _ in range(2):
        _version(bob)
    first = request_approval("models:/credit/1", "production", client=bob)
    second = request_approval("models:/credit/2", "production", client=bob)
    given = approve(first.id, client=alice)
    assert check_approved("production", "credit", 1, client=bob) == given
    assert given.expires_at is not None and second.expires_at is not None
    time.sleep(max(0.0, (given.expires_at - utcnow()).total_seconds()) + 0.1)
    with pytest.raises(ApprovalRequiredError, match=f"{first.id}, was expired"):
        check_approved("production", "credit", 1, client=bob)
    with pytest.raises(ConflictError, match="expired unanswered"):
        approve(second.id, client=alice)
    assert {a.id for a in list_approvals(status="expired", client=bob)} == {first.id, second.id}
    # an expired request no longer blocks asking again
    assert request_approval("models:/credit/2", "production", client=bob).status == "pending"


def test_an_automatic_policy_compares_with_the_champion_and_keeps_its_evidence(
    bob: shipway.Client,
) -> None:
    champion = _version(bob, auc=0.80)
    better, worse, unmeasured = _version(bob, 0.85), _version(bob, 0.75), _version(bob)
    shipway.set_alias(champion.uri, "champion", client=bob)
    set_policy(
        "production", "automatic", [{"metric": "roc_auc", "at_least": "champion"}], client=bob
    )

    yes = request_approval(better.uri, "production", client=bob)
    assert yes.status == "approved" and yes.decided_by == "policy:production"
    assert yes.policy == "production automatic: roc_auc at least the champion's"
    [evidence] = yes.evidence["rules"]
    assert evidence["passed"] is True
    assert (evidence["value"], evidence["threshold"], evidence["champion"]) == (0.85, 0.80, 1)
    assert check_approved("production", "credit", better.version, client=bob) == yes
    event = shipway.audit_log(client=bob)[-1]
    assert event.action == "approval.approve" and event.after is not None
    assert event.after["policy"] == yes.policy and event.after["evidence"] == yes.evidence

    no = request_approval(worse.uri, "production", client=bob)
    assert no.status == "rejected" and no.expires_at is None
    assert "0.75 < 0.8 of the champion (version 1)" in no.evidence["rules"][0]["detail"]
    with pytest.raises(ApprovalRequiredError, match="rejected by policy:production"):
        check_approved("production", "credit", worse.version, client=bob)

    missing = request_approval(unmeasured.uri, "production", client=bob)
    assert missing.status == "rejected"
    assert "has no 'roc_auc' metric" in missing.evidence["rules"][0]["detail"]

    set_policy("production", "automatic", [{"metric": "roc_auc", "at_least": 0.9}], client=bob)
    assert request_approval(better.uri, "production", client=bob).status == "rejected"
    shipway.delete_alias("credit", "champion", client=bob)
    set_policy(
        "production", "automatic", [{"metric": "roc_auc", "at_least": "champion"}], client=bob
    )
    orphan = request_approval(better.uri, "production", client=bob)
    assert orphan.status == "rejected"
    assert "is the champion to compare with" in orphan.evidence["rules"][0]["detail"]


def _result(
    alerts: list[Alert], *, fairness_ratio_k: int | None = None, model: str = "credit"
) -> MonitorResult:
    """A stored monitoring result of `model` with exactly these alerts (and, given k, a
    fairness report whose parity ratio is k/10: group b selected k of 20, group a 10 of 20)."""
    rng = np.random.default_rng(0)
    base = monitor(
        pd.DataFrame({"a": rng.normal(0, 1, 200)}),
        pd.DataFrame({"a": rng.normal(0, 1, 100)}),
        model=model,
        version=1,
    )
    report = None
    if fairness_ratio_k is not None:
        k = fairness_ratio_k
        frame = pd.DataFrame(
            {"g": ["a"] * 20 + ["b"] * 20, "p": [1] * 10 + [0] * 10 + [1] * k + [0] * (20 - k)}
        )
        report = fairness(frame, sensitive="g", prediction="p")
    result = base.model_copy(update={"id": uuid.uuid4().hex, "alerts": alerts, "fairness": report})
    save_result(result)
    time.sleep(0.01)  # results are ordered by their time
    return result


def test_an_automatic_policy_reads_the_latest_monitoring_result(bob: shipway.Client) -> None:
    v1 = _version(bob)
    set_policy("production", "automatic", [{"monitoring": "no_critical"}], client=bob)
    nothing = request_approval(v1.uri, "production", client=bob)
    assert nothing.status == "rejected"
    assert "No monitoring result of 'credit'" in nothing.evidence["rules"][0]["detail"]

    critical = Alert(name="dataset_drift", severity="critical", message="3 of 5 drifted")
    _result([], model="other")  # another model's result does not count
    bad = _result([critical, Alert(name="data_quality", severity="warning", message="nulls")])
    no = request_approval(v1.uri, "production", client=bob)
    [evidence] = no.evidence["rules"]
    assert no.status == "rejected" and evidence["result"] == bad.id
    assert evidence["critical"] == ["3 of 5 drifted"]

    good = _result([Alert(name="data_quality", severity="warning", message="nulls")])
    yes = request_approval(v1.uri, "production", client=bob)
    assert yes.status == "approved" and yes.evidence["rules"][0]["result"] == good.id
    assert check_approved("production", "credit", 1, client=bob) == yes


def test_an_automatic_fairness_rule_refuses_a_regression(bob: shipway.Client) -> None:
    v1 = _version(bob)
    set_policy("production", "automatic", [{"fairness": "no_regression"}], client=bob)
    _result([])  # no fairness report: nothing to judge by
    assert request_approval(v1.uri, "production", client=bob).status == "rejected"

    _result([], fairness_ratio_k=9)  # parity ratio 0.9: fine
    assert request_approval(v1.uri, "production", client=bob).status == "approved"
    _result([], fairness_ratio_k=5)  # 0.5: a four-fifths violation, worse than 0.9
    worse = request_approval(v1.uri, "production", client=bob)
    assert worse.status == "rejected"
    assert worse.evidence["rules"][0]["previous_ratio"] == pytest.approx(0.9)
    _result([])  # a run without a sensitive column does not hide the reports
    _result([], fairness_ratio_k=6)  # 0.6: still a violation, but no regression from 0.5
    better = request_approval(v1.uri, "production", client=bob)
    assert better.status == "approved"
    assert better.evidence["rules"][0]["ratio"] == pytest.approx(0.6)


def test_refused_alias_moves_deployments_and_rollouts_change_nothing(
    bob: shipway.Client, alice: shipway.Client
) -> None:
    v1, v2 = _version(bob), _version(bob)
    before = _actions(bob)
    with pytest.raises(ApprovalRequiredError, match="models:/credit/1 needs an approval"):
        shipway.set_alias(v1.uri, "production", client=bob)
    assert shipway.get_model_version(v1.uri, client=bob).aliases == []
    with pytest.raises(ApprovalRequiredError):
        control.deploy(v1.uri, "production", port=free_port(), client=bob)
    assert records.find_deployment("production", client=bob) is None
    with pytest.raises(ApprovalRequiredError):  # refused before it looks for a deployment
        control.rollout_start(
            v2.uri, "production", steps=parse_steps("50,100"), interval_s=1, client=bob
        )
    assert records.latest_rollout("production", client=bob) is None
    assert _actions(bob) == before

    approve(request_approval(v1.uri, "production", client=bob).id, client=alice)
    assert shipway.set_alias(v1.uri, "production", client=bob).aliases == ["production"]
    # the desired state only, as `deploy` writes it: no agent is started
    records.request_deployment(
        "production", model="credit", version=1, replicas=1, host="127.0.0.1",
        port=free_port(), runtime="process", image=None, client=bob,
    )  # fmt: skip
    before = _actions(bob)
    desired = records.get_deployment("production", client=bob)
    with pytest.raises(ApprovalRequiredError, match="models:/credit/2"):
        shipway.set_alias(v2.uri, "production", client=bob)
    with pytest.raises(ApprovalRequiredError, match="models:/credit/2"):
        control.deploy(v2.uri, "production", client=bob)
    with pytest.raises(ApprovalRequiredError, match="models:/credit/2"):
        control.rollout_start(
            v2.uri, "production", steps=parse_steps("50,100"), interval_s=1, client=bob
        )
    assert shipway.get_model_version("models:/credit@production", client=bob).version == 1
    assert records.get_deployment("production", client=bob).version == desired.version == 1
    assert records.latest_rollout("production", client=bob) is None
    assert _actions(bob) == before
    # the agent's move after an approved rollout is the consequence of that approval
    assert shipway.set_alias(v2.uri, "production", client=bob, approved=True).version == 2


def test_the_cli_requests_and_approves_as_two_people(shipway_home: Path, bob: Any) -> None:
    _version(bob, auc=0.8)
    as_bob, as_alice = {"SHIPWAY_ACTOR": "bob"}, {"SHIPWAY_ACTOR": "alice"}
    policies = json.loads(run_cli(shipway_home, "approvals", "policy", "list", "--json").stdout)
    assert [(p["environment"], p["mode"]) for p in policies] == [("production", "manual")]

    moved = run_cli(shipway_home, "models", "alias", "models:/credit/1", "production", env=as_bob)
    assert moved.returncode == 9
    assert "shipway approvals request models:/credit/1 --env production" in moved.stderr
    assert "Traceback" not in moved.stderr and len(moved.stderr.strip().splitlines()) == 1

    asked = run_cli(
        shipway_home, "approvals", "request", "models:/credit/1", "--env", "production",
        "--comment", "ready", "--json", env=as_bob,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    request = json.loads(asked.stdout)
    assert (request["status"], request["requested_by"]) == ("pending", "bob")
    own = run_cli(shipway_home, "approvals", "approve", request["id"], env=as_bob)
    assert own.returncode == 9 and "four eyes" in own.stderr
    given = run_cli(shipway_home, "approvals", "approve", request["id"], "-m", "ok", env=as_alice)
    assert given.returncode == 0, given.stderr
    assert "approved" in given.stdout and "decided by alice" in given.stdout
    listed = run_cli(
        shipway_home, "approvals", "list", "--env", "production", env={"COLUMNS": "80"}
    )
    assert request["id"] in listed.stdout and "approved" in listed.stdout
    assert "…" not in listed.stdout  # every cell whole at 80 columns; the comment wraps
    approved = json.loads(
        run_cli(shipway_home, "approvals", "list", "--status", "approved", "--json").stdout
    )
    assert [(a["id"], a["decided_by"]) for a in approved] == [(request["id"], "alice")]
    moved = run_cli(shipway_home, "models", "alias", "models:/credit/1", "production", env=as_bob)
    assert moved.returncode == 0, moved.stderr

    rule = '{"metric": "roc_auc", "at_least": 0.9}'
    set_ = run_cli(
        shipway_home, "approvals", "policy", "set", "staging", "--mode", "automatic",
        "--rule", rule, "--ttl-hours", "2",
    )  # fmt: skip
    assert set_.returncode == 0, set_.stderr
    assert "roc_auc at least 0.9" in set_.stdout
    auto = run_cli(shipway_home, "approvals", "request", "models:/credit/1", "--env", "staging")
    assert auto.returncode == 0 and "rejected" in auto.stdout
    assert "roc_auc 0.8 < 0.9" in auto.stdout
    bad = run_cli(
        shipway_home, "approvals", "policy", "set", "staging", "--mode", "automatic",
        "--rule", "roc_auc>0.9",
    )  # fmt: skip
    assert bad.returncode == 2 and "is not JSON" in bad.stderr
    missing = run_cli(shipway_home, "approvals", "reject", "nosuch", env=as_alice)
    assert missing.returncode == 2 and "Approval 'nosuch' not found" in missing.stderr
