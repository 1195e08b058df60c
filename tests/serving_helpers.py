"""Shared pieces for the model-server tests: a trained credit model and a live server."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import uvicorn
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(app: Any, *, wait_ready: bool = True) -> Iterator[str]:
    """Run `app` under a real uvicorn server in a thread; yields its base URL once ready."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    while wait_ready and httpx.get(f"{url}/v2/health/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not become ready")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
