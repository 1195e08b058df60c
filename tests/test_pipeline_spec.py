"""The pipeline spec: what loads, what is refused (with the line and the field), stage choice,
conditions, thresholds, and the starter `shipway pipeline init` writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipway.cli import create_app
from shipway.errors import ConflictError, InvalidInputError, NotFoundError
from shipway.pipeline.spec import Threshold, ValidateOptions, load_spec, parse_spec
from shipway.pipeline.starter import write_starter


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipway.cli", *args], capture_output=True, text=True, timeout=120
    )


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "credit"

GOOD = """\
engine:
  podman: {build_args: --isolation chroot}
pipeline:
  model: credit
  stages:
    - name: unit
      run: pytest -q
      outputs: [reports/*.xml]
    - name: train
      uses: train
      with: {command: python train.py}
    - name: validate
      uses: validate
      with:
        label: default
        thresholds: {roc_auc: ">= 0.75", log_loss: "< 0.5", f1: 0.6}
    - name: ship
      uses: promote
      when: {branch: [main, release/*], env: DEPLOY_TOKEN}
      timeout: 20m
"""


def refusal(text: str) -> str:
    with pytest.raises(InvalidInputError) as info:
        parse_spec(text, Path("/p/shipway.yaml"))
    return info.value.message


def test_a_good_spec_loads_with_every_part() -> None:
    spec = parse_spec(GOOD, Path("/p/shipway.yaml"))
    assert spec.model == "credit"
    assert [s.name for s in spec.stages] == ["unit", "train", "validate", "ship"]
    assert [s.kind for s in spec.stages] == ["run", "train", "validate", "promote"]
    assert spec.directory == Path("/p")
    options = spec.stage("validate").parsed_options()
    assert isinstance(options, ValidateOptions)
    assert {k: str(v) for k, v in options.thresholds.items()} == {
        "roc_auc": ">= 0.75",
        "log_loss": "< 0.5",
        "f1": ">= 0.6",
    }
    assert options.dataset == "evaluation" and options.schema_check is True
    ship = spec.stage("ship")
    assert ship.when.branch == ["main", "release/*"] and ship.when.env == ["DEPLOY_TOKEN"]


@pytest.mark.parametrize(
    ("change", "line", "field", "says"),
    [
        (("      with: {command: python train.py}", "      with: {comand: x}"), 11,
         "pipeline.stages[1].with.comand", "unknown field"),
        (("        label: default\n", ""), 14, "pipeline.stages[2].with.label", "required"),
        (('roc_auc: ">= 0.75"', 'roc_auc: "about 0.75"'), 16,
         "pipeline.stages[2].with.thresholds", "expected a bound like"),
        (("      uses: promote", "      uses: promot"), 18, "pipeline.stages[3].uses",
         "unknown built-in stage 'promot'"),
        (("      timeout: 20m", "      timeout: soon"), 20, "pipeline.stages[3].timeout",
         "Cannot read the timeout 'soon'"),
        (("    - name: ship", "    - name: Ship It"), 17, "pipeline.stages[3].name",
         "lower-case letters"),
        (("    - name: ship", "    - name: train"), 17, "pipeline.stages[3].name",
         "already called 'train'"),
        (("      run: pytest -q\n", ""), 6, "pipeline.stages[0]", "exactly one of 'uses'"),
        (("  model: credit\n", ""), 3, "pipeline.model", "required"),
    ],
)  # fmt: skip
def test_a_mistake_names_the_line_and_the_field(
    change: tuple[str, str], line: int, field: str, says: str
) -> None:
    old, new = change
    assert old in GOOD
    message = refusal(GOOD.replace(old, new, 1))
    assert message.startswith(f"/p/shipway.yaml, line {line}: {field}: "), message
    assert says in message


def test_malformed_yaml_and_a_missing_section_are_explained() -> None:
    assert "line 4: not valid YAML" in refusal("pipeline:\n  model: a\n  stages: [\n")
    assert "has no 'pipeline:' section" in refusal("engine: {}\n")


def test_thresholds_compare_as_written() -> None:
    assert Threshold.parse(">= 0.75").passes(0.75)
    assert not Threshold.parse("> 0.75").passes(0.75)
    assert Threshold.parse("<= 0.3").passes(0.2) and not Threshold.parse("< 0.3").passes(0.3)
    assert Threshold.parse(0.5) == Threshold(">=", 0.5)
    for bad in (True, "0.5 or so", "=> 1"):
        with pytest.raises(ValueError, match="expected a bound"):
            Threshold.parse(bad)


def test_from_to_and_only_choose_stages_in_order() -> None:
    spec = parse_spec(GOOD, Path("/p/shipway.yaml"))
    names = lambda stages: [s.name for s in stages]  # noqa: E731
    assert names(spec.select()) == ["unit", "train", "validate", "ship"]
    assert names(spec.select(start="train", stop="validate")) == ["train", "validate"]
    assert names(spec.select(only=["ship", "unit"])) == ["unit", "ship"]
    with pytest.raises(NotFoundError, match="No stage 'deploy'"):
        spec.select(start="deploy")
    with pytest.raises(InvalidInputError, match="comes after"):
        spec.select(start="ship", stop="train")
    with pytest.raises(InvalidInputError, match="--only goes alone"):
        spec.select(start="unit", only=["ship"])


def test_conditions_say_why_a_stage_is_skipped() -> None:
    ship = parse_spec(GOOD, Path("/p/shipway.yaml")).stage("ship")
    assert ship.when.holds("main", {"DEPLOY_TOKEN": "x"}) is None
    assert ship.when.holds("release/1.2", {"DEPLOY_TOKEN": "x"}) is None
    assert "branch feature/x is not main, release/*" in str(
        ship.when.holds("feature/x", {"DEPLOY_TOKEN": "x"})
    )
    assert ship.when.holds("main", {"DEPLOY_TOKEN": ""}) == "DEPLOY_TOKEN not set"


def test_the_example_project_carries_a_pipeline_that_loads() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.model == "credit"
    kinds = [s.kind for s in spec.stages]
    for kind in ("test", "lint", "security", "train", "validate", "deploy", "smoke", "gate"):
        assert kind in kinds
    assert kinds.index("validate") < kinds.index("deploy")


def test_init_writes_a_starter_that_loads_and_keeps_other_settings(tmp_path: Path) -> None:
    (tmp_path / "shipway.yaml").write_text("engine:\n  name: podman\n")
    result = CliRunner().invoke(
        create_app(), ["pipeline", "init", "--dir", str(tmp_path), "--model", "churn"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "shipway.yaml").read_text()
    assert text.startswith("engine:\n  name: podman\n")
    spec = load_spec(tmp_path)
    assert spec.model == "churn" and spec.stages[0].name == "test"
    with pytest.raises(ConflictError, match="has a pipeline already"):
        write_starter(tmp_path)
    again = cli("pipeline", "init", "--dir", str(tmp_path))
    assert again.returncode == 3 and "--force" in again.stderr


def test_no_spec_file_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("pipeline", "run", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "No shipway.yaml in" in result.stderr and "shipway pipeline init" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_broken_spec_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "shipway.yaml").write_text(GOOD.replace("uses: promote", "uses: promot"))
    result = cli("pipeline", "run", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "line 18: pipeline.stages[3].uses: unknown built-in stage 'promot'" in result.stderr
    assert "Traceback" not in result.stderr
