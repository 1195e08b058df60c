"""Two processes registering versions of one model at the same time, on a fresh store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shipway

pytestmark = pytest.mark.slow

PER_WORKER = 25

# Each worker trains and registers its own tiny models; every fifth goes through a run.
# It waits for the `go` file so both start registering (and open the fresh store) together.
WORKER = """
import json, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import shipway

worker, count, ready, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
rng = np.random.default_rng(int(worker))
X = pd.DataFrame(rng.normal(size=(20, 3)), columns=["a", "b", "c"])
y = (X["a"] > 0).astype(int)
ready.touch()
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never told to start")
    time.sleep(0.002)
for i in range(count):
    c = round(0.01 + i * 0.1 + int(worker) * 0.001, 4)
    model = LogisticRegression(C=c).fit(X, y)
    if i % 5 == 0:
        with shipway.start_run(experiment="race", tags={"worker": worker}) as run:
            run.log_model(model)
        version = shipway.register_model(run, "shared")
    else:
        version = shipway.register_model(model, "shared")
    print(json.dumps({"worker": worker, "version": version.version, "C": c,
                      "manifest": version.manifest_digest, "run": version.run_id}), flush=True)
"""


def _race(tmp_path: Path) -> list[dict[str, object]]:
    go = tmp_path / "go"
    procs = []
    for worker in ("1", "2"):
        ready = tmp_path / f"ready-{worker}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, worker, str(PER_WORKER), str(ready), str(go)],
                    env=os.environ.copy(),
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    try:
        deadline = time.monotonic() + 60
        while not all(ready.exists() for ready, _ in procs):
            assert time.monotonic() < deadline, "workers did not get ready"
            assert all(p.poll() is None for _, p in procs), "a worker died before the start"
            time.sleep(0.01)
        go.touch()
        rows = []
        for _, proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            rows += [json.loads(line) for line in out.splitlines()]
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return rows


def test_two_processes_registering_at_once_get_gapless_distinct_versions(
    backend: shipway.Client, tmp_path: Path
) -> None:
    started = time.monotonic()
    rows = _race(tmp_path)
    elapsed = time.monotonic() - started

    total = 2 * PER_WORKER
    assert len(rows) == total
    assert sorted(r["version"] for r in rows) == list(range(1, total + 1))
    by_worker = Counter(r["worker"] for r in rows)
    assert by_worker == {"1": PER_WORKER, "2": PER_WORKER}
    # Each worker's own versions increase, and the two really interleaved.
    for worker in ("1", "2"):
        mine = [r["version"] for r in rows if r["worker"] == worker]
        assert mine == sorted(mine)
    order = [r["worker"] for r in sorted(rows, key=lambda r: r["version"])]
    assert order != sorted(order), f"no interleaving at all in {elapsed:.1f}s: {order}"

    versions = shipway.list_versions("shared", client=backend)
    assert [v.version for v in versions] == list(range(1, total + 1))
    reported = {r["version"]: r for r in rows}
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(5, 3)), columns=["a", "b", "c"])
    for v in versions:
        row = reported[v.version]
        assert v.manifest_digest == row["manifest"]
        assert v.run_id == row["run"]
        loaded = shipway.load_model(v.uri, client=backend)
        assert row["C"] == loaded.impl.C  # the model registered under this number, not another
        assert loaded.predict(X).shape == (5,)

    runs = shipway.list_runs("race", client=backend)
    assert len(runs) == 2 * (PER_WORKER // 5)
    assert {r.status for r in runs} == {"finished"}

    report = shipway.verify_audit(client=backend)
    assert report.ok, report.problem
    registered = [
        e.after["version"]
        for e in shipway.audit_log(limit=10_000, client=backend)
        if e.action == "model.register"
    ]
    assert sorted(registered) == list(range(1, total + 1))
    created = [e for e in shipway.audit_log(client=backend) if e.action == "model.create"]
    assert len(created) == 1


# Each opener waits for round k's `go` file, then opens that round's fresh SQLite store and
# reads from it: every round, all of them meet a database file that does not exist yet.
OPENER = """
import sys, time
from pathlib import Path

from shipway.store.engine import create_store_engine

root, rounds = Path(sys.argv[1]), int(sys.argv[2])
for k in range(rounds):
    go = root / f"go-{k}"
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(f"never told to start round {k}")
        time.sleep(0.0005)
    engine = create_store_engine(f"sqlite:///{root / f'store-{k}.db'}")
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
    engine.dispose()
    print(mode, flush=True)
    (root / f"done-{k}-{sys.argv[3]}").touch()
"""


def test_processes_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a file to WAL does not wait on SQLite's busy timeout: when every process made
    # the switch on connect, about one opener in 25 failed with "database is locked".
    openers, rounds = 4, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), str(rounds), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(openers)
    ]
    try:
        for k in range(rounds):
            (tmp_path / f"go-{k}").touch()
            deadline = time.monotonic() + 60
            while len(list(tmp_path.glob(f"done-{k}-*"))) < openers:
                assert time.monotonic() < deadline, f"round {k} did not finish"
                if any(p.poll() not in (None, 0) for p in procs):
                    break
                time.sleep(0.005)
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.split() == ["wal"] * rounds
