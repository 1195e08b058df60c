"""The `shipway` command as a user meets it: real subprocesses, real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipway

SHIPWAY = [sys.executable, "-m", "shipway.cli"]


def cli(*args: str, check: bool = True, columns: int = 200) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SHIPWAY, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": str(columns)},
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def registered(shipway_home: Path) -> list[shipway.ModelVersionInfo]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = (x["a"] > 0).astype(int)
    versions = []
    for c in (1.0, 0.5):
        with shipway.start_run("credit", seed=1) as run:
            run.log_param("C", c)
            run.log_dataset(x.assign(y=y), name="train")
            model = LogisticRegression(C=c).fit(x, y)
            run.log_metric("accuracy", float(model.score(x, y)))
            run.log_model(model, input_example=x.head())
        versions.append(shipway.register_model(run, "credit"))
    shipway.register_model(run, "churn")
    return versions


def test_help_is_instant_and_imports_nothing_heavy() -> None:
    code = (
        "import sys; from shipway.cli import create_app; create_app();"
        "print(sorted(m for m in ('sqlalchemy', 'pandas', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = cli("--help")
    for noun in ("runs", "models", "audit"):
        assert noun in result.stdout


def test_models_list_json_and_table(registered: list[shipway.ModelVersionInfo]) -> None:
    data = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["latest_version"], m["versions"]) for m in data] == [
        ("churn", 1, 1),
        ("credit", 2, 2),
    ]
    table = cli("models", "list").stdout
    assert "credit" in table and "churn" in table
    versions = json.loads(cli("models", "list", "credit", "--json").stdout)
    assert [v["version"] for v in versions] == [1, 2]


def test_alias_show_and_lineage(registered: list[shipway.ModelVersionInfo]) -> None:
    cli("models", "alias", "models:/credit/1", "champion")
    cli("models", "alias", "models:/credit/2", "champion")
    shown = json.loads(cli("models", "show", "models:/credit@champion", "--json").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["champion"]
    lineage = json.loads(cli("models", "lineage", "credit@champion", "--json").stdout)
    assert lineage["run"]["id"] == registered[1].run_id
    assert (
        lineage["datasets"][0]["content_hash"] == registered[1].card["datasets"][0]["content_hash"]
    )
    moves = [(h["from"], h["to"]) for h in lineage["alias_history"]]
    assert moves == [(None, 1), (1, 2)]
    text = cli("models", "lineage", "models:/credit@champion").stdout
    assert registered[1].run_id in text and "alias history" in text


def test_runs_list_and_show(registered: list[shipway.ModelVersionInfo]) -> None:
    runs = json.loads(cli("runs", "list", "--json", "--experiment", "credit").stdout)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"}
    shown = json.loads(cli("runs", "show", runs[0]["id"][:8], "--json").stdout)
    assert shown["id"] == runs[0]["id"]
    assert "accuracy" in cli("runs", "show", runs[0]["id"]).stdout
    # at 80 columns every run reads whole: a short id, the experiment, metrics one a line
    narrow = cli("runs", "list", columns=80).stdout.splitlines()
    assert max(len(line) for line in narrow) <= 80
    line = next(line for line in narrow if runs[0]["id"][:8] in line)
    assert "credit" in line and "finished" in line and "…" not in line
    assert f"accuracy={runs[0]['metrics']['accuracy']:.4g}" in "\n".join(narrow)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["models", "show", "models:/credt/1"], "Model 'credt' not found. Existing: credit"),
        (["models", "show", "models:/credit/9"], "Version '9' of model 'credit' not found"),
        (["models", "show", "models:/credit@champ"], "Alias 'champ' of model 'credit'"),
        (["runs", "show", "nope"], "Run 'nope' not found"),
        (["models", "show", "models:/credit/x"], "is not a positive whole number"),
        (["runs", "list", "--experiment", "credi"], "Experiment 'credi' not found"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    registered: list[shipway.ModelVersionInfo], args: list[str], expected: str
) -> None:
    result = cli(*args, check=False)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_archive_refuses_aliased_version(registered: list[shipway.ModelVersionInfo]) -> None:
    cli("models", "alias", "models:/credit/1", "staging")
    refused = cli("models", "archive", "models:/credit/1", check=False)
    assert refused.returncode == 3 and "staging" in refused.stderr
    cli("models", "alias", "models:/credit/1", "staging", "--delete")
    cli("models", "archive", "models:/credit/1")
    assert json.loads(cli("models", "show", "credit/1", "--json").stdout)["archived"] is True


def test_card_edit(registered: list[shipway.ModelVersionInfo]) -> None:
    cli(
        "models",
        "card",
        "credit/2",
        "--intended-use",
        "pre-screening",
        "--limitations",
        "synthetic",
    )
    card = json.loads(cli("models", "show", "credit/2", "--json").stdout)["card"]
    assert card["intended_use"] == "pre-screening" and card["limitations"] == "synthetic"


def test_audit_log_and_verify_detects_tampering(
    registered: list[shipway.ModelVersionInfo], shipway_home: Path
) -> None:
    entries = json.loads(cli("audit", "log", "--json", "--limit", "1000").stdout)
    actions = [e["action"] for e in entries]
    assert actions.count("model.register") == 3 and "run.create" in actions
    assert "intact" in cli("audit", "verify").stdout
    import sqlite3

    target = next(e["seq"] for e in entries if e["action"] == "model.register")
    with sqlite3.connect(shipway_home / "shipway.db") as db:
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = ?", (target,))
    broken = cli("audit", "verify", check=False)
    assert broken.returncode == 4
    assert f"entry {target}" in broken.stderr and "altered" in broken.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["models", "list", "--bogus"], "No such option: --bogus"),
        (["models", "alias"], "Missing argument"),
        (["nonsense"], "No such command 'nonsense'"),
        (["runs", "list", "--limit", "-1"], "Invalid value for '--limit'"),
        (["pipeline", "list", "--limit", "0"], "Invalid value for '--limit'"),
        (["audit", "log", "--limit", "0"], "Invalid value for '--limit'"),
    ],
)
def test_usage_errors_are_short_and_exit_2(
    shipway_home: Path, args: list[str], expected: str
) -> None:
    result = cli(*args, check=False)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_pipeline_list_reads_whole_in_80_columns(shipway_home: Path) -> None:
    from shipway.client import get_client
    from shipway.pipeline.records import StageRecord, finish_run, save_stage, start_run

    client = get_client()
    ids = []
    runs = (("3f2a9c1b7e4d5a6b", True, "validate"), ("a1b2c3d4e5f6", False, None))
    for commit, dirty, failing in runs:
        run = start_run("credit-scoring", commit=commit, branch="main", dirty=dirty,
                        trigger="schedule", context={}, client=client)  # fmt: skip
        for name in ("test", "lint", "security", "train", "validate", "build", "push", "deploy"):
            status = "failed" if name == failing else "passed"
            save_stage(run.id, StageRecord(name, "builtin", status), {}, client=client)
            if status == "failed":
                break
        finish_run(run.id, "failed" if failing else "succeeded", None, client=client)
        ids.append(run.id)
    client.store.close()

    def listed(columns: int) -> list[str]:
        result = subprocess.run(
            [*SHIPWAY, "pipeline", "list"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": str(columns)},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= columns
        assert "* uncommitted changes" in result.stdout
        return lines

    narrow = listed(80)
    # every cell whole, on the run's own line; only the stage marks wrap
    failed = next(line for line in narrow if ids[0] in line)
    assert "credit-scoring" in failed and "3f2a9c1b*" in failed and " failed " in failed
    assert "…" not in failed.replace("[", "")
    assert "validate" in narrow[narrow.index(failed) + 1]  # the stage that stopped it
    succeeded = next(line for line in narrow if ids[1] in line)
    assert "a1b2c3d4 " in succeeded and "succeeded" in succeeded
    assert "schedule" not in "".join(narrow)  # the trigger made way

    wide = listed(120)
    failed = next(line for line in wide if ids[0] in line)
    assert "schedule" in failed and "✗ validate" in failed and " 0 s" in failed


def test_an_empty_list_says_so_in_a_line(shipway_home: Path) -> None:
    for noun, said in (("models", "No models."), ("deployments", "No deployments."),
                       ("pipeline", "No pipeline runs.")):  # fmt: skip
        result = cli(noun, "list")
        assert result.stdout.strip() == said
