"""The team server's REST API end to end, over a real uvicorn on loopback: runs, blobs, models,
aliases under approval, audit filters, users and tokens, deployments and monitoring reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from server_helpers import Team, raw_request, team_server
from shipway.artifacts import ArtifactStore
from shipway.flavors import save_to_store
from shipway.flavors.model import read_manifest

API = "/api/v1"


@pytest.fixture
def team(shipway_home: Path) -> Iterator[Team]:
    client = shipway.Client()
    try:
        with team_server(client) as team:
            yield team
    finally:
        client.store.close()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def upload_model(http: httpx.Client, tmp_path: Path) -> str:
    """Save a small model to a local store, as a remote client would, and upload its blobs
    (files first, then the manifest); returns the manifest digest."""
    local = ArtifactStore((tmp_path / "local-blobs").as_uri())
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    digest = save_to_store(local, model, input_example=X.head()).manifest_digest
    for blob in read_manifest(local, digest)["files"].values():
        ok(http.put(f"{API}/artifacts/{blob}", content=local.get_bytes(blob)))
    ok(http.put(f"{API}/artifacts/{digest}", content=local.get_bytes(digest)))
    return digest


def test_runs_logged_through_the_api(team: Team) -> None:
    with team.http("developer") as dev:
        run = ok(
            dev.post(
                f"{API}/runs",
                json={
                    "experiment": "credit",
                    "name": "first",
                    "tags": {"team": "risk"},
                    "environment": {"git": {"commit": "abc123", "dirty": False}},
                },
            ),
            201,
        )
        rid = run["id"]
        assert run["status"] == "running" and run["actor"] == "dana"
        ok(dev.post(f"{API}/runs/{rid}/params", json={"params": {"C": 0.5, "penalty": "l2"}}))
        ok(dev.post(f"{API}/runs/{rid}/metrics", json={"metrics": {"auc": 0.7}, "step": 1}))
        ok(dev.post(f"{API}/runs/{rid}/metrics", json={"metrics": {"auc": 0.8}, "step": 2}))
        ok(dev.post(f"{API}/runs/{rid}/tags", json={"tags": {"stage": "try"}}))
        nan = dev.post(
            f"{API}/runs/{rid}/metrics",
            content=b'{"metrics": {"auc": NaN}}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 422
        shown = ok(dev.get(f"{API}/runs/{rid[:8]}"))  # a unique prefix is enough to read
        assert shown["params"] == {"C": "0.5", "penalty": "l2"}
        assert shown["metrics"] == {"auc": 0.8}
        assert shown["tags"] == {"team": "risk", "stage": "try"}
        assert shown["environment"]["git"]["commit"] == "abc123"
        ended = ok(dev.patch(f"{API}/runs/{rid}", json={"status": "finished"}))
        assert ended["status"] == "finished" and ended["end_time"]
        late = dev.post(f"{API}/runs/{rid}/metrics", json={"metrics": {"auc": 0.9}})
        assert late.status_code == 409 and "finished" in late.json()["error"]
        assert dev.post(f"{API}/runs/nope/params", json={"params": {"a": 1}}).status_code == 404
        listed = ok(dev.get(f"{API}/runs", params={"experiment": "credit", "limit": 5}))
        assert [r["id"] for r in listed] == [rid]
        missing = dev.get(f"{API}/runs", params={"experiment": "nope"})
        assert missing.status_code == 404 and "hint" in missing.json()
        assert dev.get(f"{API}/runs", params={"limit": "many"}).status_code == 422
        assert dev.get(f"{API}/runs", params={"limit": 0}).status_code == 422
    # The store agrees with what the API said.
    stored = shipway.get_run(rid, client=team.client)
    assert stored.metrics == {"auc": 0.8} and stored.status == "finished"


def test_bodies_are_checked(team: Team) -> None:
    with team.http("developer") as dev:
        bad_json = dev.post(
            f"{API}/runs", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400
        assert bad_json.json()["error"] == "The body is not valid JSON."
        extra = dev.post(f"{API}/runs", json={"experiment": "e", "colour": "red"})
        assert extra.status_code == 422 and "colour" in extra.json()["error"]
        wrong = dev.post(f"{API}/runs", json={"experiment": ["e"]})
        assert wrong.status_code == 422 and "experiment" in wrong.json()["error"]
        assert dev.post(f"{API}/runs", json={"experiment": "x" * 201}).status_code == 422


def test_models_from_uploaded_blobs_to_an_approved_alias(team: Team, tmp_path: Path) -> None:
    with team.http("developer") as dev, team.http("approver") as approver:
        rid = ok(dev.post(f"{API}/runs", json={"experiment": "credit"}), 201)["id"]
        local = ArtifactStore((tmp_path / "early").as_uri())
        early = local.put_bytes(b"{}")
        not_there = dev.post(f"{API}/runs/{rid}/models", json={"manifest_digest": early})
        assert not_there.status_code == 404
        digest = upload_model(dev, tmp_path)
        logged = ok(dev.post(f"{API}/runs/{rid}/models", json={"manifest_digest": digest}), 201)
        assert logged["uri"] == f"runs:/{rid}/model" and logged["flavor"] == "sklearn"

        v1 = ok(dev.post(f"{API}/models/credit/versions", json={"run_id": rid}), 201)
        v2 = ok(dev.post(f"{API}/models/credit/versions", json={"run_id": rid}), 201)
        assert (v1["version"], v2["version"]) == (1, 2) and v1["created_by"] == "dana"
        assert ok(dev.get(f"{API}/models/credit/versions/2"))["manifest_digest"] == digest
        assert dev.get(f"{API}/models/credit/versions/two").status_code == 422
        assert dev.get(f"{API}/models/credit/versions/9").status_code == 404
        shown = ok(dev.get(f"{API}/models/credit"))
        assert shown["model"]["latest_version"] == 2 and len(shown["versions"]) == 2
        assert [m["name"] for m in ok(dev.get(f"{API}/models"))] == ["credit"]

        card = {"intended_use": "scoring", "limitations": "none known"}
        edited = ok(dev.patch(f"{API}/models/credit/versions/1/card", json=card))
        assert edited["card"]["intended_use"] == "scoring"

        # A plain alias: a developer may move it.
        ok(dev.put(f"{API}/models/credit/aliases/champion", json={"version": 1}))
        assert ok(dev.get(f"{API}/models/credit/aliases/champion"))["version"] == 1
        # production needs an approval for this very version; four eyes decide it.
        refused = dev.put(f"{API}/models/credit/aliases/production", json={"version": 2})
        assert refused.status_code == 403 and "approval" in refused.json()["error"].lower()
        request = {"uri": "models:/credit/2", "environment": "production", "comment": "better"}
        approval = ok(dev.post(f"{API}/approvals", json=request), 201)
        assert approval["status"] == "pending" and approval["requested_by"] == "dana"
        own = dev.post(f"{API}/approvals/{approval['id']}/approve", json={})
        assert own.status_code == 403  # a developer may not approve at all
        decided = approver.post(f"{API}/approvals/{approval['id']}/approve", json={"comment": "ok"})
        assert ok(decided)["status"] == "approved" and decided.json()["decided_by"] == "avery"
        moved = ok(dev.put(f"{API}/models/credit/aliases/production", json={"version": 2}))
        assert moved["aliases"] == ["production"]
        pending = ok(approver.get(f"{API}/approvals", params={"environment": "production"}))
        assert [a["status"] for a in pending] == ["approved"]

        # The approver's own request cannot be approved by the approver.
        ok(dev.put(f"{API}/models/credit/aliases/champion", json={"version": 2}))
        mine = ok(approver.post(f"{API}/approvals", json=request | {"comment": None}), 201)
        self_approve = approver.post(f"{API}/approvals/{mine['id']}/approve", json={})
        assert self_approve.status_code == 403
        with team.http("admin") as admin:
            rejected = ok(admin.post(f"{API}/approvals/{mine['id']}/reject", json={}))
        assert rejected["status"] == "rejected"

        still_aliased = dev.post(f"{API}/models/credit/versions/2/archive")
        assert still_aliased.status_code == 409
        ok(dev.delete(f"{API}/models/credit/aliases/champion"))
        assert dev.get(f"{API}/models/credit/aliases/champion").status_code == 404
        assert ok(dev.post(f"{API}/models/credit/versions/1/archive"))["archived"] is True

        lineage = ok(dev.get(f"{API}/lineage", params={"uri": "models:/credit@production"}))
        assert lineage["model"]["version"] == 2 and lineage["run"]["id"] == rid
        assert dev.get(f"{API}/lineage").status_code == 422
    assert shipway.verify_audit(client=team.client).ok


def test_artefacts_by_digest_only(team: Team) -> None:
    data = b"some model bytes\n" * 1000
    digest = hashlib.sha256(data).hexdigest()
    with team.http("developer") as dev:
        wrong = dev.put(f"{API}/artifacts/{digest}", content=data + b"!")
        assert wrong.status_code == 400 and "not stored" in wrong.json()["error"]
        assert dev.get(f"{API}/artifacts/{digest}").status_code == 404
        assert ok(dev.put(f"{API}/artifacts/{digest}", content=data))["created"] is True
        assert ok(dev.put(f"{API}/artifacts/{digest}", content=data))["created"] is False
        got = dev.get(f"{API}/artifacts/{digest}")
        assert got.status_code == 200 and got.content == data
        assert got.headers["etag"] == f'"{digest}"'
        uploads = ok(dev.get(f"{API}/audit", params={"action": "artifact.upload"}))
        assert [(e["subject"], e["actor"]) for e in uploads] == [(f"blob:{digest}", "dana")]
        assert dev.get(f"{API}/artifacts/{digest.upper()}").status_code == 400
        assert dev.put(f"{API}/artifacts/{digest[:-1]}", content=data).status_code == 400


TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "..%252F..%252Fetc%252Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e",
    "..",
    "..%5c..%5cetc%5cpasswd",
    "%2Fetc%2Fpasswd",
    "0" * 64 + "/../../x",
    "0" * 64 + "%2F..%2F..%2Fx",
    "0" * 63 + "%00",
    "sha256/ab/" + "0" * 62,
    "a" * 64 + "%0a",
    "A" * 64,
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_artefact_paths_cannot_escape_the_store(team: Team, target: str) -> None:
    auth = {"Authorization": f"Bearer {team.tokens['developer']}"}
    url = f"{API}/artifacts/{target}"
    assert raw_request(team.url, "GET", url, auth) in (400, 404)
    assert raw_request(team.url, "PUT", url, auth, b"root:x:0:0\n") in (400, 404)
    blobs = Path(team.client.artifacts.root)
    written = [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []
    assert written == []


def test_audit_filters_are_bound_parameters(team: Team) -> None:
    with team.http("developer") as dev:
        for name in ("a", "b", "c"):
            ok(dev.post(f"{API}/runs", json={"experiment": f"exp_{name}"}), 201)
        everything = ok(dev.get(f"{API}/audit", params={"limit": 1000}))
        seqs = [e["seq"] for e in everything]
        assert seqs == sorted(seqs)
        by_dana = ok(dev.get(f"{API}/audit", params={"actor": "dana"}))
        assert {e["action"] for e in by_dana} == {"experiment.create", "run.create"}
        exps = ok(dev.get(f"{API}/audit", params={"subject": "experiment:exp_"}))
        assert len(exps) == 3
        # LIKE wildcards in a prefix are literal characters, not patterns.
        assert ok(dev.get(f"{API}/audit", params={"subject": "experiment:exp%"})) == []
        assert ok(dev.get(f"{API}/audit", params={"subject": "experiment:exp__"})) == []
        for hostile in ("' OR '1'='1", "dana' --", '"; DROP TABLE audit_events; --'):
            assert ok(dev.get(f"{API}/audit", params={"actor": hostile})) == []
            assert ok(dev.get(f"{API}/audit", params={"subject": hostile})) == []
            assert dev.get(f"{API}/runs", params={"experiment": hostile}).status_code == 404
        newest = ok(dev.get(f"{API}/audit", params={"limit": 2}))
        assert [e["seq"] for e in newest] == seqs[-2:]
        after = ok(dev.get(f"{API}/audit", params={"since": seqs[0], "limit": 2}))
        assert [e["seq"] for e in after] == seqs[1:3]
        assert dev.get(f"{API}/audit", params={"since": "x"}).status_code == 422
        report = ok(dev.get(f"{API}/audit/verify"))
        assert report["ok"] is True and report["checked"] == len(everything)


def test_users_and_tokens_by_an_admin(team: Team) -> None:
    with team.http("admin") as admin:
        ok(admin.post(f"{API}/users", json={"name": "eve", "role": "viewer"}), 201)
        made = ok(admin.post(f"{API}/tokens", json={"user": "eve", "name": "laptop"}), 201)
        token, info = made["token"], made["info"]
        assert token.startswith(f"shw_{info['id']}_") and info["status"] == "active"
        listed = ok(admin.get(f"{API}/tokens", params={"user": "eve"}))
        assert [t["id"] for t in listed] == [info["id"]] and token not in str(listed)
        eve = {"Authorization": f"Bearer {token}"}
        assert ok(admin.get(f"{API}/me", headers=eve)) == {
            "user": "eve",
            "role": "viewer",
            "token_id": info["id"],
        }
        promoted = ok(admin.patch(f"{API}/users/eve", json={"role": "developer"}))
        assert promoted["role"] == "developer"
        assert admin.post(f"{API}/runs", json={}, headers=eve).status_code == 201
        ok(admin.delete(f"{API}/tokens/{info['id']}"))
        assert admin.get(f"{API}/me", headers=eve).status_code == 401
        second = ok(admin.post(f"{API}/tokens", json={"user": "eve", "name": "ci"}), 201)
        eve2 = {"Authorization": f"Bearer {second['token']}"}
        assert admin.get(f"{API}/me", headers=eve2).status_code == 200
        assert ok(admin.patch(f"{API}/users/eve", json={"disabled": True}))["disabled"] is True
        assert admin.get(f"{API}/me", headers=eve2).status_code == 401
        assert admin.post(f"{API}/users", json={"name": "eve"}).status_code == 409
        assert admin.patch(f"{API}/users/eve", json={}).status_code == 422
        last = admin.patch(f"{API}/users/ada", json={"role": "viewer"})
        assert last.status_code == 409  # the last admin stays
        actions = {e["action"] for e in ok(admin.get(f"{API}/audit", params={"actor": "ada"}))}
        assert {"users.create", "tokens.create", "tokens.revoke", "users.role"} <= actions


def test_policies(team: Team) -> None:
    with team.http("admin") as admin, team.http("developer") as dev:
        policy = ok(admin.put(f"{API}/policies/staging", json={"mode": "manual", "ttl_hours": 4}))
        assert policy["mode"] == "manual" and policy["updated_by"] == "ada"
        envs = {p["environment"]: p["mode"] for p in ok(dev.get(f"{API}/policies"))}
        assert envs["staging"] == "manual" and envs["production"] == "manual"
        assert admin.put(f"{API}/policies/staging", json={"mode": "sometimes"}).status_code == 422


def test_datasets_deployments_and_monitoring_reads(team: Team) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with shipway.start_run("data", client=team.client) as run:
        run.log_dataset(frame, name="train")
    with team.http("viewer") as viewer:
        datasets = ok(viewer.get(f"{API}/datasets"))
        assert [(d["name"], d["num_rows"], d["used_by"]) for d in datasets] == [("train", 3, 1)]
        assert datasets[0]["runs"] == [{"run_id": run.id, "role": "training"}]
        assert ok(viewer.get(f"{API}/datasets", params={"name": "other"})) == []
        assert ok(viewer.get(f"{API}/deployments")) == []
        assert viewer.get(f"{API}/deployments/staging").status_code == 404
        assert ok(viewer.get(f"{API}/rollouts")) == []
        assert viewer.get(f"{API}/rollouts/abc").status_code == 404
        assert ok(viewer.get(f"{API}/monitoring/results")) == []
        assert viewer.get(f"{API}/monitoring/results/abc").status_code == 404
    with team.http("developer") as dev:
        nothing = dev.post(f"{API}/deployments/staging/rollout/abort")
        assert nothing.status_code == 409 and "No rollout" in nothing.json()["error"]
        unknown = dev.post(
            f"{API}/deployments", json={"uri": "models:/nope/1", "environment": "staging"}
        )
        assert unknown.status_code == 404
        bad_checks = dev.post(
            f"{API}/deployments/staging/rollouts",
            json={"uri": "models:/nope/1", "checks": {"max_fun": 1}},
        )
        assert bad_checks.status_code == 422 and "max_fun" in bad_checks.json()["error"]
