"""A process SIGKILLed while registering and promoting leaves a consistent store behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway

pytestmark = pytest.mark.slow

MODEL = "killme"
# Seconds between the worker being ready and SIGKILL. Registering takes tens of milliseconds,
# so these land at unrelated points of the write path; 0.05 s can catch the store opening.
KILL_AFTER = [0.05, 0.5, 1.1, 1.7, 0.8]

WORKER = """
import sys
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import shipway

from shipway.client import get_client
from shipway.flavors import save_to_store

# What the first registration would import (about 1.4 s): imported before "ready", so the
# kill delays below fall in the write path, not in imports, however slow the machine.
import alembic.command, skops.io, shipway.flavors.sklearn, shipway.registry.registry

rng = np.random.default_rng(int(sys.argv[1]))
X = pd.DataFrame(rng.normal(size=(20, 3)), columns=["a", "b", "c"])
y = (X["a"] > 0).astype(int)
print("ready", flush=True)
i = 0
while True:
    i += 1
    if i % 4 == 1:  # a new model now and then; in between, only metadata writes
        model = LogisticRegression(C=0.01 * i).fit(X, y)
        logged = save_to_store(get_client().artifacts, model)
    version = shipway.register_model(model if i % 8 == 1 else logged, "killme")
    shipway.set_alias(version.uri, "champion")
"""

FRAME = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)), columns=["a", "b", "c"])


def _run_and_kill(round_no: int, delay: float, tmp_path: Path) -> None:
    log = tmp_path / f"worker-{round_no}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(round_no)],
            env=os.environ.copy(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", log.read_text()
            time.sleep(delay)
            assert proc.poll() is None, f"the worker died on its own:\n{log.read_text()}"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def _check_consistent(client: shipway.Client) -> list[int]:
    """The invariants a kill must not break; returns the visible version numbers."""
    try:
        versions = shipway.list_versions(MODEL, client=client)
    except shipway.NotFoundError:
        versions = []  # killed before its first registration committed
    numbers = [v.version for v in versions]
    assert numbers == list(range(1, len(numbers) + 1))  # contiguous from 1

    for v in versions:
        loaded = shipway.load_model(v.uri, client=client)
        assert loaded.predict(FRAME).shape == (len(FRAME),)

    report = shipway.verify_audit(client=client)
    assert report.ok, report.problem
    log = shipway.audit_log(limit=100_000, client=client)
    registered = [e.after["version"] for e in log if e.action == "model.register"]
    assert registered == numbers  # every committed version has its event, and nothing more

    moves = [e.after["version"] for e in log if e.action == "alias.set"]
    if numbers and moves:
        champion = shipway.get_model_version(f"models:/{MODEL}@champion", client=client)
        assert champion.version == moves[-1]
        assert champion.version in numbers
        # The alias follows each new version; at most the newest is not promoted yet.
        assert champion.version in (numbers[-1], numbers[-1] - 1)
        assert not champion.archived
    else:
        assert numbers in ([], [1])  # killed between the first register and its promotion
        with pytest.raises(shipway.NotFoundError):
            shipway.get_model_version(f"models:/{MODEL}@champion", client=client)
    return numbers


def test_sigkill_at_any_moment_leaves_a_consistent_store(
    backend: shipway.Client, tmp_path: Path
) -> None:
    model = LogisticRegression().fit(FRAME, (FRAME["b"] > 0).astype(int))
    ours: list[int] = []
    newest = 0  # the newest version number after the last round
    # The fixed delays, then longer rounds while the workers have registered too little to
    # exercise the write path (a slow machine registers less in the same time).
    extra = [1.7] * 5
    for round_no, delay in enumerate([*KILL_AFTER, *extra], start=1):
        if round_no > len(KILL_AFTER) and newest - len(ours) >= 10:
            break
        _run_and_kill(round_no, delay, tmp_path)

        client = shipway.Client()  # a fresh process would open the store like this
        try:
            numbers = _check_consistent(client)
            # The store still takes writes: register and promote from this process.
            mine = shipway.register_model(model, MODEL, client=client)
            assert mine.version == len(numbers) + 1
            shipway.set_alias(mine.uri, "champion", client=client)
            champion = shipway.load_model(f"models:/{MODEL}@champion", client=client)
            np.testing.assert_array_equal(champion.predict(FRAME), model.predict(FRAME))
            ours.append(mine.version)
            newest = mine.version
        finally:
            client.store.close()

    final = _check_consistent(backend)
    assert final[-1] == ours[-1]
    by_workers = len(final) - len(ours)
    assert by_workers >= 10, f"the workers registered only {by_workers} versions"
