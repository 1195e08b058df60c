"""The retraining spec: the `retrain:` section of `shipway.yaml`, validated on load.

It names the newest training data, the held-out data both models are judged on, the policy
that decides whether a better candidate ships by itself, and what starts a retraining::

    retrain:
      data: data/*.parquet          # the newest matching file is the training data
      label: default
      policy: {metric: roc_auc, min_improvement: 0.005, sensitive: gender}
      triggers: {schedule: "0 3 * * *", data: "data/*.parquet", drift: true}

The training command is the pipeline's `train` stage (`retrain.command` overrides it); it gets
the data file as ``--data PATH`` appended, or wherever it writes the placeholder ``{data}``.
Mistakes are reported with the file, the line and the field, as for the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shipway.errors import InvalidInputError
from shipway.pipeline.yamlfile import read_yaml, spec_file, validation_error

__all__ = ["RetrainPolicy", "RetrainSpec", "Triggers", "load_retrain_spec", "parse_retrain_spec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrainPolicy(_Strict):
    """When a candidate goes to production without a person deciding."""

    metric: str = "roc_auc"
    """Compared on the same held-out rows; log_loss, mae and rmse count lower as better."""
    min_improvement: float = 0.005
    """Candidate minus champion on ``metric`` must be at least this."""
    max_fairness_regression: float = Field(0.02, ge=0, le=1)
    """How much the parity gaps by ``sensitive`` may widen."""
    sensitive: str | None = None
    """The column of each row's group; no fairness comparison without it."""
    environment: str = "production"
    steps: str = "10,50,100"
    """The canary's traffic steps (percent)."""
    interval: str = "30s"
    """How long each step is watched."""
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)
    prometheus_url: str | None = None
    """Kubernetes environments: the Prometheus HTTP API the canary analysis queries."""

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: str) -> str:
        from shipway.deploy.rollout import parse_steps

        try:
            parse_steps(value)
        except InvalidInputError as err:
            raise ValueError(err.message) from None
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        from shipway.durations import parse_duration

        try:
            parse_duration(value, "interval")
        except InvalidInputError as err:
            raise ValueError(err.message) from None
        return value


class Triggers(_Strict):
    """What starts a retraining under `shipway scheduler run`."""

    schedule: str | None = None
    """A cron expression (UTC), e.g. "0 3 * * *" for 03:00 every day."""
    data: str | None = None
    """A glob; a retraining starts when the content of the matching files changes."""
    drift: bool = False
    """Retrain when the model's newest monitoring result shows dataset drift."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(
                f"'{value}' is not a cron expression: use five fields, minute hour "
                "day-of-month month day-of-week, e.g. '0 3 * * *' (03:00 every day)"
            )
        return value


class RetrainSpec(_Strict):
    model: str
    """The registered model; the pipeline's model when not given."""
    data: str
    """A file or a glob of the training data; the newest matching file is used."""
    label: str
    dataset: str = "evaluation"
    """The held-out data: a dataset role of the candidate's training run, or a file."""
    command: str
    """The training command; the pipeline's `train` stage when not given."""
    champion: str = "champion"
    """The alias of the version in production that a candidate must beat."""
    policy: RetrainPolicy = Field(default_factory=RetrainPolicy)
    triggers: Triggers = Field(default_factory=Triggers)
    directory: Path = Field(default=Path("."), exclude=True)

    @property
    def data_pattern(self) -> str:
        """The files whose change the data trigger watches."""
        return self.triggers.data or self.data


def load_retrain_spec(directory: Path | None = None) -> RetrainSpec:
    """The `retrain:` section of `shipway.yaml` in ``directory`` (the current one by default)."""
    path = spec_file(directory, "Run from the project's folder, or give it with --dir.")
    return parse_retrain_spec(path.read_text(), path)


def parse_retrain_spec(text: str, path: Path) -> RetrainSpec:
    root, data = read_yaml(text, path)
    if not isinstance(data, dict) or not isinstance(data.get("retrain"), dict):
        raise InvalidInputError(
            f"{path} has no 'retrain:' section.",
            "Add one (docs/retraining.md), e.g. retrain: {data: data/*.parquet, label: default}.",
        )
    section: dict[str, Any] = dict(data["retrain"])
    pipeline = data.get("pipeline") if isinstance(data.get("pipeline"), dict) else {}
    filled = _defaults(section, pipeline or {})
    try:
        spec = RetrainSpec.model_validate({**filled, **section})
    except ValidationError as exc:
        raise validation_error(path, root, "retrain", exc, _hint(exc.errors()[0]["loc"])) from None
    return spec.model_copy(update={"directory": path.parent})


def _defaults(section: dict[str, Any], pipeline: dict[str, Any]) -> dict[str, Any]:
    """The model and the training command from the `pipeline:` section."""
    filled: dict[str, Any] = {}
    if "model" not in section and isinstance(pipeline.get("model"), str):
        filled["model"] = pipeline["model"]
    if "command" not in section:
        for stage in pipeline.get("stages") or []:
            options = stage.get("with") if isinstance(stage, dict) else None
            if stage.get("uses") == "train" and isinstance(options, dict) and "command" in options:
                filled["command"] = options["command"]
                break
    return filled


def _hint(loc: tuple[Any, ...]) -> str | None:
    if loc in (("model",), ("command",)):
        return (
            "Give it under retrain:, or add a pipeline with a `train` stage "
            "(`uses: train, with: {command: ...}`)."
        )
    return "The fields of retrain: are listed in docs/retraining.md."
