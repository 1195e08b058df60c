"""The pipeline spec: the `pipeline:` section of `shipway.yaml`, validated on load.

An ordered list of stages, each a built-in (`uses: validate`) with its options under `with:`,
or a shell command (`run: ...`); each may name input files that must exist first, output
files recorded after it, and conditions (`when:`) under which it runs. A mistake is reported
with the file, the line and the field, so the user never has to guess which stage is wrong.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shipway.errors import InvalidInputError, NotFoundError
from shipway.pipeline.yamlfile import (
    field_error,
    first_error,
    message,
    read_yaml,
    spec_file,
    validation_error,
)

__all__ = [
    "BUILTINS",
    "PipelineSpec",
    "Stage",
    "Threshold",
    "load_spec",
    "parse_spec",
]

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- thresholds ---------------------------------------------------------------------------------

_OPERATORS = {">=": "at least", ">": "above", "<=": "at most", "<": "below"}
_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Threshold:
    """A bound on one number: ``">= 0.75"`` in YAML (a bare number means at least)."""

    operator: str
    bound: float

    @classmethod
    def parse(cls, value: Any) -> Threshold:
        if isinstance(value, bool):
            raise ValueError(f"expected a bound like '>= 0.75', got {value!r}")
        if isinstance(value, int | float):
            return cls(">=", float(value))
        match = _THRESHOLD.match(str(value))
        if not match:
            raise ValueError(f"expected a bound like '>= 0.75' or '<= 0.3', got {value!r}")
        return cls(match[1], float(match[2]))

    def passes(self, value: float) -> bool:
        return {
            ">=": value >= self.bound,
            ">": value > self.bound,
            "<=": value <= self.bound,
            "<": value < self.bound,
        }[self.operator]

    def __str__(self) -> str:
        return f"{self.operator} {self.bound:g}"

    def words(self) -> str:
        return f"{_OPERATORS[self.operator]} {self.bound:g}"


def _thresholds(value: Any) -> dict[str, Threshold]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of metric name to bound, e.g. {roc_auc: '>= 0.75'}")
    return {str(k): Threshold.parse(v) for k, v in value.items()}


# -- options of the built-in stages -------------------------------------------------------------


class TestOptions(_Strict):
    command: str = "python -m pytest -q"
    """The project's own test command."""


class LintOptions(_Strict):
    paths: list[str] = Field(default_factory=lambda: ["."])


class SecurityOptions(_Strict):
    paths: list[str] = Field(default_factory=lambda: ["."])
    """What bandit scans."""
    severity: Literal["low", "medium", "high"] = "medium"
    """The lowest bandit severity that fails the stage."""
    audit: bool = True
    """Run pip-audit on the locked environment."""
    requirements: str | None = None
    """A requirements/lock file for pip-audit; the current environment when absent."""
    ignore: list[str] = Field(default_factory=list)
    """Vulnerability ids (pip-audit) and test ids (bandit, e.g. B101) to accept."""
    osv_url: str | None = None
    """Query this OSV API (a mirror) instead of PyPI's vulnerability data."""


class TrainOptions(_Strict):
    command: str
    """The training entrypoint; it starts a tracked run and registers a version of the model."""


class FairnessGate(_Strict):
    sensitive: str
    """The column holding the group of each row; it need not be a model input."""
    min_disparate_impact: float | None = Field(None, gt=0, le=1)
    """Lowest selection rate over highest (the four-fifths rule is 0.8)."""
    max_demographic_parity_difference: float | None = Field(None, ge=0, le=1)
    max_equalized_odds_difference: float | None = Field(None, ge=0, le=1)


class ChampionGate(_Strict):
    alias: str = "champion"
    metric: str = "roc_auc"
    min_delta: float = 0.0
    """Candidate minus champion must be at least this (negative: a tolerated loss)."""


class ValidateOptions(_Strict):
    dataset: str = "evaluation"
    """A dataset role of the training run (`evaluation`), or a file (.parquet, .csv)."""
    label: str
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    schema_check: bool = Field(True, alias="schema")
    fairness: FairnessGate | None = None
    champion: ChampionGate | None = None

    _check_thresholds = field_validator("thresholds", mode="before")(_thresholds)


class BuildOptions(_Strict):
    engine: str | None = None
    base: str | None = None


class PushOptions(_Strict):
    registry: str
    """Where the image goes, e.g. `localhost:5000/shipway`."""
    insecure: bool = False
    """Push over plain HTTP to a registry that is not on loopback."""


class DeployOptions(_Strict):
    environment: str = "staging"
    target: Literal["local", "kubernetes"] = "local"
    runtime: Literal["process", "container"] = "process"
    replicas: int = Field(1, ge=1)
    port: int | None = Field(None, ge=1, le=65535)


class SmokeOptions(_Strict):
    environment: str = "staging"
    requests: int = Field(20, ge=1, le=10_000)
    max_error_rate: float = Field(0.0, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)


class GateOptions(_Strict):
    environment: str = "production"
    timeout: str = "24h"
    """How long a manual gate waits for an approver (e.g. 30m, 2h, 1d)."""


class PromoteOptions(_Strict):
    environment: str = "production"
    steps: str = "10,25,50,100"
    interval: str = "30s"
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)
    min_requests: int | None = Field(None, ge=1)
    """Canary requests an analysis needs to be conclusive (the rollout's default: 20)."""
    timeout: str = "2h"
    """How long to follow the canary; past it the stage fails and the rollout carries on."""
    prometheus_url: str | None = None
    """Kubernetes environments: the Prometheus HTTP API the canary analysis queries (default:
    the one the environment was rendered with)."""
    port: int | None = Field(None, ge=1, le=65535)
    """Only for the first release into an environment that runs nothing yet."""


BUILTINS: dict[str, type[_Strict]] = {
    "test": TestOptions,
    "lint": LintOptions,
    "security": SecurityOptions,
    "train": TrainOptions,
    "validate": ValidateOptions,
    "build": BuildOptions,
    "push": PushOptions,
    "deploy": DeployOptions,
    "smoke": SmokeOptions,
    "gate": GateOptions,
    "promote": PromoteOptions,
}


# -- stages and the pipeline --------------------------------------------------------------------


class When(_Strict):
    """Conditions; a stage whose conditions do not hold is skipped, not failed."""

    branch: list[str] = Field(default_factory=list)
    """Glob patterns of git branches the stage runs on (e.g. main, release/*)."""
    env: list[str] = Field(default_factory=list)
    """Environment variables that must be set and non-empty."""

    @field_validator("branch", "env", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def holds(self, branch: str | None, environ: Mapping[str, str]) -> str | None:
        """None when the stage runs; else why it is skipped."""
        if self.branch and not any(fnmatch.fnmatch(branch or "", p) for p in self.branch):
            return f"branch {branch or '(none)'} is not {', '.join(self.branch)}"
        missing = [v for v in self.env if not environ.get(v)]
        if missing:
            return f"{', '.join(missing)} not set"
        return None


class Stage(_Strict):
    name: str
    uses: str | None = None
    run: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, alias="with")
    inputs: list[str] = Field(default_factory=list)
    """Files (globs, relative to the project) that must exist before the stage starts."""
    outputs: list[str] = Field(default_factory=list)
    """Files (globs) the stage makes; stored content-addressed with the pipeline run."""
    when: When = Field(default_factory=When)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: str | None = None
    """Longest the stage may take (e.g. 10m); no limit when absent."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("use lower-case letters, digits, - and _, starting with a letter")
        return value

    @property
    def kind(self) -> str:
        return self.uses or "run"

    def parsed_options(self) -> BaseModel:
        """The built-in's options as their model (validated already by parse_spec)."""
        return BUILTINS[self.kind].model_validate(self.options)


class PipelineSpec(_Strict):
    model: str
    """The registered model the pipeline trains and ships."""
    stages: list[Stage] = Field(min_length=1)
    directory: Path = Field(default=Path("."), exclude=True)
    """Where shipway.yaml lives: stages run there."""

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise NotFoundError(
            f"No stage '{name}' in the pipeline.",
            f"Stages: {', '.join(s.name for s in self.stages)}.",
        )

    def select(
        self, *, start: str | None = None, stop: str | None = None, only: Sequence[str] = ()
    ) -> list[Stage]:
        """The stages `--from`, `--to` and `--only` choose, in pipeline order."""
        if only:
            if start or stop:
                raise InvalidInputError("--only goes alone, without --from or --to.")
            chosen = {self.stage(n).name for n in only}
            return [s for s in self.stages if s.name in chosen]
        names = [s.name for s in self.stages]
        first = names.index(self.stage(start).name) if start else 0
        last = names.index(self.stage(stop).name) if stop else len(names) - 1
        if first > last:
            raise InvalidInputError(f"--from {start} comes after --to {stop}.")
        return self.stages[first : last + 1]


# -- loading, with line numbers ------------------------------------------------------------------


def load_spec(directory: Path | None = None) -> PipelineSpec:
    """The pipeline of `shipway.yaml` in `directory` (the current one by default)."""
    path = spec_file(
        directory,
        "Write a starter with `shipway pipeline init`, or run from the project's folder.",
    )
    return parse_spec(path.read_text(), path)


def parse_spec(text: str, path: Path) -> PipelineSpec:
    root, data = read_yaml(text, path)
    if not isinstance(data, dict) or "pipeline" not in data:
        raise InvalidInputError(
            f"{path} has no 'pipeline:' section.",
            "Add one with `shipway pipeline init --force` (it keeps nothing else), "
            "or copy it from examples/credit/shipway.yaml.",
        )
    section = data["pipeline"]
    try:
        spec = PipelineSpec.model_validate(section)
        for i, stage in enumerate(spec.stages):
            _check_stage(stage, i)
        _check_unique(spec)
    except ValidationError as exc:
        loc = ("pipeline", *first_error(exc)["loc"])
        raise validation_error(path, root, "pipeline", exc, _hint(loc)) from None
    except _StageError as exc:
        loc = ("pipeline", "stages", *exc.loc)
        raise field_error(path, root, loc, exc.message, exc.hint) from None
    return spec.model_copy(update={"directory": path.parent})


class _StageError(Exception):
    def __init__(self, loc: tuple[str | int, ...], message: str, hint: str | None = None):
        self.loc, self.message, self.hint = loc, message, hint


def _check_stage(stage: Stage, index: int) -> None:
    if (stage.uses is None) == (stage.run is None):
        raise _StageError(
            (index,),
            f"stage '{stage.name}' needs exactly one of 'uses' (a built-in) or 'run' "
            "(a shell command)",
        )
    if stage.run is not None:
        if stage.options:
            raise _StageError((index, "with"), "'with' goes with 'uses', not with 'run'")
        return
    if stage.uses not in BUILTINS:
        raise _StageError(
            (index, "uses"),
            f"unknown built-in stage '{stage.uses}'",
            f"Built-ins: {', '.join(BUILTINS)}; or use 'run:' for a shell command.",
        )
    try:
        BUILTINS[stage.kind].model_validate(stage.options)
    except ValidationError as exc:
        error = first_error(exc)
        raise _StageError((index, "with", *error["loc"]), message(error)) from None
    if stage.timeout is not None:
        from shipway.durations import parse_duration

        try:
            parse_duration(stage.timeout, "timeout")
        except InvalidInputError as err:
            raise _StageError((index, "timeout"), err.message) from None


def _check_unique(spec: PipelineSpec) -> None:
    seen: set[str] = set()
    for i, stage in enumerate(spec.stages):
        if stage.name in seen:
            raise _StageError((i, "name"), f"another stage is already called '{stage.name}'")
        seen.add(stage.name)


def _hint(loc: Sequence[str | int]) -> str | None:
    if len(loc) >= 4 and loc[1] == "stages" and loc[3] == "with":
        return "Each built-in's options are listed in docs/pipeline.md."
    return None
