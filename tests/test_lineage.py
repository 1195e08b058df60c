"""Lineage answers "which version is live, and what made it": approvals and monitoring too.

(Deployments in lineage are checked where real environments run: tests/test_deploy_e2e.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import shipway
from shipway.client import get_client
from shipway.governance.approvals import approve, request_approval
from shipway.monitoring import monitor, save_result


def _register() -> shipway.ModelVersionInfo:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (x["a"] > 0).astype(int)
    with shipway.start_run("credit") as run:
        run.log_dataset(x.assign(y=y), name="train")
        run.log_model(LogisticRegression().fit(x, y), input_example=x.head())
    return shipway.register_model(run, "credit")


def test_lineage_names_the_approval_and_the_latest_monitoring(shipway_home: Path) -> None:
    version = _register()
    empty = shipway.lineage(version.uri)
    assert empty["approvals"] == [] and empty["monitoring"] is None and empty["live_in"] == []
    asked = request_approval(version.uri, "production", comment="better recall")
    approve(asked.id, client=get_client().as_user("alice"))
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"a": rng.normal(size=500)})
    cur = pd.DataFrame({"a": rng.normal(1, 1, size=300)})
    save_result(monitor(ref, cur, model="credit", version=1))
    story = shipway.lineage("models:/credit/1")
    (approval,) = story["approvals"]
    assert approval["status"] == "approved" and approval["decided_by"] == "alice"
    assert approval["comment"] == "better recall"
    assert story["monitoring"]["drifted_features"] == ["a"]
    assert story["monitoring"]["rows"] == 300
    assert story["run"]["id"] == version.run_id  # the registry's part is still there
