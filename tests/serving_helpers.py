"""Shared pieces for the model-server tests: a trained credit model and a live server."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import shipway

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "credit"
NUMERIC = ["age", "income", "debt_ratio", "credit_lines", "months_employed"]
CATEGORICAL = ["employment", "housing"]
FEATURES = NUMERIC + CATEGORICAL


def credit_frame(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    spec = importlib.util.spec_from_file_location("credit_generate", EXAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame: pd.DataFrame = module.generate(rows, seed, False)
    return frame


def train_credit(name: str = "credit") -> tuple[shipway.ModelVersionInfo, Pipeline, pd.DataFrame]:
    df = credit_frame()
    model = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), NUMERIC),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(df[FEATURES], df["default"])
    with shipway.start_run("credit") as run:
        run.log_dataset(df, name="credit-train")
        run.log_model(model, input_example=df[FEATURES].head(50))
    return shipway.register_model(run, name), model, df[FEATURES]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (categoricals as strings, numpy scalars as Python)."""
    out: list[dict[str, Any]] = []
    for row in frame.astype(object).to_dict(orient="records"):
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out


# This module's source is stored with the python-function models it defines and rebuilt in
# model-server processes that cannot import the other test helpers: import them lazily.


def free_port() -> int:
    from servers import free_port as free

    return free()


@contextlib.contextmanager
def live_server(app: Any, *, wait_ready: bool = True) -> Iterator[str]:
    """Run `app` under a real uvicorn server in a thread; yields its base URL once ready."""
    from servers import uvicorn_thread

    with uvicorn_thread(app, log_level="warning", lifespan="on") as url:
        deadline = time.monotonic() + 60
        while wait_ready and httpx.get(f"{url}/v2/health/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not become ready")
            time.sleep(0.02)
        yield url


# =============================================================================
# A small python-function model with every column type, optionally slow or failing
# =============================================================================

TOY_FEATURES = ["n", "x", "flag", "name", "color", "rate"]
TOY_COLORS = ["red", "green", "blue"]


class ToyModel(shipway.PythonModel):
    """Predicts `2 * x + n (+ 0.5 if flag)`; columns int64, float64, bool, string, category and
    a nullable float. `delay` seconds of sleep per predict call; `slow_on`: a value of `x` that
    makes the call sleep `slow_delay` seconds more; `fail_on`: a value of `x` that makes predict
    raise (a model bug, not bad input); `exit_on`: one that ends the process it runs in."""

    def predict(self, data: Any) -> Any:
        delay = self.params.get("delay", 0)
        slow_on = self.params.get("slow_on")
        if slow_on is not None and bool((data["x"] == slow_on).any()):
            delay += self.params.get("slow_delay", 0.5)
        if delay:
            time.sleep(delay)
        fail_on = self.params.get("fail_on")
        if fail_on is not None and bool((data["x"] == fail_on).any()):
            raise RuntimeError(f"ToyModel cannot handle x={fail_on}")
        exit_on = self.params.get("exit_on")
        if exit_on is not None and bool((data["x"] == exit_on).any()):
            os._exit(3)  # a crash of the process the model runs in (a segfault, say)
        return toy_expected(data)


def toy_expected(data: Any) -> Any:
    """What ToyModel predicts for `data` (a DataFrame or a list of records)."""
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    flag = frame["flag"].astype(bool).to_numpy()
    return (2 * frame["x"].astype(float) + frame["n"].astype(float) + 0.5 * flag).to_numpy()


def toy_frame(rows: int = 20, seed: int = 0) -> pd.DataFrame:
    """Distinct-enough sample rows; `rate` has a missing value, so it is nullable."""
    import numpy as np

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "n": rng.integers(-50, 50, rows).astype("int64"),
            "x": np.round(rng.normal(0, 10, rows), 3),
            "flag": rng.random(rows) > 0.5,
            "name": [f"item-{i}" for i in range(rows)],
            "color": pd.Categorical(
                [TOY_COLORS[i % 3] for i in range(rows)], categories=TOY_COLORS
            ),
            "rate": rng.random(rows),
        }
    )
    frame.loc[0, "rate"] = float("nan")
    return frame


def register_toy(name: str, **params: Any) -> tuple[shipway.ModelVersionInfo, pd.DataFrame]:
    """Log and register a ToyModel(**params) as `name`; returns its version and sample rows."""
    frame = toy_frame()
    with shipway.start_run("toy") as run:
        run.log_model(ToyModel(**params), input_example=frame)
    return shipway.register_model(run, name), frame


@contextlib.contextmanager
def shipway_env(home: Path) -> Iterator[Path]:
    """$SHIPWAY_HOME set to `home` (created) for longer than one test, like the fixture."""
    names = ("SHIPWAY_HOME", "SHIPWAY_DATABASE_URL", "SHIPWAY_ARTIFACT_URL")
    saved = {k: os.environ.get(k) for k in names}
    home.mkdir(parents=True, exist_ok=True)
    os.environ["SHIPWAY_HOME"] = str(home)
    os.environ.pop("SHIPWAY_DATABASE_URL", None)
    os.environ.pop("SHIPWAY_ARTIFACT_URL", None)
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# =============================================================================
# `shipway serve` as a real subprocess (test_serving_process, test_serving_auth)
# =============================================================================


class SlowModel(shipway.PythonModel):
    """Doubles column `x`. Sleeps `load_delay` s in `load_context` and `predict_delay` s per
    predict call, except on all-zero input: that is the server's warm-up row, kept fast. With
    `first_loader_file`, the process that creates that file first loads at once (the others
    sleep): workers that finish loading far apart.

    Lives here (a real module file) so the python-function flavour can save and reload it.
    """

    def load_context(self, artifacts: dict[str, Path]) -> None:
        first = self.params.get("first_loader_file")
        if first is not None:
            try:
                os.close(os.open(first, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return
            except FileExistsError:
                pass
        time.sleep(float(self.params.get("load_delay", 0)))

    def predict(self, data: Any) -> Any:
        x = data["x"].to_numpy(dtype=float)
        if x.any():
            time.sleep(float(self.params.get("predict_delay", 0)))
        return (x * 2).tolist()


def register_slow(
    name: str,
    *,
    predict_delay: float = 0.0,
    load_delay: float = 0.0,
    first_loader_file: str | None = None,
) -> shipway.ModelVersionInfo:
    params: dict[str, Any] = {"predict_delay": predict_delay, "load_delay": load_delay}
    if first_loader_file is not None:
        params["first_loader_file"] = first_loader_file
    model = SlowModel(**params)
    # All zeros: registering runs the model on its example, which must not sleep.
    return shipway.register_model(model, name, input_example=pd.DataFrame({"x": [0.0, 0.0]}))


def serve_env(home: Path) -> dict[str, str]:
    """The test's environment for a `shipway serve` child, with its store under `home`."""
    env = dict(os.environ)
    env["SHIPWAY_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("SHIPWAY_DATABASE_URL", "SHIPWAY_ARTIFACT_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(var, None)
    return env


def run_cli(
    home: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m shipway.cli ARGS` to completion; `env` adds to the environment (for
    example SHIPWAY_ACTOR, to act as another person)."""
    return subprocess.run(
        [sys.executable, "-m", "shipway.cli", *args],
        env=serve_env(home) | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class ServeProcess:
    """A running `shipway serve`; its stdout and stderr go to files (no pipe to fill up)."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    stdout_path: Path
    stderr_path: Path

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_until(self, path: str, status: int = 200, timeout: float = 60) -> None:
        """Poll GET `path` until it answers `status`; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise AssertionError(
                    f"shipway serve exited with {self.proc.returncode}:\n{self.output()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + path, timeout=5).status_code == status:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} never answered {status}:\n{self.output()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL if it does not come in `timeout`)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"shipway serve ignored SIGTERM:\n{self.output()}") from None


@contextlib.contextmanager
def serve_process(
    home: Path, *args: str, workdir: Path, wait_ready: bool = True, timeout: float = 60
) -> Iterator[ServeProcess]:
    """Start `python -m shipway.cli serve ARGS --port FREE`; yield once ready (or, without
    `wait_ready`, once the port answers liveness). Terminated (SIGTERM) on exit if still up."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = workdir / f"serve-{port}.out", workdir / f"serve-{port}.err"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipway.cli", "serve", *args, "--port", str(port)],
            env=serve_env(home),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    server = ServeProcess(proc, f"http://127.0.0.1:{port}", port, stdout_path, stderr_path)
    try:
        server.wait_until("/v2/health/ready" if wait_ready else "/v2/health/live", 200, timeout)
        yield server
    finally:
        if server.alive():
            with contextlib.suppress(AssertionError):
                server.terminate()


def metric_total(body: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` (with at least `labels`) in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
