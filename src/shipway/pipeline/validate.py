"""The `validate` stage: the gate between training and everything that builds or ships.

Every configured check runs (so one report shows all that is wrong), each with its value and
the bound it was held to: metric thresholds on held-out data, the held-out inputs against the
registered signature (by the model server's own validator, so what passes here is what the
server will accept), fairness bounds, and the candidate against the current champion on the
very same rows.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pandas as pd

from shipway.client import Client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.pipeline.evaluate import Evaluation, evaluate, held_out
from shipway.pipeline.spec import Threshold, ValidateOptions
from shipway.records import ModelVersionInfo
from shipway.registry.registry import get_model_version
from shipway.types import Signature

__all__ = ["LOWER_IS_BETTER", "Check", "validate"]

LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | str | None
    bound: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate(
    uri: str,
    options: ValidateOptions,
    directory: Path,
    client: Client,
    *,
    data: tuple[pd.DataFrame, str] | None = None,
) -> tuple[list[Check], Evaluation | None]:
    """All checks of ``options`` for the version ``uri`` names, and its evaluation. ``data``
    (a frame and its description) is the held-out data when the caller has read it already."""
    version = get_model_version(uri, client=client)
    frame, described = data or held_out(version, options.dataset, directory, client)
    checks: list[Check] = []
    if options.schema_check:
        checks.append(_schema(version, frame))
        if not checks[-1].passed:
            return checks, None  # predictions on rows the server would refuse mean nothing
    sensitive = options.fairness.sensitive if options.fairness else None
    result = evaluate(version.uri, frame, label=options.label, sensitive=sensitive, client=client)
    checks += [_threshold(name, bound, result) for name, bound in options.thresholds.items()]
    if options.fairness is not None:
        checks += _fairness(options, result)
    if options.champion is not None:
        checks.append(_champion(version.uri, options, frame, result, client))
    return [*checks, _note(f"held-out data: {described}, {len(frame)} rows")], result


def _note(text: str) -> Check:
    return Check("data", True, None, None, text)


def _schema(version: ModelVersionInfo, frame: pd.DataFrame) -> Check:
    from shipway.serving.validation import Validator

    uri = version.uri
    signature = Signature.from_dict(version.signature) if version.signature else None
    if signature is None:
        return Check("schema", False, None, "a signature", f"{uri} has no signature to check.")
    missing = [c.name for c in signature.inputs if c.name not in frame.columns]
    if missing:
        return Check(
            "schema",
            False,
            "missing columns",
            "the signature's inputs",
            f"the held-out data lacks {', '.join(missing)}",
        )
    columns = {
        c.name: [None if _missing(v) else v for v in frame[c.name].tolist()]
        for c in signature.inputs
    }
    try:
        Validator(signature).check(columns)
    except InvalidInputError as exc:
        return Check("schema", False, "mismatch", "the signature's inputs", exc.message)
    return Check(
        "schema", True, "ok", "the signature's inputs", f"{len(frame)} rows match the signature"
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _threshold(name: str, bound: Threshold, result: Evaluation) -> Check:
    value = result.metrics.get(name)
    if value is None:
        known = ", ".join(sorted(result.metrics)) or "none"
        return Check(name, False, None, str(bound), f"{name} could not be measured (have: {known})")
    passed = bound.passes(value)
    verdict = "meets" if passed else "is not"
    return Check(name, passed, value, str(bound), f"{name} = {value:.4f} {verdict} {bound}")


def _fairness(options: ValidateOptions, result: Evaluation) -> list[Check]:
    gate, report = options.fairness, result.fairness
    assert gate is not None and report is not None
    wanted = [
        ("disparate_impact", report.demographic_parity_ratio, gate.min_disparate_impact, ">="),
        (
            "demographic_parity_difference",
            report.demographic_parity_difference,
            gate.max_demographic_parity_difference,
            "<=",
        ),
        (
            "equalized_odds_difference",
            report.equalized_odds_difference,
            gate.max_equalized_odds_difference,
            "<=",
        ),
    ]
    checks = []
    for name, value, limit, op in wanted:
        if limit is None:
            continue
        bound = Threshold(op, limit)
        label = f"fairness.{name}"
        if value is None:
            checks.append(Check(label, False, None, str(bound), f"{name} is undefined here"))
            continue
        passed = bound.passes(value)
        verdict = "meets" if passed else "is not"
        detail = f"{name} by {gate.sensitive} = {value:.4f} {verdict} {bound}"
        checks.append(Check(label, passed, value, str(bound), detail))
    return checks


def _champion(
    uri: str, options: ValidateOptions, frame: pd.DataFrame, result: Evaluation, client: Client
) -> Check:
    gate = options.champion
    assert gate is not None
    candidate = get_model_version(uri, client=client)
    name = f"champion.{gate.metric}"
    try:
        champion = get_model_version(f"models:/{candidate.name}@{gate.alias}", client=client)
    except NotFoundError:
        return Check(name, True, None, None, f"no {gate.alias} yet: nothing to compare with")
    if champion.version == candidate.version:
        return Check(name, True, None, None, f"{uri} is the {gate.alias} itself")
    theirs = evaluate(champion.uri, frame, label=options.label, client=client)
    mine, other = result.metrics.get(gate.metric), theirs.metrics.get(gate.metric)
    if mine is None or other is None:
        return Check(name, False, None, None, f"{gate.metric} could not be measured on both")
    delta = (other - mine) if gate.metric in LOWER_IS_BETTER else (mine - other)
    bound = Threshold(">=", gate.min_delta)
    passed = bound.passes(delta)
    detail = (
        f"{gate.metric} {mine:.4f} against the {gate.alias}'s (v{champion.version}) "
        f"{other:.4f} on the same rows: improvement {delta:+.4f} "
        f"{'meets' if passed else 'is not'} {bound}"
    )
    return Check(name, passed, delta, str(bound), detail)
