"""The Python API and the CLI against a team server (`SHIPWAY_TRACKING_URI`, `SHIPWAY_TOKEN`).

The end-to-end tests run one real `shipway server` process over a real store for the module,
and the same journey locally and through it: the results must agree. Each test uses model
names of its own, since the server's store is shared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway
from server_helpers import make_users, server_process
from serving_helpers import FEATURES, credit_frame, free_port, run_cli
from shipway.config import Settings
from shipway.errors import (
    ApprovalRequiredError,
    ConflictError,
    CorruptArtifactError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthorizedError,
    UnreachableError,
)
from shipway.remote import RemoteApi

TOKEN_LOOKALIKE = "shw_deadbeef_" + "x" * 43


_opened: list[shipway.Client] = []


def remote_client(
    url: str,
    token: str | None,
    transport: httpx.BaseTransport | None = None,
    home: Path | None = None,
) -> shipway.Client:
    """A client of the server at `url`; `home` holds its blob cache (SHIPWAY_HOME otherwise)."""
    where = {"home": home} if home else {}
    client = shipway.Client(Settings(tracking_uri=url, token=token, **where))
    if transport is not None:
        client.__dict__["remote"] = RemoteApi(
            url, client.settings.token, transport=transport, retries=1
        )
    _opened.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    """Close the HTTP connections each test opened, including the default clients' ones."""
    yield
    from shipway import client as default

    with default._lock:
        remote = [k for k, c in default._clients.items() if c.settings.tracking_uri]
        _opened.extend(default._clients.pop(k) for k in remote)
    while _opened:
        api = _opened.pop().__dict__.get("remote")
        if api is not None:
            api.close()


# =============================================================================
# Without a server
# =============================================================================


def test_settings_never_show_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPWAY_TRACKING_URI", "http://shipway.example:8800/")
    monkeypatch.setenv("SHIPWAY_TOKEN", TOKEN_LOOKALIKE)
    settings = Settings()
    assert settings.tracking_uri == "http://shipway.example:8800"
    assert settings.token is not None
    assert settings.token.get_secret_value() == TOKEN_LOOKALIKE
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert TOKEN_LOOKALIKE not in text
    client = shipway.Client(settings)
    assert TOKEN_LOOKALIKE not in repr(client.remote)


def test_a_remote_client_never_touches_the_local_store(shipway_home: Path) -> None:
    client = remote_client("http://127.0.0.1:9", "t")
    with pytest.raises(InvalidInputError, match="SHIPWAY_TRACKING_URI") as err:
        _ = client.store
    assert "Unset SHIPWAY_TRACKING_URI" in str(err.value)
    assert not (shipway_home / "shipway.db").exists()


def test_a_tracking_uri_must_be_http() -> None:
    with pytest.raises(InvalidInputError, match="http:// or https://"):
        _ = remote_client("shipway.example:8800", "t").remote


def test_an_unreachable_server_names_the_url_and_what_to_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = remote_client(url, TOKEN_LOOKALIKE)
    with pytest.raises(UnreachableError) as err:
        shipway.list_models(client=client)
    text = str(err.value)
    assert url in text
    assert "SHIPWAY_TRACKING_URI" in text and "shipway server" in text
    assert TOKEN_LOOKALIKE not in text


def test_errors_come_back_as_the_same_classes() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": "Nope.", "hint": "Ask first."}
        if request.url.path.endswith("/aliases/production"):
            headers = {"x-shipway-error": "ApprovalRequiredError"}
            return httpx.Response(403, json=body, headers=headers)
        if request.url.path.endswith("/versions"):
            return httpx.Response(409, json=body)  # no class named: the status decides
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=[])
        return httpx.Response(404, text="Not Found")  # not even JSON

    client = remote_client("http://test", "t", httpx.MockTransport(answer))
    with pytest.raises(ApprovalRequiredError, match="Nope") as err:
        shipway.set_alias("models:/m/1", "production", client=client)
    assert err.value.hint == "Ask first." and err.value.exit_code == 9
    with pytest.raises(ConflictError):
        shipway.register_model("runs:/abc/model", "m", client=client)
    with pytest.raises(NotFoundError, match="HTTP 404"):
        shipway.get_run("abc", client=client)
    assert shipway.list_models(client=client) == []


def test_an_unsavable_object_is_refused_before_any_request() -> None:
    client = remote_client("http://test", "t", httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(InvalidInputError, match="Cannot save a builtins"):
        shipway.register_model(object(), "m", client=client)


# =============================================================================
# Against a real `shipway server`
# =============================================================================


@dataclass
class Server:
    url: str
    home: Path
    tokens: dict[str, str]

    def client(
        self, who: str = "developer", transport: httpx.BaseTransport | None = None
    ) -> shipway.Client:
        return remote_client(self.url, self.tokens[who], transport)

    def blob(self, digest: str) -> Path:
        return self.home / "artifacts" / "sha256" / digest[:2] / digest[2:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("server-home")
    local = shipway.Client(Settings(home=home, database_url=None, artifact_url=None))
    tokens = make_users(local)
    local.store.close()
    with server_process(home, tmp_path_factory.mktemp("server-logs")) as proc:
        yield Server(proc.url, home, tokens)


@pytest.fixture
def credit() -> tuple[pd.DataFrame, LogisticRegression]:
    df = credit_frame(300)
    numeric = [c for c in FEATURES if df[c].dtype.kind in "if"]
    return df, LogisticRegression(max_iter=300, random_state=3).fit(df[numeric], df["default"])


def journey(df: pd.DataFrame, model: LogisticRegression, notes: Path) -> dict[str, Any]:
    """The core journey through the module-level API (the settings pick local or remote)."""
    numeric = list(model.feature_names_in_)
    with shipway.start_run("credit", seed=7, tags={"team": "risk"}) as run:
        run.log_params({"C": 1.0, "max_iter": 300})
        for step, auc in enumerate([0.71, 0.8, 0.83]):
            run.log_metric("auc", auc, step=step)
        run.set_tag("stage", "trial")
        run.set_seed(5)
        run.log_dataset(df, name="credit-train")
        run.log_dataset(df.head(50), name="credit-holdout", role="evaluation")
        run.log_artifact(notes)
        run.log_model(model, input_example=df[numeric].head(20))
    v1 = shipway.register_model(run, "credit", description="first")
    v2 = shipway.register_model(f"runs:/{run.id}/model", "credit")
    shipway.set_alias(v1.uri, "champion")
    shipway.set_alias(v2.uri, "challenger")
    shipway.set_alias("models:/credit@challenger", "champion")  # a move
    shipway.delete_alias("credit", "challenger")
    shipway.archive_version(v1.uri)
    shipway.update_model_card("models:/credit@champion", intended_use="scoring applications")
    assert shipway.verify_audit().ok
    info = shipway.get_run(run.id)
    return {
        "run": info,
        "runs": [r.id for r in shipway.list_runs("credit")],
        "tagged": [r.id for r in shipway.list_runs(tag="stage=trial")],
        "untagged": shipway.list_runs(tag="stage=production"),
        "logged": (run.id, v1, v2),
        "version": shipway.get_model_version("models:/credit@champion"),
        "latest": shipway.get_model_version("models:/credit"),
        "versions": shipway.list_versions("credit"),
        "models": [m for m in shipway.list_models() if m.name == "credit"],
        "lineage": shipway.lineage("models:/credit@champion"),
        "audit": shipway.audit_log(limit=1000, subject="model:credit"),
        "predictions": shipway.load_model("models:/credit@champion").predict(df[numeric]),
    }


def _run_view(info: shipway.RunInfo) -> dict[str, Any]:
    env = info.environment
    return {
        "experiment": info.experiment,
        "status": info.status,
        "params": info.params,
        "metrics": info.metrics,
        "tags": info.tags,
        "datasets": [d.to_dict() for d in info.datasets],
        "artifacts": info.artifacts,
        "models": sorted(info.models),
        "git": env["git"],
        "packages": env["packages"],
        "seeds": env["seeds"],
        "python": env["runtime"]["python"],
    }


def _version_view(v: shipway.ModelVersionInfo) -> tuple[Any, ...]:
    return (v.name, v.version, v.flavor, v.signature, v.card, v.archived, v.aliases)


def _audit_view(entries: list[shipway.AuditEntry]) -> list[tuple[Any, ...]]:
    def plain(d: dict[str, Any] | None) -> dict[str, Any] | None:
        return (
            None if d is None else {k: v for k, v in d.items() if k not in ("run_id", "manifest")}
        )

    return [(e.action, e.subject, plain(e.before), plain(e.after)) for e in entries]


@pytest.mark.slow
def test_the_journey_gives_the_same_results_locally_and_remotely(
    server: Server,
    shipway_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    credit: tuple[pd.DataFrame, LogisticRegression],
) -> None:
    df, model = credit
    notes = tmp_path / "notes.txt"
    notes.write_text("feature notes\n")
    local = journey(df, model, notes)

    monkeypatch.setenv("SHIPWAY_TRACKING_URI", server.url)
    monkeypatch.setenv("SHIPWAY_TOKEN", server.tokens["developer"])
    remote = journey(df, model, notes)
    monkeypatch.delenv("SHIPWAY_TRACKING_URI")

    assert _run_view(remote["run"]) == _run_view(local["run"])
    assert remote["run"].actor == "dana"  # the token's user, not this machine's
    assert remote["run"].id in remote["runs"]
    assert remote["tagged"] == [remote["run"].id] and local["tagged"] == [local["run"].id]
    assert remote["untagged"] == local["untagged"] == []
    run_id, v1, v2 = remote["logged"]
    assert (v1.version, v2.version) == (1, 2) and v1.run_id == v2.run_id == run_id
    assert _version_view(remote["version"]) == _version_view(local["version"])
    assert remote["latest"].version == local["latest"].version == 2
    assert [_version_view(v) for v in remote["versions"]] == [
        _version_view(v) for v in local["versions"]
    ]
    assert {v.created_by for v in remote["versions"]} == {"dana"}
    [rm], [lm] = remote["models"], local["models"]
    assert (rm.latest_version, rm.versions, rm.aliases) == (2, 2, {"champion": 2})
    assert (rm.latest_version, rm.versions, rm.aliases) == (
        lm.latest_version,
        lm.versions,
        lm.aliases,
    )

    rl, ll = remote["lineage"], local["lineage"]
    assert rl["datasets"] == ll["datasets"] and len(rl["datasets"]) == 2
    assert rl["code"] == ll["code"]
    assert rl["environment"] == ll["environment"]
    assert rl["run"]["params"] == ll["run"]["params"]
    assert rl["run"]["metrics"] == ll["run"]["metrics"] == {"auc": 0.83}
    moves = [(h["action"], h["subject"], h["from"], h["to"]) for h in rl["alias_history"]]
    assert moves == [(h["action"], h["subject"], h["from"], h["to"]) for h in ll["alias_history"]]
    assert {h["actor"] for h in rl["alias_history"]} == {"dana"}

    assert _audit_view(remote["audit"]) == _audit_view(local["audit"])
    assert {(e.actor, e.source) for e in remote["audit"]} == {("dana", "127.0.0.1")}

    np.testing.assert_array_equal(remote["predictions"], local["predictions"])


@pytest.mark.slow
def test_what_a_run_refers_to_must_be_uploaded_first(server: Server) -> None:
    client = server.client()
    api = client.remote
    assert api is not None
    missing = "ab" * 32
    with shipway.start_run("refs", client=client) as run:
        with pytest.raises(ConflictError, match="not uploaded yet"):
            api.post(f"/runs/{run.id}/artifacts", {"name": "x", "digest": missing, "size": 1})
        with pytest.raises(ConflictError, match="not uploaded yet"):
            api.post(
                f"/runs/{run.id}/datasets",
                {
                    "name": "d",
                    "content_hash": "c",
                    "blob_digest": missing,
                    "num_rows": 1,
                    "schema": [],
                },
            )
    assert not shipway.get_run(run.id, client=client).artifacts


@pytest.mark.slow
def test_a_failing_block_marks_the_remote_run_failed(server: Server) -> None:
    client = server.client()
    with pytest.raises(RuntimeError), shipway.start_run("fails", client=client) as run:
        run.log_metric("loss", 1.5)
        raise RuntimeError("diverged")
    info = shipway.get_run(run.id[:8], client=client)  # a prefix works as locally
    assert (info.status, info.error, info.metrics) == (
        "failed",
        "RuntimeError: diverged",
        {"loss": 1.5},
    )
    with pytest.raises(NotFoundError, match="Run 'nosuchrun' not found"):
        shipway.get_run("nosuchrun", client=client)


class Recording(httpx.BaseTransport):
    """The real network, with every (method, path) noted and artefact downloads optionally
    altered on the way (as a broken proxy or disk would)."""

    def __init__(self, corrupt: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.corrupt = corrupt
        self.sent: list[tuple[str, str]] = []

    def close(self) -> None:
        self.inner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        response = self.inner.handle_request(request)
        if not (self.corrupt and request.method == "GET" and "/artifacts/" in request.url.path):
            return response
        data = bytearray(response.read())
        data[len(data) // 2] ^= 0xFF
        response.close()
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(data))


def _small_model(seed: int) -> tuple[LogisticRegression, pd.DataFrame]:
    X = pd.DataFrame(np.random.default_rng(seed).normal(size=(40, 2)), columns=["a", "b"])
    return LogisticRegression().fit(X, (X["a"] + X["b"] > 0).astype(int)), X


@pytest.mark.slow
def test_uploads_skip_what_the_server_has_and_downloads_are_verified(
    server: Server, tmp_path: Path
) -> None:
    model, X = _small_model(11)
    seen = Recording()
    client = remote_client(server.url, server.tokens["developer"], seen, home=tmp_path / "a")
    with shipway.start_run("blobs", client=client) as run:
        run.log_dataset(X, name="small")
        run.log_dataset(X, name="small")  # the same bytes: asked about, not sent again
        run.log_model(model, input_example=X.head())
    puts = [p for m, p in seen.sent if m == "PUT"]
    heads = [p for m, p in seen.sent if m == "HEAD"]
    assert len(puts) == len(set(puts)) and len(heads) > len(puts)
    version = shipway.register_model(run, "blobs", client=client)
    loaded = shipway.load_model(version.uri, client=client)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    fetched = [p for m, p in seen.sent if m == "GET" and "/artifacts/" in p]
    assert fetched  # the first load downloads the manifest and its files ...
    again = shipway.load_model(version.uri, client=client)
    assert [p for m, p in seen.sent if m == "GET" and "/artifacts/" in p] == fetched  # ... once
    np.testing.assert_array_equal(again.predict(X), model.predict(X))

    # Bytes altered between the server and this process: refused here, whatever the server checked.
    broken = remote_client(server.url, server.tokens["developer"], Recording(corrupt=True),
                           home=tmp_path / "b")  # fmt: skip
    with pytest.raises(CorruptArtifactError, match="downloaded from"):
        shipway.load_model(version.uri, client=broken)


@pytest.mark.slow
def test_a_tampered_blob_on_the_server_is_refused(server: Server) -> None:
    model, X = _small_model(12)
    client = server.client()
    with shipway.start_run("tamper", client=client) as run:
        logged = run.log_model(model, input_example=X.head())
    version = shipway.register_model(run, "tamper", client=client)
    manifest = server.blob(logged.manifest_digest).read_text()
    for digest in json.loads(manifest)["files"].values():
        path = server.blob(digest)
        path.chmod(0o644)
        path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(CorruptArtifactError, match="corrupted"):
        shipway.load_model(version.uri, client=client)


@pytest.mark.slow
def test_a_wrong_or_missing_token_says_how_to_get_one(server: Server) -> None:
    for token in (TOKEN_LOOKALIKE, None):
        client = remote_client(server.url, token)
        with pytest.raises(UnauthorizedError) as err:
            shipway.list_models(client=client)
        text = str(err.value)
        assert "shipway tokens create" in text and "SHIPWAY_TOKEN" in text
        assert TOKEN_LOOKALIKE not in text and "deadbeef" not in text
        assert err.value.exit_code == 5


@pytest.mark.slow
def test_a_viewer_may_read_but_not_register(server: Server) -> None:
    model, _ = _small_model(13)
    with shipway.start_run("viewer", client=server.client()) as run:
        run.log_model(model)
    viewer = server.client("viewer")
    assert shipway.get_run(run.id, client=viewer).models
    with pytest.raises(ForbiddenError, match=r"vic \(viewer\) may not register"):
        shipway.register_model(run, "viewer-model", client=viewer)
    with pytest.raises(ForbiddenError):
        shipway.start_run("viewer", client=viewer).__enter__()


@pytest.mark.slow
def test_production_needs_an_approval_remotely_too(server: Server) -> None:
    model, _ = _small_model(14)
    client = server.client()
    with shipway.start_run("prod", client=client) as run:
        run.log_model(model)
    version = shipway.register_model(run, "prod-model", client=client)
    with pytest.raises(ApprovalRequiredError):
        shipway.set_alias(version.uri, "production", client=client)


@pytest.mark.slow
def test_the_cli_works_against_the_server(server: Server, tmp_path: Path) -> None:
    model, X = _small_model(15)
    client = server.client()
    with shipway.start_run("cli", client=client) as run:
        run.log_dataset(X, name="cli-data")
        run.log_model(model, input_example=X.head())
    version = shipway.register_model(run, "cli-model", client=client)
    shipway.set_alias(version.uri, "champion", client=client)

    home = tmp_path / "client-home"  # stays empty: nothing is read or written locally
    env = {"SHIPWAY_TRACKING_URI": server.url, "SHIPWAY_TOKEN": server.tokens["developer"]}

    def cli(*args: str) -> str:
        done = run_cli(home, *args, env=env)
        assert done.returncode == 0, done.stderr
        assert server.tokens["developer"] not in done.stdout + done.stderr
        return done.stdout

    assert "cli-model" in cli("models", "list")
    assert "champion" in cli("models", "list", "cli-model")
    assert "models:/cli-model/1" in cli("models", "show", "models:/cli-model@champion")
    lineage = cli("lineage", "models:/cli-model@champion")
    assert "cli-data" in lineage and run.id in lineage
    assert [r["id"] for r in json.loads(cli("runs", "list", "-e", "cli", "--json"))] == [run.id]
    assert "alias.set" in cli("audit", "log", "--subject", "model:cli-model")
    assert "cli-model@staging" in cli("models", "alias", "models:/cli-model/1", "staging")
    assert not (home / "shipway.db").exists()

    denied = run_cli(home, "models", "list", env=env | {"SHIPWAY_TOKEN": TOKEN_LOOKALIKE})
    assert denied.returncode == 5
    assert "shipway tokens create" in denied.stderr and TOKEN_LOOKALIKE not in denied.stderr
