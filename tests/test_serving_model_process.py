"""Each served model runs in its own process (the default): predictions, errors, crashes,
signals and memory, seen from a real server."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest

from serving_helpers import (
    live_server,
    metric_total,
    records,
    register_slow,
    register_toy,
    shipway_env,
    toy_expected,
    toy_frame,
)
from shipway.serving import ServerSettings, create_app
from shipway.serving.runtime import ServedModel

POISON = 999.5  # makes the toy model raise
FATAL = 555.5  # makes it end its process


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with shipway_env(tmp_path_factory.mktemp("model-process") / "home"):
        register_toy("toy", fail_on=POISON, exit_on=FATAL)
        app = create_app(["models:/toy/1"])
        with live_server(app) as url:
            yield SimpleNamespace(url=url, app=app, rows=toy_frame(6))


def jsonable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in records(frame)
    ]


def served(env: SimpleNamespace) -> ServedModel:
    model: ServedModel = env.app.state.server.models["toy"]
    return model


def predict_ok(env: SimpleNamespace) -> None:
    r = httpx.post(f"{env.url}/predict", json=jsonable(env.rows), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pytest.approx(list(toy_expected(env.rows)))


def model_pid(env: SimpleNamespace) -> int:
    process = served(env).process
    assert process is not None and process.pid is not None
    return process.pid


def test_the_model_predicts_in_a_child_process_of_the_server(env: SimpleNamespace) -> None:
    predict_ok(env)
    child = psutil.Process(model_pid(env))
    assert child.ppid() == os.getpid()
    assert "shipway.serving.model_process" in " ".join(child.cmdline())
    assert served(env).model is None  # the server itself never loaded it
    # Its memory is exported beside the server's own.
    text = httpx.get(f"{env.url}/metrics").text
    rss = metric_total(text, "shipway_model_process_resident_memory_bytes", model="toy")
    assert rss > 10 * 2**20


def test_a_model_error_keeps_its_name_and_the_process_keeps_serving(env: SimpleNamespace) -> None:
    pid = model_pid(env)
    bad = jsonable(env.rows.iloc[:1])
    bad[0]["x"] = POISON
    r = httpx.post(f"{env.url}/predict", json=bad, timeout=30)
    assert r.status_code == 500
    assert r.json() == {"error": "Internal error: RuntimeError."}
    predict_ok(env)
    assert model_pid(env) == pid


def test_the_model_process_ignores_sigterm_and_sigint(env: SimpleNamespace) -> None:
    """A signal to the whole process group (Ctrl-C, or `kill -TERM -PGID`) reaches the model's
    process too: it must outlive it, so the server can drain and then stop it."""
    pid = model_pid(env)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    assert psutil.Process(pid).is_running()
    predict_ok(env)
    assert model_pid(env) == pid


def test_a_model_process_killed_while_idle_is_replaced_unnoticed(env: SimpleNamespace) -> None:
    pid, restarts = model_pid(env), served(env).process.restarts  # type: ignore[union-attr]
    victim = psutil.Process(pid)
    victim.kill()
    victim.wait(10)
    predict_ok(env)  # no error: nothing was lost, a new process answers
    assert model_pid(env) != pid
    assert served(env).process.restarts == restarts + 1  # type: ignore[union-attr]


def test_readiness_says_no_while_a_dead_model_process_is_replaced(env: SimpleNamespace) -> None:
    # Not ready keeps Kubernetes' traffic away, so no prediction would come to replace the
    # process: asking for readiness starts the new one.
    pid, restarts = model_pid(env), served(env).process.restarts  # type: ignore[union-attr]
    assert httpx.get(f"{env.url}/v2/health/ready").status_code == 200
    victim = psutil.Process(pid)
    victim.kill()
    victim.wait(10)
    r = httpx.get(f"{env.url}/v2/health/ready")
    assert r.status_code == 503 and r.json() == {"ready": False, "restarting": ["toy"]}
    assert httpx.get(f"{env.url}/v2/models/toy/ready").status_code in (200, 503)
    deadline = time.monotonic() + 60
    while httpx.get(f"{env.url}/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "the model process was not replaced"
        time.sleep(0.1)
    assert model_pid(env) != pid
    assert served(env).process.restarts == restarts + 1  # type: ignore[union-attr]
    assert httpx.get(f"{env.url}/v2/models/toy/ready").json() == {"name": "toy", "ready": True}
    predict_ok(env)
    assert served(env).process.restarts == restarts + 1  # type: ignore[union-attr]


def test_a_crash_during_a_prediction_answers_503_then_the_model_comes_back(
    env: SimpleNamespace,
) -> None:
    pid = model_pid(env)
    fatal = jsonable(env.rows.iloc[:1])
    fatal[0]["x"] = FATAL
    r = httpx.post(f"{env.url}/predict", json=fatal, timeout=30)
    assert r.status_code == 503, r.text
    assert "died" in r.json()["error"] and "exit code 3" in r.json()["error"]
    assert "retry-after" in r.headers
    predict_ok(env)
    assert model_pid(env) != pid
    text = httpx.get(f"{env.url}/metrics").text
    assert metric_total(text, "shipway_requests_total", model="toy", status="503") == 1


def test_in_process_serving_gives_the_same_answers(tmp_path: Any) -> None:
    with shipway_env(tmp_path / "home"):
        register_toy("toy")
        app = create_app(["models:/toy/1"], ServerSettings(model_process=False))
        with live_server(app) as url:
            model = app.state.server.models["toy"]
            assert model.process is None and model.model is not None
            rows = toy_frame(6)
            r = httpx.post(f"{url}/predict", json=jsonable(rows), timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == pytest.approx(list(toy_expected(rows)))
            assert len(set(r.json()["ids"])) == 6


def test_only_processes_shipway_owns_get_short_gil_turns(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`shipway serve`'s worker factory shortens the GIL's switch interval (a process-wide
    setting); an app embedded with create_app leaves the host process's alone."""
    import json
    import sys

    from shipway.serving.server import SPEC_ENV, app_from_env

    before = sys.getswitchinterval()
    try:
        create_app(["models:/toy/1"])
        assert sys.getswitchinterval() == before
        spec = {"uris": ["models:/toy/1"], "settings": ServerSettings().model_dump(mode="json")}
        monkeypatch.setenv(SPEC_ENV, json.dumps(spec))
        monkeypatch.setenv("SHIPWAY_HOME", str(tmp_path / "home"))
        app_from_env()
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)


def test_a_model_stuck_past_the_request_timeout_is_stopped_and_replaced(tmp_path: Any) -> None:
    """A predict call that outlasts the request timeout has no caller left; its process is
    killed (a model stuck for good would hold the predict thread for ever) and the next request
    is answered by a new one."""
    with shipway_env(tmp_path / "home"):
        register_slow("stuck", predict_delay=60.0)  # any x but 0 sleeps a minute
        app = create_app(["models:/stuck/1"], ServerSettings(request_timeout_s=1.0))
        with live_server(app) as url:
            process = app.state.server.models["stuck"].process
            first = process.pid
            started = time.monotonic()
            r = httpx.post(f"{url}/predict", json=[{"x": 1.0}], timeout=30)
            assert r.status_code == 503, r.text
            assert "retry-after" in r.headers
            # x=0 is fast; retried as a client would while the new process loads (on a busy
            # machine longer than the one-second timeout).
            while True:
                fast = httpx.post(f"{url}/predict", json=[{"x": 0.0}], timeout=30)
                if fast.status_code != 503 or time.monotonic() - started > 30:
                    break
                time.sleep(0.2)
            assert fast.status_code == 200, fast.text
            assert fast.json()["predictions"] == [0.0]
            assert time.monotonic() - started < 30  # not the minute the model wanted
            assert process.pid not in (None, first) and process.restarts == 1
            assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
