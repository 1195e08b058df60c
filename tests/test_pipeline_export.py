"""`shipway pipeline export`: the workflows it writes are valid CI files that mean the pipeline.

Validity is checked by the real `check-jsonschema` with the official GitHub and GitLab schemas
it ships; meaning is checked job by job (order, commands, conditions, environments), with the
branch conditions evaluated on sample branches against Shipway's own `when:`.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from shipway.errors import ConflictError, InvalidInputError
from shipway.pipeline.export import export, target_of, write_export
from shipway.pipeline.spec import PipelineSpec, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "credit"
SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}
SHIPWAY = [sys.executable, "-m", "shipway.cli"]

SYNTHETIC = """\
pipeline:
  model: fraud
  stages:
    - name: test
      run: python -m pytest -q
      timeout: 10m
    - name: data
      run: python make_data.py
      outputs: [data/*.parquet]
      env: {SEED: "7", PATTERN: "a$b"}
    - name: train
      uses: train
      with: {command: python train.py}
      inputs: [data/train.parquet]
    - name: build
      uses: build
    - name: push
      uses: push
      with: {registry: ghcr.io/acme/fraud}
    - name: notify
      run: ./notify.sh
      when: {branch: ["feature/*", "*-hotfix"], env: [SLACK_WEBHOOK]}
    - name: deploy-staging
      uses: deploy
      with: {environment: staging}
      when: {branch: [main, "release/*"]}
    - name: gate
      uses: gate
      with: {environment: production, timeout: 2h}
      when: {branch: main}
    - name: promote
      uses: promote
      with: {environment: production}
      when: {branch: main}
      timeout: 30m
"""
JOBS = ["test", "data", "train", "build", "notify", "deploy-staging", "gate", "promote"]
BRANCHES = ["main", "release/1.2", "release/1/2", "feature/x", "x-hotfix", "dev", "mainline"]


@pytest.fixture
def synthetic(tmp_path: Path) -> PipelineSpec:
    return parse_spec(SYNTHETIC, tmp_path / "shipway.yaml")


@pytest.fixture
def example() -> PipelineSpec:
    return load_spec(EXAMPLE)


def schema_check(text: str, target: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The official schema's verdict on ``text``, from the real check-jsonschema."""
    binary = Path(sys.executable).parent / "check-jsonschema"
    found = str(binary) if binary.exists() else shutil.which("check-jsonschema")
    if found is None:
        pytest.fail(
            "check-jsonschema is not installed; it validates the exports against the official "
            "CI schemas: pip install -e '.[dev]' (or pip install 'check-jsonschema>=0.29')."
        )
    path = tmp_path / f"{target}-export.yml"
    path.write_text(text)
    return subprocess.run(
        [found, "--builtin-schema", SCHEMAS[target], str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def jobs_of(doc: dict[str, Any], target: str) -> dict[str, Any]:
    if target == "github":
        return dict(doc["jobs"])
    return {k: v for k, v in doc.items() if isinstance(v, dict) and "script" in v}


def commands(job: dict[str, Any]) -> list[str]:
    """Every shell line a job runs (GitHub steps, or GitLab's script)."""
    if "steps" in job:
        return [s["run"] for s in job["steps"] if "run" in s]
    return list(job["script"])


def github_if(expression: str, branch: str, *, failed: bool = False) -> bool:
    """A GitHub job condition evaluated for a push to ``branch`` (the subset the export writes:
    ==, startsWith, endsWith, !, &&, || and parentheses, with GitHub's precedence)."""
    inner = expression.removeprefix("${{").removesuffix("}}").strip()
    python = re.sub(r"!(?!=)", " not ", inner).replace("&&", " and ").replace("||", " or ")
    names = {
        "github": SimpleNamespace(ref_name=branch),
        "startsWith": str.startswith,
        "endsWith": str.endswith,
        "cancelled": lambda: False,
        "failure": lambda: failed,
    }
    return bool(eval(python, {"__builtins__": {}}, names))


def gitlab_rule(rule: str, branch: str, variables: dict[str, str]) -> bool:
    """A GitLab `rules: if:` of the export's shape, evaluated in a branch pipeline."""
    result = True
    for clause in rule.split(" && "):
        if match := re.fullmatch(r"\$CI_COMMIT_BRANCH =~ /(.*)/", clause):
            result &= re.search(match[1].replace("\\/", "/"), branch) is not None
        elif match := re.fullmatch(r"\$(\w+) != null", clause):
            result &= match[1] in variables
        elif match := re.fullmatch(r'\$(\w+) != ""', clause):
            result &= variables.get(match[1]) != ""  # an unset variable is != "" too
        else:
            raise AssertionError(f"unexpected clause {clause!r}")
    return result


# -- validity against the official schemas ---------------------------------------------------------


@pytest.mark.parametrize("target", ["github", "gitlab"])
def test_the_example_pipeline_exports_a_valid_workflow(
    example: PipelineSpec, target: str, tmp_path: Path
) -> None:
    text = export(example, target_of(target), workdir="examples/credit")
    result = schema_check(text, target, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = jobs_of(yaml.safe_load(text), target)
    assert list(jobs) == [s.name for s in example.stages]
    assert not [j for j in jobs.values() if any("--only build" in c for c in commands(j))]


@pytest.mark.parametrize("target", ["github", "gitlab"])
def test_a_pipeline_with_every_feature_exports_a_valid_workflow(
    synthetic: PipelineSpec, target: str, tmp_path: Path
) -> None:
    result = schema_check(export(synthetic, target_of(target)), target, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "breakage"),
    [
        ("github", lambda doc: doc["jobs"]["test"].pop("runs-on")),
        ("github", lambda doc: doc["jobs"]["gate"].update({"timeout-minutes": "soon"})),
        ("gitlab", lambda doc: doc["gate"].update({"when": "sometimes"})),
        ("gitlab", lambda doc: doc["gate"]["environment"].update({"action": "deploy"})),
    ],
)
def test_the_schema_check_rejects_a_broken_workflow(
    synthetic: PipelineSpec, target: str, breakage: Any, tmp_path: Path
) -> None:
    doc = yaml.safe_load(export(synthetic, target_of(target)))
    breakage(doc)
    result = schema_check(yaml.safe_dump(doc, sort_keys=False), target, tmp_path)
    assert result.returncode != 0, "the schema accepted a broken workflow"


# -- what the jobs do ------------------------------------------------------------------------------


def test_github_jobs_follow_the_pipeline_one_stage_each(synthetic: PipelineSpec) -> None:
    doc = yaml.safe_load(export(synthetic, "github", workdir="ml/fraud"))
    jobs = doc["jobs"]
    assert list(jobs) == JOBS
    assert "needs" not in jobs["test"]
    for before, job in itertools.pairwise(JOBS):
        assert jobs[job]["needs"] == [before]
    runs = {name: commands(job)[-1] for name, job in jobs.items()}
    # The first job starts this CI run's own pipeline run; the others continue it.
    assert runs["test"] == "shipway pipeline run --from test --to test --trigger ci"
    assert runs["train"] == "shipway pipeline run --only train --trigger ci"
    assert runs["build"] == "shipway pipeline run --only build --only push --trigger ci"
    assert doc["defaults"]["run"]["working-directory"] == "ml/fraud"
    for job in jobs.values():
        steps = job["steps"]
        assert steps[0] == {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0}}
        assert steps[1] == {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11"}}
        assert "pip install 'shipway[pipeline]'" in commands(job)
    assert doc["env"]["SHIPWAY_TRACKING_URI"] == "${{ secrets.SHIPWAY_TRACKING_URI }}"
    assert doc["env"]["SHIPWAY_TOKEN"] == "${{ secrets.SHIPWAY_TOKEN }}"
    assert set(doc["on"]) == {"push", "pull_request", "workflow_dispatch"}
    assert "branches" not in doc["on"]["push"]  # test and train run on every branch


def test_gitlab_stages_follow_the_pipeline_one_job_each(synthetic: PipelineSpec) -> None:
    doc = yaml.safe_load(export(synthetic, "gitlab", workdir="ml/fraud", python="3.12"))
    jobs = jobs_of(doc, "gitlab")
    assert doc["stages"] == JOBS == list(jobs)
    assert [job["stage"] for job in jobs.values()] == JOBS
    # Stage order sequences the jobs; `needs` on a job that rules leave out breaks the pipeline.
    assert not [job for job in jobs.values() if "needs" in job]
    assert doc["default"]["image"] == "python:3.12"
    before = doc["default"]["before_script"]
    assert before[0] == "cd ml/fraud" and before[-1] == "pip install 'shipway[pipeline]'"
    assert jobs["train"]["script"] == ["shipway pipeline run --only train --trigger ci"]
    assert jobs["test"]["script"] == ["shipway pipeline run --from test --to test --trigger ci"]


@pytest.mark.parametrize("target", ["github", "gitlab"])
def test_exactly_one_job_builds_the_image_and_it_pushes_it(
    synthetic: PipelineSpec, target: str
) -> None:
    text = export(synthetic, target_of(target))
    jobs = jobs_of(yaml.safe_load(text), target)
    building = [n for n, j in jobs.items() if any("--only build" in c for c in commands(j))]
    pushing = [n for n, j in jobs.items() if any("--only push" in c for c in commands(j))]
    assert building == pushing == ["build"]
    assert "push" not in jobs
    assert "The image is built once, by the job build" in text
    if target == "gitlab":
        assert [n for n, j in jobs.items() if "services" in j] == ["build"]


def test_github_branch_conditions_match_the_pipelines_own(synthetic: PipelineSpec) -> None:
    jobs = yaml.safe_load(export(synthetic, "github"))["jobs"]
    assert "if" not in jobs["test"] and "if" not in jobs["build"]
    for stage in synthetic.stages:
        if stage.name not in jobs or not stage.when.branch:
            continue
        for branch in BRANCHES:
            runs = stage.when.holds(branch, {v: "set" for v in stage.when.env}) is None
            assert github_if(jobs[stage.name]["if"], branch) == runs, (stage.name, branch)
    assert "startsWith(github.ref_name, 'release/')" in jobs["deploy-staging"]["if"]
    assert "github.ref_name == 'main'" in jobs["gate"]["if"]
    # After a job that may be skipped, later jobs still run, but never after a failure.
    assert github_if(jobs["promote"]["if"], "main")
    assert not github_if(jobs["promote"]["if"], "main", failed=True)
    assert not github_if(jobs["deploy-staging"]["if"], "main", failed=True)
    # when.env cannot be a GitHub job condition: the variable reaches Shipway, which decides.
    slack = "${{ secrets.SLACK_WEBHOOK || vars.SLACK_WEBHOOK }}"
    assert jobs["notify"]["env"] == {"SLACK_WEBHOOK": slack}


def test_gitlab_rules_match_the_pipelines_own(synthetic: PipelineSpec) -> None:
    jobs = jobs_of(yaml.safe_load(export(synthetic, "gitlab")), "gitlab")
    assert "rules" not in jobs["test"] and "rules" not in jobs["build"]
    for stage in synthetic.stages:
        if stage.name not in jobs or not (stage.when.branch or stage.when.env):
            continue
        (rule,) = jobs[stage.name]["rules"]
        for branch in BRANCHES:
            for variables in ({}, {"SLACK_WEBHOOK": ""}, {"SLACK_WEBHOOK": "https://hooks"}):
                runs = stage.when.holds(branch, variables) is None
                assert gitlab_rule(rule["if"], branch, variables) == runs, (stage.name, branch)
    assert jobs["deploy-staging"]["rules"] == [
        {"if": "$CI_COMMIT_BRANCH =~ /^(main|release\\/.*)$/"}
    ]


@pytest.mark.parametrize("target", ["github", "gitlab"])
def test_the_gate_job_names_its_environment(synthetic: PipelineSpec, target: str) -> None:
    jobs = jobs_of(yaml.safe_load(export(synthetic, target_of(target))), target)
    gate = jobs["gate"]
    if target == "github":
        assert gate["environment"] == "production"  # its required reviewers apply
        assert gate["timeout-minutes"] == 125  # the gate's own wait (2h), plus the job's setup
    else:
        assert gate["environment"] == {"name": "production", "action": "prepare"}
        assert gate["rules"][0]["when"] == "manual"
        assert gate["allow_failure"] is False  # later stages wait for it
        assert gate["timeout"] == "125m"
    assert jobs["promote"]["environment"] == "production"
    assert jobs["deploy-staging"]["environment"] == "staging"
    assert "environment" not in jobs["train"]


def test_stage_env_and_timeouts_reach_the_jobs(synthetic: PipelineSpec) -> None:
    github = yaml.safe_load(export(synthetic, "github"))["jobs"]
    gitlab = jobs_of(yaml.safe_load(export(synthetic, "gitlab")), "gitlab")
    assert github["data"]["env"] == {"SEED": "7", "PATTERN": "a$b"}
    assert gitlab["data"]["variables"] == {
        "SEED": "7", "PATTERN": {"value": "a$b", "expand": False}
    }  # fmt: skip
    assert github["test"]["timeout-minutes"] == 15  # 10m, plus 5 for the job's setup
    assert github["promote"]["timeout-minutes"] == 35
    assert gitlab["test"]["timeout"] == "15m"
    assert "timeout-minutes" not in github["train"] and "timeout" not in gitlab["train"]


def test_declared_outputs_travel_to_later_jobs(synthetic: PipelineSpec) -> None:
    github = yaml.safe_load(export(synthetic, "github", workdir="ml/fraud"))["jobs"]
    upload = [s for s in github["data"]["steps"] if s.get("uses") == "actions/upload-artifact@v4"]
    paths = upload[0]["with"]["path"].splitlines()
    assert paths == ["ml/fraud/shipway.yaml", "ml/fraud/data/*.parquet"]
    fetch = [s for s in github["train"]["steps"] if s.get("uses", "").startswith("actions/down")]
    assert fetch[0]["with"]["path"] == "ml/fraud"
    steps = [s.get("uses") or s["run"] for s in github["train"]["steps"]]
    assert steps.index(fetch[0]["uses"]) < steps.index(commands(github["train"])[-1])
    gitlab = jobs_of(yaml.safe_load(export(synthetic, "gitlab", workdir="ml/fraud")), "gitlab")
    assert gitlab["data"]["artifacts"] == {"paths": ["ml/fraud/data/*.parquet"]}


def test_push_branches_come_from_the_stages_when_every_stage_has_some(tmp_path: Path) -> None:
    spec = parse_spec(
        "pipeline:\n  model: m\n  stages:\n"
        "    - {name: a, run: 'true', when: {branch: [main]}}\n"
        "    - {name: b, run: 'true', when: {branch: ['release/*']}}\n",
        tmp_path / "shipway.yaml",
    )
    doc = yaml.safe_load(export(spec, "github"))
    # fnmatch's * crosses /, GitHub's filter needs ** for that.
    assert doc["on"]["push"] == {"branches": ["main", "release/**"]}


def test_unknown_targets_and_outside_folders_are_refused(synthetic: PipelineSpec) -> None:
    with pytest.raises(InvalidInputError, match="github, gitlab"):
        target_of("jenkins")
    with pytest.raises(InvalidInputError, match="inside the repository"):
        export(synthetic, "github", workdir="../elsewhere")


def test_an_existing_different_file_is_kept_without_force(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "workflow.yml"
    assert write_export("one\n", path) is True
    assert write_export("one\n", path) is False  # unchanged: nothing to do, no error
    with pytest.raises(ConflictError, match="--force"):
        write_export("two\n", path)
    assert path.read_text() == "one\n"
    assert write_export("two\n", path, force=True) is True
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["workflow.yml"]


# -- the command ---------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHIPWAY, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path, shipway_home: Path) -> Path:
    """A git repository with the example's shipway.yaml in ml/credit."""
    root = tmp_path / "repo"
    (root / "ml" / "credit").mkdir(parents=True)
    shutil.copy(EXAMPLE / "shipway.yaml", root / "ml" / "credit" / "shipway.yaml")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_cli_writes_the_default_path_and_keeps_a_changed_file(repo: Path, tmp_path: Path) -> None:
    project = repo / "ml" / "credit"
    result = cli("pipeline", "export", "github", "--dir", str(project), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = repo / ".github" / "workflows" / "shipway.yml"
    doc = yaml.safe_load(written.read_text())
    assert doc["defaults"]["run"]["working-directory"] == "ml/credit"
    assert schema_check(written.read_text(), "github", tmp_path).returncode == 0

    again = cli("pipeline", "export", "github", cwd=project)
    assert again.returncode == 0 and "up to date" in again.stdout

    pinned = "pip install 'shipway[pipeline]==1.0'"
    refused = cli("pipeline", "export", "github", "--install", pinned, cwd=project)
    assert refused.returncode == 3
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert pinned not in written.read_text()

    forced = cli("pipeline", "export", "github", "--install", pinned, "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert pinned in commands(yaml.safe_load(written.read_text())["jobs"]["test"])

    gitlab = cli("pipeline", "export", "gitlab", cwd=project)
    assert gitlab.returncode == 0, gitlab.stderr
    assert (repo / ".gitlab-ci.yml").is_file()


def test_cli_prints_with_output_dash_and_names_the_targets(repo: Path) -> None:
    project = repo / "ml" / "credit"
    printed = cli("pipeline", "export", "gitlab", "--output", "-", cwd=project)
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(printed.stdout)["stages"][0] == "test"
    assert not (repo / ".gitlab-ci.yml").exists()

    unknown = cli("pipeline", "export", "jenkins", cwd=project)
    assert unknown.returncode == 2
    assert "github, gitlab" in unknown.stderr and "Traceback" not in unknown.stderr


def test_cli_outside_git_writes_to_the_current_folder(tmp_path: Path, shipway_home: Path) -> None:
    shutil.copy(EXAMPLE / "shipway.yaml", tmp_path / "shipway.yaml")
    result = cli("pipeline", "export", "gitlab", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
    assert not doc["default"]["before_script"][0].startswith("cd ")  # jobs run at the root
    elsewhere = cli("pipeline", "export", "gitlab", "--output", "ci.yml", cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (tmp_path / "ci.yml").read_text() == (tmp_path / ".gitlab-ci.yml").read_text()
