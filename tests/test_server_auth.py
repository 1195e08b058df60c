"""The team server's protection: every route from the OpenAPI spec needs a token, every mutation
needs more than a viewer, tokens never leak, and writes are audited as the caller."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

import shipway
from server_helpers import USERS, Team, live_api, team_server
from shipway.governance.identity import create_token, revoke_token
from shipway.server import create_app
from shipway.server.endpoints import API, Call, Endpoint

PUBLIC = {("GET", f"{API}/health"), ("POST", f"{API}/login")}
"""Operations that answer without a token. Adding one means adding it here, on purpose."""
UNDOCUMENTED_PUBLIC = {("GET", f"{API}/openapi.json"), ("GET", "/docs")}
UI_ROUTES = {("GET", "/"), ("GET", "/ui/{name}")}
"""The web UI's shell and its shipped files: public, with no data in them (test_server_ui.py)."""


@pytest.fixture
def team(shipway_home: Path) -> Iterator[Team]:
    client = shipway.Client()
    try:
        with team_server(client) as team:
            yield team
    finally:
        client.store.close()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def concrete(path: str) -> str:
    """A path template with every parameter filled (a well-formed digest for artefacts)."""
    return re.sub(r"{(\w+)}", lambda m: "0" * 64 if m[1] == "sha256" else "x1", path)


def test_the_spec_lists_every_route_and_nothing_else() -> None:
    app = create_app(shipway.Client())
    routed = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    documented = {(m, p) for m, p, _ in operations(app.state.openapi)}
    assert routed == documented | UNDOCUMENTED_PUBLIC | UI_ROUTES
    assert {(m, p) for m, p, op in operations(app.state.openapi) if op.get("security") == []} == (
        PUBLIC
    )


def test_the_spec_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    validate(create_app(shipway.Client()).state.openapi)


def test_every_route_needs_a_token_and_every_mutation_more_than_a_viewer(team: Team) -> None:
    with team.http() as anon, team.http("viewer") as viewer:
        spec = anon.get(f"{API}/openapi.json").json()
        ops = operations(spec)
        assert len(ops) > 40
        checked_401 = checked_403 = 0
        for method, path, op in ops:
            url = concrete(path)
            if (method, path) in PUBLIC:
                continue
            for headers in ({}, {"Authorization": "Bearer shw_0badc0de_" + "A" * 43}):
                r = anon.request(method, url, json={}, headers=headers)
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert set(r.json()) == {"error", "hint"}
            checked_401 += 1
            if method != "GET":
                assert op["x-shipway-role"] in ("developer", "approver", "admin"), (method, path)
                r = viewer.request(method, url, json={})
                assert r.status_code == 403, (method, path, r.status_code, r.text)
                assert "vic (viewer) may not" in r.json()["error"]
                checked_403 += 1
            elif op["x-shipway-role"] == "admin":
                assert viewer.get(url).status_code == 403, path
            else:
                assert viewer.get(url).status_code not in (401, 403), path
        assert checked_401 == len(ops) - len(PUBLIC)
        assert checked_403 >= 20
        # Paths that match no route are refused the same way, so they reveal nothing.
        assert anon.get(f"{API}/no/such/route").status_code == 401
        assert anon.get("/nothing-here").status_code == 401
        assert anon.get("/ui/nothing-here.js").status_code == 401


def test_public_routes(team: Team) -> None:
    with team.http() as anon:
        assert anon.get(f"{API}/health").json()["status"] == "ok"
        assert anon.head(f"{API}/health").status_code == 200
        assert "swagger-ui" in anon.get("/docs").text
        assert anon.get(f"{API}/openapi.json").json()["openapi"] == "3.1.0"
        who = anon.post(f"{API}/login", json={"token": team.tokens["approver"]})
        assert who.status_code == 200
        assert who.json()["user"] == "avery" and who.json()["role"] == "approver"
        bad = anon.post(f"{API}/login", json={"token": "shw_12345678_" + "b" * 43})
        assert bad.status_code == 401


def test_roles_are_ranked(team: Team) -> None:
    with team.http("developer") as dev, team.http("approver") as approver:
        assert dev.post(f"{API}/runs", json={"experiment": "e"}).status_code == 201
        assert approver.post(f"{API}/runs", json={"experiment": "e"}).status_code == 201
        r = dev.post(f"{API}/approvals/nope/approve", json={})
        assert r.status_code == 403 and "needs approver" in r.json()["error"]
        assert approver.get(f"{API}/users").status_code == 403
        assert approver.post(f"{API}/approvals/nope/approve", json={}).status_code == 404
    with team.http("admin") as admin:
        assert {u["name"] for u in admin.get(f"{API}/users").json()} == set(USERS.values())


def test_a_mutation_is_audited_as_the_caller_from_their_address(team: Team) -> None:
    with team.http("developer") as dev:
        run = dev.post(f"{API}/runs", json={"experiment": "audited"}).json()
        dev.post(f"{API}/runs/{run['id']}/metrics", json={"metrics": {"auc": 0.8}})
        entries = dev.get(f"{API}/audit", params={"subject": f"run:{run['id']}"}).json()
    assert [e["action"] for e in entries] == ["run.create", "run.metrics"]
    assert {(e["actor"], e["source"]) for e in entries} == {("dana", "127.0.0.1")}
    assert run["actor"] == "dana"
    stored = shipway.audit_log(subject=f"run:{run['id']}", client=team.client)
    assert {(e.actor, e.source) for e in stored} == {("dana", "127.0.0.1")}
    assert shipway.verify_audit(client=team.client).ok


def test_tokens_never_appear_in_logs_or_error_bodies(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    revoked_info, revoked = create_token("dana", name="old", client=team.client)
    revoke_token(revoked_info.id, client=team.client)
    wrong_secret = team.tokens["developer"][:14] + "Z" * 43
    presented = [
        team.tokens["viewer"],
        team.tokens["developer"],
        revoked,
        wrong_secret,
        "shw_zzzz_not-a-token-at-all",
        "x" * 500,
    ]
    bodies: list[str] = []
    with team.http() as anon:
        for token in presented:
            auth = {"Authorization": f"Bearer {token}"}
            for method, path, body in [
                ("GET", f"{API}/runs", None),  # 200 or 401
                ("POST", f"{API}/runs", {"experiment": "e"}),  # 201, 403 or 401
                ("GET", f"{API}/runs/nope", None),  # 404
                ("POST", f"{API}/runs", {"nope": token}),  # 422 (403 for the viewer)
                ("GET", f"{API}/users", None),  # 403
                ("GET", f"{API}/artifacts/{'0' * 64}", None),  # 404
            ]:
                r = anon.request(method, path, json=body, headers=auth)
                bodies.append(r.text)
            bodies.append(anon.post(f"{API}/login", json={"token": token}).text)
            bodies.append(anon.post(f"{API}/login", json={"token": token, "x": token}).text)
    logged = caplog.text
    assert "GET /api/v1/runs" in logged  # the access log was captured
    assert "Rejected" in logged  # and so were the refusals
    for token in presented:
        secret = token.split("_", 2)[-1]  # the secret may hold "_" itself
        assert token not in logged and secret not in logged
        for body in bodies:
            assert token not in body and secret not in body


def test_a_server_error_is_logged_without_headers_or_body(
    shipway_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(call: Call) -> None:
        raise RuntimeError("something broke")

    client = shipway.Client()
    from server_helpers import make_users

    tokens = make_users(client)
    table = [Endpoint("POST", f"{API}/broken", broken, "Break", "test", "viewer")]
    caplog.set_level(logging.DEBUG)
    try:
        with live_api(create_app(client, table)) as url:
            import httpx

            r = httpx.post(
                f"{url}{API}/broken",
                headers={"Authorization": f"Bearer {tokens['viewer']}"},
                content=b'{"secret-body": 1}',
            )
    finally:
        client.store.close()
    assert r.status_code == 500
    assert r.json() == {
        "error": "Internal server error.",
        "hint": "The server log has the details.",
    }
    assert "POST /api/v1/broken failed" in caplog.text
    assert "something broke" in caplog.text
    assert tokens["viewer"] not in caplog.text and "secret-body" not in caplog.text
