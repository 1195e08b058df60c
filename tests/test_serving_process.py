"""The real `shipway serve` command, run as a subprocess on a free port.

Covers what only a separate process shows: the CLI's start-up checks, several worker processes
sharing one port and one set of metrics, readiness while the models load, and a graceful
SIGTERM (in-flight requests finish, new connections are refused, the prediction log is
flushed, exit code 0).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import re
import signal
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from sklearn.pipeline import Pipeline

import shipway
from serving_helpers import (
    ServeProcess,
    free_port,
    metric_total,
    records,
    register_slow,
    run_cli,
    serve_process,
    train_credit,
)
from shipway.serving.predlog import read_predictions

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Credit:
    home: Path
    model: Pipeline
    frame: pd.DataFrame


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Credit:
    """A store with credit v1 trained, registered and aliased champion."""
    home = tmp_path_factory.mktemp("serve-credit") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPWAY_HOME", str(home))
        mp.delenv("SHIPWAY_DATABASE_URL", raising=False)
        mp.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
        version, model, frame = train_credit()
        shipway.set_alias(version.uri, "champion")
    return Credit(home, model, frame)


@pytest.fixture(scope="module")
def credit_server(
    credit: Credit, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """One worker serving models:/credit@champion, with a small body limit."""
    with serve_process(
        credit.home,
        "models:/credit@champion",
        "--max-body-bytes",
        "65536",
        workdir=tmp_path_factory.mktemp("serve-credit-logs"),
    ) as server:
        yield server


def predict(url: str, rows: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=rows, timeout=30, **kwargs)


def assert_matches_sklearn(body: dict[str, Any], model: Pipeline, frame: pd.DataFrame) -> None:
    assert body["model"] == "credit"
    assert body["version"] == 1
    assert body["predictions"] == model.predict(frame).tolist()
    np.testing.assert_allclose(body["probabilities"], model.predict_proba(frame), rtol=1e-9)
    assert body["classes"] == [0, 1]
    assert len(body["ids"]) == len(frame) == len(set(body["ids"]))


# =============================================================================
# Serving a registered model by alias
# =============================================================================


def test_serves_the_champion_with_the_sklearn_models_predictions(
    credit: Credit, credit_server: ServeProcess
) -> None:
    frame = credit.frame.iloc[:40]
    response = predict(credit_server.url, records(frame))
    assert response.status_code == 200, response.text
    assert_matches_sklearn(response.json(), credit.model, frame)
    assert "each model in its own process" in credit_server.output()  # the banner says so
    # each model says when it is ready, and that its pipeline takes arrays
    assert re.search(
        r"INFO: +credit/\d+ ready: loaded and warmed up in [\d.]+ s; its pipeline takes arrays",
        credit_server.output(),
    ), credit_server.output()

    # The same model through the Open Inference Protocol: one tensor per column.
    inputs = [
        {
            "name": col,
            "shape": [len(frame)],
            "datatype": {"int64": "INT64", "float64": "FP64"}.get(str(frame[col].dtype), "BYTES"),
            "data": [v.item() if hasattr(v, "item") else v for v in frame[col].astype(object)],
        }
        for col in frame.columns
    ]
    v2 = httpx.post(
        f"{credit_server.url}/v2/models/credit/infer", json={"id": "r1", "inputs": inputs}
    )
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert v2.json()["id"] == "r1"
    assert outputs["predict"]["data"] == credit.model.predict(frame).tolist()
    np.testing.assert_allclose(
        np.reshape(outputs["predict_proba"]["data"], (len(frame), 2)),
        credit.model.predict_proba(frame),
        rtol=1e-9,
    )


def test_two_workers_serve_and_metrics_add_up_across_them(credit: Credit, tmp_path: Path) -> None:
    frame = credit.frame.iloc[:5]
    rows = records(frame)
    with serve_process(
        credit.home, "models:/credit@champion", "--workers", "2", workdir=tmp_path
    ) as server:
        workers = [
            p
            for p in psutil.Process(server.proc.pid).children()
            if "spawn_main" in " ".join(p.cmdline())
        ]
        assert len(workers) == 2, [p.cmdline() for p in workers]

        def one(_: object = None) -> httpx.Response:
            # A new connection per request, so the kernel can hand it to either worker.
            return predict(server.url, rows, headers={"Connection": "close"})

        # Ready means every worker that takes connections has its model (a worker still
        # loading takes none): no request meets a 503.
        for _ in range(24):
            response = one()
            assert response.status_code == 200, response.text
            assert_matches_sklearn(response.json(), credit.model, frame)
        sent = answered = 24

        # Concurrent requests too, so both workers are likely busy at once.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(one, range(16)))
        sent += 16
        assert [r.status_code for r in responses] == [200] * 16

        # Whichever worker renders /metrics, the counts are those of both workers together.
        for _ in range(6):
            body = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"}).text
            assert metric_total(body, "shipway_requests_total") == sent
            assert metric_total(body, "shipway_requests_total", status="200") == answered + 16
        assert server.terminate() == 0
        assert all(not p.is_running() for p in workers)


# =============================================================================
# Start-up errors
# =============================================================================


def test_bad_model_uri_exits_quickly_with_one_line(credit: Credit) -> None:
    started = time.monotonic()
    result = run_cli(credit.home, "serve", "models:/nope/1", "--port", str(free_port()))
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nope" in lines[0]
    assert lines[0].startswith("Error:")
    assert "Serving" not in result.stdout  # no banner announcing a server that never starts


def test_a_port_in_use_is_refused_before_the_model_loads(credit: Credit) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(credit.home, "serve", "models:/credit/1", "--port", str(port))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines() == [
        f"Error: Port {port} on 127.0.0.1 is already in use. Stop what listens there, or "
        "choose another port with --port."
    ]
    assert "Serving" not in result.stdout and "Started server process" not in result.stderr


# =============================================================================
# Bad input never takes a worker down
# =============================================================================


def _bytes_tensor(name: str, blob: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [1],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(blob)},
    }


def malformed_requests(good: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx keyword arguments) of requests no server should choke on."""
    v2 = "/v2/models/credit/infer"
    tensors = [
        {
            "name": k,
            "shape": [1],
            "datatype": "BYTES" if isinstance(v, str) else "FP64",
            "data": [v],
        }
        for k, v in good.items()
    ]
    tensors = [
        dict(t, datatype="INT64") if k in ("age", "credit_lines", "months_employed") else t
        for t, k in zip(tensors, good, strict=True)
    ]
    bad_utf8 = struct.pack("<I", 2) + b"\xff\xfe"
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/predict", {"content": b"not json"}),
        ("POST", "/predict", {"content": b""}),
        ("POST", "/predict", {"content": b"\xff\xfe\x00garbage"}),
        ("POST", "/predict", {"content": b"[" * 5000 + b"]" * 5000}),
        # Over --max-body-bytes: answered before the body is read, so the server may close
        # the connection; don't let the client reuse it.
        ("POST", "/predict", {"content": b"x" * 70_000, "headers": {"Connection": "close"}}),
        ("POST", "/predict", {"json": 42}),
        ("POST", "/predict", {"json": "a string"}),
        ("POST", "/predict", {"json": None}),
        ("POST", "/predict", {"json": []}),
        ("POST", "/predict", {"json": [[]]}),
        ("POST", "/predict", {"json": [None]}),
        ("POST", "/predict", {"json": [{}]}),
        ("POST", "/predict", {"json": [dict(good, age="forty")]}),
        ("POST", "/predict", {"json": [dict(good, age=1e300)]}),
        ("POST", "/predict", {"json": [dict(good, age=2**63)]}),
        ("POST", "/predict", {"json": [dict(good, income=None)]}),
        ("POST", "/predict", {"json": [dict(good, income=[1, 2])]}),
        ("POST", "/predict", {"json": [dict(good, income={"a": 1})]}),
        ("POST", "/predict", {"json": [dict(good, employment="astronaut")]}),
        ("POST", "/predict", {"json": [dict(good, employment=7)]}),
        ("POST", "/predict", {"content": b'[{"income": NaN}]'}),
        ("POST", "/predict", {"json": {"columns": "age", "data": [[1]]}}),
        ("POST", "/predict", {"json": {"columns": ["age"], "data": 5}}),
        ("POST", "/predict", {"json": {"columns": list(good), "data": [[1, 2]]}}),
        ("POST", "/predict", {"json": {"instances": 5}}),
        ("POST", "/predict", {"json": {"instances": [5]}}),
        ("POST", "/predict", {"json": {"dataframe_split": {"columns": 1, "data": 2}}}),
        ("POST", "/predict", {"json": {"inputs": {k: 5 for k in good}}}),
        (
            "POST",
            "/predict",
            {"json": {"inputs": {k: [v, v] for k, v in good.items()} | {"age": [1]}}},
        ),
        ("POST", "/models/nope/predict", {"json": [good]}),
        ("POST", "/feedback", {"json": {"labels": "x"}}),
        ("POST", "/feedback", {"json": {"labels": [{"prediction_id": 5, "label": 1}]}}),
        ("POST", "/feedback", {"json": {"model": "nope", "labels": []}}),
        ("POST", "/feedback", {"json": {"model": ["x"], "labels": []}}),
        ("POST", v2, {"content": b"{"}),
        ("POST", v2, {"json": []}),
        ("POST", v2, {"json": {"inputs": 5}}),
        ("POST", v2, {"json": {"inputs": [5]}}),
        ("POST", v2, {"json": {"inputs": [{"name": 5}]}}),
        ("POST", v2, {"json": {"inputs": tensors[:2]}}),
        ("POST", v2, {"json": {"inputs": [dict(t, shape="x") for t in tensors]}}),
        ("POST", v2, {"json": {"inputs": [dict(t, shape=[-1]) for t in tensors]}}),
        ("POST", v2, {"json": {"inputs": [dict(t, shape=[2]) for t in tensors]}}),
        ("POST", v2, {"json": {"inputs": [dict(t, datatype=["FP64"]) for t in tensors]}}),
        ("POST", v2, {"json": {"inputs": [dict(t, parameters=[1]) for t in tensors]}}),
        ("POST", v2, {"json": {"inputs": tensors, "parameters": "binary"}}),
        ("POST", v2, {"json": {"inputs": tensors, "outputs": [{"name": "nope"}]}}),
        (
            "POST",
            v2,
            {"json": {"inputs": tensors, "outputs": [{"name": "predict", "parameters": 1}]}},
        ),
        (
            "POST",
            v2,
            {
                "json": {
                    "inputs": [dict(t, parameters={"binary_data_size": "lots"}) for t in tensors]
                }
            },
        ),
        ("POST", "/v2/models/nope/infer", {"json": {"inputs": tensors}}),
        ("POST", "/v2/models/credit/versions/7/infer", {"json": {"inputs": tensors}}),
        ("GET", "/v2/models/nope", {}),
        ("GET", "/v2/models/credit/versions/x/ready", {}),
        ("GET", "/nope", {}),
        ("DELETE", "/predict", {}),
    ]
    # The binary extension: a header that lies, and BYTES that are not UTF-8.
    head = json.dumps({"inputs": tensors}).encode()
    out.append(("POST", v2, {"content": head, "headers": {"inference-header-content-length": "x"}}))
    out.append(
        ("POST", v2, {"content": head, "headers": {"inference-header-content-length": "999999"}})
    )
    binary_tensors = [
        _bytes_tensor(t["name"], bad_utf8) if t["name"] == "employment" else t for t in tensors
    ]
    head = json.dumps({"inputs": binary_tensors}).encode()
    out.append(
        (
            "POST",
            v2,
            {
                "content": head + bad_utf8,
                "headers": {"inference-header-content-length": str(len(head))},
            },
        )
    )
    return out


def test_malformed_requests_get_4xx_and_the_worker_keeps_serving(
    credit: Credit, credit_server: ServeProcess
) -> None:
    url = credit_server.url
    good = records(credit.frame.iloc[:1])[0]
    before = httpx.get(f"{url}/metrics").text
    started = metric_total(before, "process_start_time_seconds")
    assert started > 0

    failures = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for method, path, kwargs in malformed_requests(good) * 3:
            response = http.request(method, path, **kwargs)
            if not 400 <= response.status_code < 500:
                failures.append((method, path, str(kwargs)[:120], response.status_code))
            elif path != "/nope" and method != "DELETE":
                assert "error" in response.json(), response.text
    assert failures == []

    assert credit_server.alive()
    after = httpx.get(f"{url}/metrics").text
    assert metric_total(after, "process_start_time_seconds") == started  # the same process
    assert metric_total(after, "shipway_requests_total", status="500") == 0
    response = predict(url, [good])
    assert response.status_code == 200
    assert_matches_sklearn(response.json(), credit.model, credit.frame.iloc[:1])
    assert "Traceback" not in credit_server.output()


# =============================================================================
# Readiness while loading, and a graceful SIGTERM
# =============================================================================


@dataclass(frozen=True)
class Slow:
    server: ServeProcess
    artifact_url: str
    drain: float


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slow]:
    """A model that takes 2 s to load and 1.5 s per predict call, served from the moment its
    port opens (before it is ready). The readiness test catches it loading; the SIGTERM test,
    after it, stops it."""
    home = tmp_path_factory.mktemp("serve-slow") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPWAY_HOME", str(home))
        mp.delenv("SHIPWAY_DATABASE_URL", raising=False)
        mp.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
        register_slow("slow", load_delay=2.0, predict_delay=1.5)
        artifact_url = shipway.Client().settings.resolved_artifact_url
    drain = 10.0
    with serve_process(
        home,
        "models:/slow/1",
        "--drain-seconds",
        str(drain),
        workdir=tmp_path_factory.mktemp("serve-slow-logs"),
        wait_ready=False,
    ) as server:
        yield Slow(server, artifact_url, drain)


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def test_port_opens_while_the_model_loads(slow: Slow) -> None:
    url = slow.server.url
    # Liveness answered (the fixture waited for it): the port is open while load_context still
    # sleeps, and readiness says so.
    ready = httpx.get(f"{url}/v2/health/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    early = httpx.post(f"{url}/predict", json=[{"x": 1.0}])
    assert early.status_code == 503
    assert early.headers["retry-after"].isdigit()
    assert "error" in early.json()
    v2 = httpx.post(
        f"{url}/v2/models/slow/infer",
        json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
    )
    assert v2.status_code == 503
    assert "retry-after" in v2.headers
    assert httpx.get(f"{url}/v2/health/live").status_code == 200

    slow.server.wait_until("/v2/health/ready", 200, timeout=30)
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    answer = httpx.post(f"{url}/predict", json=[{"x": 0.0}])  # zero: skips the model's sleep
    assert answer.status_code == 200
    assert answer.json()["predictions"] == [0.0]


def test_sigterm_drains_in_flight_requests_and_flushes_the_log(slow: Slow) -> None:
    server, drain = slow.server, slow.drain
    server.wait_until("/v2/health/ready", 200, timeout=30)
    pool = concurrent.futures.ThreadPoolExecutor(5)
    futures = [
        pool.submit(httpx.post, f"{server.url}/predict", json=[{"x": float(i + 1)}], timeout=30)
        for i in range(5)
    ]
    # Wait until the server holds all five: one predict call runs, the others queue for the
    # next batch (predict runs in a thread, so the event loop answers meanwhile).
    deadline = time.monotonic() + 10
    while metric_total(httpx.get(f"{server.url}/metrics").text, "shipway_requests_in_flight") < 5:
        assert time.monotonic() < deadline, "the five requests never were in flight"
        time.sleep(0.02)

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    # The listener closes at once (uvicorn checks for the signal every 0.1 s), while the
    # requests already accepted are still being answered.
    while not refuses_connections(server.port):
        assert time.monotonic() - signalled < 5, "still accepting connections after SIGTERM"
        time.sleep(0.02)
    assert not all(f.done() for f in futures), "stopped listening only after the drain"
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=5) as fresh:
        late = fresh.post(f"{server.url}/predict", json=[{"x": 9.0}])
        pytest.fail(f"a request after SIGTERM was answered {late.status_code}")

    responses = [f.result(timeout=drain + 5) for f in futures]
    pool.shutdown()
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json()["predictions"] for r in responses] == [[2.0 * (i + 1)] for i in range(5)]

    code = server.proc.wait(timeout=drain + 5)
    elapsed = time.monotonic() - signalled
    assert code == 0, server.output()
    assert elapsed < drain, elapsed
    assert "Traceback" not in server.output()

    # Everything answered was written before the process exited.
    ids = [i for r in responses for i in r.json()["ids"]]
    logged = read_predictions(slow.artifact_url, "slow")
    logged = logged[logged["prediction_id"].isin(ids)]
    assert sorted(logged["prediction_id"]) == sorted(ids)
    by_id = dict(zip(logged["prediction_id"], logged["prediction"], strict=True))
    for r in responses:
        (pid,), (value,) = r.json()["ids"], r.json()["predictions"]
        assert math.isclose(by_id[pid], value)


def test_a_worker_still_loading_takes_no_requests_from_a_ready_one(tmp_path: Path) -> None:
    """With several workers, the one that is ready serves everything while another still
    loads: none of the requests sent meanwhile meets a 503 "still loading"."""
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPWAY_HOME", str(home))
        mp.delenv("SHIPWAY_DATABASE_URL", raising=False)
        mp.delenv("SHIPWAY_ARTIFACT_URL", raising=False)
        register_slow("staggered", load_delay=12.0, first_loader_file=str(tmp_path / "first"))
    with serve_process(
        home, "models:/staggered/1", "--workers", "2", workdir=tmp_path, wait_ready=False
    ) as server:
        server.wait_until("/v2/health/ready", 200, timeout=30)
        started = time.monotonic()
        statuses = []
        # New connections, so the kernel offers each to whichever worker is accepting.
        for _ in range(40):
            with httpx.Client(timeout=10) as fresh:
                statuses.append(fresh.post(f"{server.url}/predict", json=[{"x": 0.0}]).status_code)
        assert time.monotonic() - started < 10, "the requests outlasted the slow worker's load"
        assert statuses == [200] * 40
        # The slow worker was loading all along (its process is there), just not taking any.
        workers = [
            p
            for p in psutil.Process(server.proc.pid).children()
            if "spawn_main" in " ".join(p.cmdline())
        ]
        assert len(workers) == 2, [p.cmdline() for p in workers]


def test_workers_auto_is_one_per_usable_cpu_and_nonsense_is_refused() -> None:
    import os
    import subprocess
    import sys

    from shipway.errors import InvalidInputError
    from shipway.serving.server import worker_count

    assert worker_count("auto") == len(os.sched_getaffinity(0)) >= 1
    assert worker_count("3") == 3
    for bad in ("0", "-2", "many"):
        with pytest.raises(InvalidInputError, match="positive number or auto"):
            worker_count(bad)
    refused = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "serve", "models:/credit/1", "--workers", "many"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--workers must be a positive number or auto" in (
        refused.stderr
    )
