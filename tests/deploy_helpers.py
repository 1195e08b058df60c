"""Models and a load generator for the deployment tests (a real module, so python-function
models defined here can be saved and rebuilt in replica processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

import shipway


class Doubler(shipway.PythonModel):
    """Doubles `x` (or multiplies it by `factor`). `delay`: seconds of sleep per call;
    `fail_share`: the share of inputs it fails on (a model bug). The all-zero warm-up row is
    always fast and fine."""

    def predict(self, data: Any) -> Any:
        x = data["x"].to_numpy(dtype=float)
        if x.any():
            time.sleep(float(self.params.get("delay", 0)))
            share = float(self.params.get("fail_share", 0))
            if share and bool(((np.abs(x * 1000).astype(int) % 100) < share * 100).any()):
                raise RuntimeError("the canary cannot handle this input")
        return (x * float(self.params.get("factor", 2))).tolist()


def register_doubler(name: str, **params: Any) -> shipway.ModelVersionInfo:
    return shipway.register_model(
        Doubler(**params), name, input_example=pd.DataFrame({"x": [1.0, 2.5]})
    )


@dataclass
class Load:
    """Steady single-row traffic against `url` from `workers` threads until stopped."""

    url: str
    workers: int = 4
    pause_s: float = 0.01
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                x = float(rng.uniform(0.001, 1))
                try:
                    r = client.post(f"{self.url}/predict", json=[{"x": x}])
                    with self._lock:
                        self.statuses[r.status_code] += 1
                        self.versions[r.headers.get("x-shipway-version", "?")] += 1
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.statuses[0] += 1
                        self.errors.append(repr(exc))
                time.sleep(self.pause_s)

    def __enter__(self) -> Load:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s == 0 or s >= 500)


def bring_down(environments: list[str]) -> None:
    """Stop each environment a test started; kill its agent when stopping fails."""
    from shipway.deploy import control, records

    for env in environments:
        try:
            control.down(env, wait_s=60)
        except Exception:  # best effort: kill what is left
            dep = records.find_deployment(env)
            if dep is not None and dep.agent_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(dep.agent_pid, signal.SIGKILL)
