"""Candidate against champion on the very same held-out rows: the evidence retraining decides by.

The rows are the candidate's own held-out set (the newest data), so the champion is judged on
the world as it is now. Three kinds of check, each with its value and its bound:

* **data quality**: the held-out rows pass the candidate's signature, by the model server's
  own validator (rows the server would refuse make every other number meaningless);
* **metric**: the candidate beats the champion on the policy's metric by the margin;
* **fairness**: the parity gaps by the sensitive column widen by no more than the bound.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from shipway.client import Client
from shipway.errors import NotFoundError
from shipway.pipeline.evaluate import Evaluation, evaluate, held_out
from shipway.pipeline.retrain_spec import RetrainSpec
from shipway.pipeline.validate import LOWER_IS_BETTER, Check, validate
from shipway.registry.registry import get_model_version

__all__ = ["FAIRNESS_GAPS", "Comparison", "compare"]

FAIRNESS_GAPS = ("demographic_parity_difference", "equalized_odds_difference")
"""Gaps between groups (0 is parity): a candidate may not widen them beyond the bound."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    candidate: Evaluation | None
    """None when the held-out rows failed the data-quality check."""
    champion: Evaluation | None
    """None when there is no champion yet."""
    checks: list[Check]
    held_out: str

    @property
    def better(self) -> bool:
        """Whether the policy lets the candidate ship without a person deciding."""
        return self.candidate is not None and all(c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        """Why not (empty when it is better)."""
        return [c.detail for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "held_out": self.held_out,
            "better": self.better,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "champion": self.champion.to_dict() if self.champion else None,
            "checks": [c.to_dict() for c in self.checks],
        }


def compare(uri: str, spec: RetrainSpec, client: Client) -> Comparison:
    """Evaluate the candidate ``uri`` and the champion on the candidate's held-out rows."""
    policy = spec.policy
    options = {"label": spec.label, "dataset": spec.dataset, "schema": True}
    if policy.sensitive:
        options["fairness"] = {"sensitive": policy.sensitive}
    from shipway.pipeline.spec import ValidateOptions

    candidate = get_model_version(uri, client=client)
    data = held_out(candidate, spec.dataset, Path(spec.directory), client)
    checks, mine = validate(uri, ValidateOptions.model_validate(options), spec.directory, client,
                            data=data)  # fmt: skip
    quality = [c for c in checks if c.name == "schema"]
    notes = [c.detail.removeprefix("held-out data: ") for c in checks if c.name == "data"]
    described = notes[0] if notes else spec.dataset
    if mine is None:
        return Comparison(None, None, quality, described)
    try:
        champion = get_model_version(f"models:/{candidate.name}@{spec.champion}", client=client)
    except NotFoundError:
        note = Check(policy.metric, True, None, None, f"no {spec.champion} yet: nothing to beat")
        return Comparison(mine, None, [*quality, note], described)
    theirs = evaluate(
        champion.uri, data[0], label=spec.label, sensitive=policy.sensitive, client=client
    )
    found = [*quality, _metric(spec, mine, theirs, champion.version)]
    if policy.sensitive:
        found += _fairness(spec, mine, theirs)
    return Comparison(mine, theirs, found, described)


def _metric(spec: RetrainSpec, mine: Evaluation, theirs: Evaluation, version: int) -> Check:
    metric, margin = spec.policy.metric, spec.policy.min_improvement
    a, b = mine.metrics.get(metric), theirs.metrics.get(metric)
    if a is None or b is None:
        known = ", ".join(sorted(mine.metrics)) or "none"
        return Check(metric, False, None, None, f"{metric} could not be measured (have: {known})")
    delta = (b - a) if metric in LOWER_IS_BETTER else (a - b)
    passed = delta >= margin
    detail = (
        f"{metric} {a:.4f} against the {spec.champion}'s (v{version}) {b:.4f}: "
        f"improvement {delta:+.4f} {'meets' if passed else 'is below'} the margin {margin:g}"
    )
    return Check(metric, passed, delta, f">= {margin:g}", detail)


def _fairness(spec: RetrainSpec, mine: Evaluation, theirs: Evaluation) -> list[Check]:
    bound = spec.policy.max_fairness_regression
    checks = []
    for gap in FAIRNESS_GAPS:
        a = getattr(mine.fairness, gap, None)
        b = getattr(theirs.fairness, gap, None)
        name = f"fairness.{gap}"
        if a is None or b is None:
            checks.append(Check(name, True, None, None, f"{gap} is undefined on these rows"))
            continue
        widened = a - b
        passed = widened <= bound
        detail = (
            f"{gap} by {spec.policy.sensitive} {a:.4f} against the {spec.champion}'s {b:.4f}: "
            f"{'widened' if widened > 0 else 'changed'} by {widened:+.4f}, "
            f"{'within' if passed else 'beyond'} the bound {bound:g}"
        )
        checks.append(Check(name, passed, widened, f"<= {bound:g}", detail))
    return checks
