"""API keys on the model server: `shipway serve --api-key-file FILE` run as a real subprocess,
and `create_app(..., ServerSettings(api_keys=[...]))` in process."""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import shipway
from serving_helpers import (
    ServeProcess,
    live_server,
    records,
    run_cli,
    serve_process,
    train_credit,
)
from shipway.serving import create_app
from shipway.serving.settings import ServerSettings

pytestmark = pytest.mark.slow

# Distinctive keys, so that finding one in the server's output cannot be a coincidence.
KEYS = [f"sw-key-one-{secrets.token_hex(12)}", f"sw-key-two-{secrets.token_hex(12)}"]
WRONG = f"sw-wrong-{secrets.token_hex(12)}"
PROTECTED = ["/predict", "/v2/models/credit/infer", "/metrics"]
OPEN = ["/v2/health/live", "/v2/health/ready"]


@dataclass(frozen=True)
class Credit:
    home: Path
    rows: list[dict[str, Any]]
    v2: dict[str, Any]


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Credit:
    home = tmp_path_factory.mktemp("auth-credit") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPWAY_HOME", str(home))
        mp.delenv("SHIPWAY_DATABASE_URL", raising=False)
        mp.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
        _, _, frame = train_credit()
    frame = frame.iloc[:3]
    rows = records(frame)
    kinds = {"int64": "INT64", "float64": "FP64"}
    v2 = {
        "inputs": [
            {
                "name": col,
                "shape": [len(rows)],
                "datatype": kinds.get(str(frame[col].dtype), "BYTES"),
                "data": [r[col] for r in rows],
            }
            for col in frame.columns
        ]
    }
    return Credit(home, rows, v2)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth-keys") / "keys.txt"
    path.write_text(f"# production keys\n{KEYS[0]}\n\n   {KEYS[1]}   \n# rotated out: none\n")
    return path


@pytest.fixture(scope="module")
def server(
    credit: Credit, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    with serve_process(
        credit.home,
        "models:/credit/1",
        "--api-key-file",
        str(key_file),
        workdir=tmp_path_factory.mktemp("auth-logs"),
    ) as proc:
        yield proc


def call(url: str, path: str, credit: Credit, headers: dict[str, str] | None = None) -> Any:
    """The request each path needs: GET for health and metrics, a valid body for predictions."""
    if path == "/predict":
        return httpx.post(url + path, json=credit.rows, headers=headers, timeout=30)
    if path.endswith("/infer"):
        return httpx.post(url + path, json=credit.v2, headers=headers, timeout=30)
    return httpx.get(url + path, headers=headers, timeout=30)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    body = response.json()
    assert list(body) == ["error"] and body["error"]


# =============================================================================
# `shipway serve --api-key-file`
# =============================================================================


@pytest.mark.parametrize("path", PROTECTED)
def test_no_key_is_refused_with_401(server: ServeProcess, credit: Credit, path: str) -> None:
    assert_unauthorized(call(server.url, path, credit))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {WRONG}"},
        {"X-API-Key": WRONG},
        {"Authorization": "Bearer"},  # the scheme with no key
        {"X-API-Key": ""},
        {"Authorization": f"Basic {KEYS[0]}"},  # the right key under the wrong scheme
        {"Authorization": KEYS[0]},  # no scheme at all
        {"Authorization": f"Bearer {KEYS[0][:-1]}"},  # a prefix of a key
        {"Authorization": f"Bearer {KEYS[0]}x"},  # a key plus one character
        {"X-API-Key": f"{KEYS[0]},{KEYS[1]}"},
    ],
    ids=lambda h: next(iter(h)),
)
def test_wrong_keys_are_refused_with_401(
    server: ServeProcess, credit: Credit, headers: dict[str, str]
) -> None:
    for path in PROTECTED:
        assert_unauthorized(call(server.url, path, credit, headers))


@pytest.mark.parametrize("key", KEYS, ids=["first-key", "second-key"])
@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_each_key_works_in_either_header(
    server: ServeProcess, credit: Credit, key: str, style: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key}
    predicted = call(server.url, "/predict", credit, headers)
    assert predicted.status_code == 200, predicted.text
    assert len(predicted.json()["predictions"]) == len(credit.rows)
    inferred = call(server.url, "/v2/models/credit/infer", credit, headers)
    assert inferred.status_code == 200, inferred.text
    assert inferred.json()["model_name"] == "credit"
    metrics = call(server.url, "/metrics", credit, headers)
    assert metrics.status_code == 200
    assert "shipway_requests_total" in metrics.text


def test_the_scheme_name_is_case_insensitive(server: ServeProcess, credit: Credit) -> None:
    response = call(server.url, "/predict", credit, {"Authorization": f"bearer {KEYS[1]}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", OPEN)
def test_health_probes_need_no_key(server: ServeProcess, path: str) -> None:
    response = httpx.get(server.url + path)
    assert response.status_code == 200, response.text
    # ... and a wrong key does not break them either.
    assert httpx.get(server.url + path, headers={"X-API-Key": WRONG}).status_code == 200


def test_keys_travel_to_workers_in_a_private_file_not_the_environment(
    credit: Credit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers get their settings through the environment, which children inherit: keys given
    directly must go through a private file instead, removed when the server stops."""
    import stat

    import uvicorn

    from shipway.serving import server as server_module

    seen: dict[str, Any] = {}

    def fake_run(*args: Any, **kwargs: Any) -> None:  # uvicorn itself is tested elsewhere
        spec = os.environ[server_module.SPEC_ENV]
        settings = json.loads(spec)["settings"]
        key_file = Path(settings["api_key_file"])
        seen.update(spec=spec, key_file=key_file, mode=stat.S_IMODE(key_file.stat().st_mode))
        seen["keys"] = key_file.read_text().split()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv(server_module.SPEC_ENV, raising=False)
    monkeypatch.setenv("SHIPWAY_HOME", str(credit.home))
    server_module.serve(["models:/credit/1"], ServerSettings(api_keys=KEYS))
    assert all(k not in seen["spec"] for k in KEYS)
    assert seen["keys"] == KEYS and seen["mode"] == 0o600
    assert not seen["key_file"].exists()


def test_keys_never_reach_the_servers_output(server: ServeProcess, credit: Credit) -> None:
    """Runs last in this module: it stops the shared server to read everything it wrote."""
    for headers in (
        {"Authorization": f"Bearer {KEYS[0]}"},
        {"X-API-Key": KEYS[1]},
        {"Authorization": f"Bearer {WRONG}"},
        {"X-API-Key": WRONG},
    ):
        for path in PROTECTED:
            call(server.url, path, credit, headers)
        # Failing requests too: a bad body and an unknown model, with a key attached.
        httpx.post(f"{server.url}/predict", content=b"{not json", headers=headers)
        httpx.post(f"{server.url}/models/nope/predict", json=credit.rows, headers=headers)
    metrics = call(server.url, "/metrics", credit, {"X-API-Key": KEYS[0]}).text
    assert server.terminate() == 0
    output = server.output()
    assert "API key required" in " ".join(output.split())  # the banner names no key
    for secret in [*KEYS, WRONG]:
        assert secret not in output
        assert secret not in metrics


@pytest.mark.parametrize(
    "content",
    [None, "", "\n\n", "# only a comment\n   \n"],
    ids=["missing", "empty", "blank", "comments"],
)
def test_an_unusable_key_file_is_a_one_line_cli_error(
    credit: Credit, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "keys.txt"
    if content is not None:
        path.write_text(content)
    result = run_cli(credit.home, "serve", "models:/credit/1", "--api-key-file", str(path))
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:")
    assert "key file" in lines[0]
    assert str(path) in lines[0]
    assert "Serving" not in result.stdout  # it never got as far as starting


# =============================================================================
# create_app in process
# =============================================================================


def test_create_app_with_api_keys(credit: Credit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPWAY_HOME", str(credit.home))
    monkeypatch.delenv("SHIPWAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
    client = shipway.Client()
    settings = ServerSettings(api_keys=KEYS, prediction_log=False)
    assert KEYS[0] not in repr(settings)
    app = create_app(["models:/credit/1"], settings, client=client)
    with live_server(app) as url:
        for path in OPEN:
            assert httpx.get(url + path).status_code == 200
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            refused = list(pool.map(lambda p: call(url, p, credit), PROTECTED))
        for response in refused:
            assert_unauthorized(response)
        assert_unauthorized(call(url, "/predict", credit, {"X-API-Key": WRONG}))
        for key in KEYS:
            for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
                for path in PROTECTED:
                    response = call(url, path, credit, headers)
                    assert response.status_code == 200, (path, response.text)
