"""The rules an automatic approval policy decides by, each returning its evidence.

A rule is a small JSON object, so it can be stored with the policy and typed on the command
line:

    {"metric": "roc_auc", "at_least": "champion"}   the candidate's run metric against the
                                                    champion's (or a number)
    {"monitoring": "no_critical"}                   the model's latest monitoring result has no
                                                    critical alert
    {"fairness": "no_regression"}                   the latest fairness report shows no
                                                    four-fifths violation, or a parity ratio
                                                    no lower than the report before it

Every rule fails closed: what it cannot measure (a missing metric, no champion, no
monitoring result) rejects, and the evidence says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from shipway.client import Client
from shipway.errors import InvalidInputError, NotFoundError
from shipway.records import ModelVersionInfo

__all__ = ["Rule", "check_rules", "describe", "evaluate"]

Rule = dict[str, Any]
Evidence = dict[str, Any]

EXAMPLES = (
    '{"metric": "roc_auc", "at_least": "champion"}, {"metric": "roc_auc", "at_least": 0.8}, '
    '{"monitoring": "no_critical"} or {"fairness": "no_regression"}'
)


def check_rules(rules: Sequence[Any]) -> list[Rule]:
    """The rules as plain dicts, or InvalidInputError naming the first malformed one."""
    checked = []
    for rule in rules:
        if not isinstance(rule, dict) or _kind(rule) is None:
            raise InvalidInputError(f"Unknown approval rule {rule!r}.", f"Use {EXAMPLES}.")
        checked.append(dict(rule))
    return checked


def _kind(rule: dict[str, Any]) -> str | None:
    keys = set(rule)
    if keys == {"metric", "at_least"} and isinstance(rule["metric"], str) and rule["metric"]:
        bound = rule["at_least"]
        number = isinstance(bound, int | float) and not isinstance(bound, bool)
        return "metric" if bound == "champion" or (number and math.isfinite(bound)) else None
    if keys == {"monitoring"} and rule["monitoring"] == "no_critical":
        return "monitoring"
    if keys == {"fairness"} and rule["fairness"] == "no_regression":
        return "fairness"
    return None


def describe(rule: Rule) -> str:
    """One rule in words: ``roc_auc at least the champion's``."""
    kind = _kind(rule)
    if kind == "metric":
        bound = rule["at_least"]
        return f"{rule['metric']} at least " + (
            "the champion's" if bound == "champion" else f"{bound:g}"
        )
    if kind == "monitoring":
        return "no critical monitoring alert"
    return "no fairness regression"


def evaluate(
    rules: Sequence[Rule], version: ModelVersionInfo, client: Client
) -> tuple[bool, list[Evidence]]:
    """Whether every rule passes for ``version``, and each rule's evidence (all are run)."""
    evidence = [_EVALUATORS[str(_kind(rule))](rule, version, client) for rule in rules]
    return all(e["passed"] for e in evidence), evidence


def _verdict(rule: Rule, passed: bool, detail: str, **measured: Any) -> Evidence:
    return {"rule": rule, "passed": passed, "detail": detail, **measured}


def _run_metric(version: ModelVersionInfo, name: str, client: Client) -> float | None:
    """The metric's last value in the version's run; None when absent or not a finite number."""
    if version.run_id is None:
        return None
    from shipway.tracking.run import get_run

    value = get_run(version.run_id, client=client).metrics.get(name)
    return value if value is not None and math.isfinite(value) else None


def _metric(rule: Rule, version: ModelVersionInfo, client: Client) -> Evidence:
    name, bound = rule["metric"], rule["at_least"]
    value = _run_metric(version, name, client)
    if value is None:
        return _verdict(rule, False, f"{version.uri} has no '{name}' metric in its run.")
    if bound != "champion":
        passed = value >= bound
        sign = ">=" if passed else "<"
        return _verdict(
            rule, passed, f"{name} {value:.6g} {sign} {bound:g}", value=value, threshold=bound
        )
    from shipway.registry.registry import get_model_version

    try:
        champion = get_model_version(f"models:/{version.name}@champion", client=client)
    except NotFoundError:
        return _verdict(
            rule,
            False,
            f"No version of '{version.name}' is the champion to compare with.",
            value=value,
        )
    threshold = _run_metric(champion, name, client)
    if threshold is None:
        return _verdict(
            rule,
            False,
            f"The champion ({champion.uri}) has no '{name}' metric in its run.",
            value=value,
            champion=champion.version,
        )
    passed = value >= threshold
    return _verdict(
        rule,
        passed,
        f"{name} {value:.6g} {'>=' if passed else '<'} {threshold:.6g} of the champion "
        f"(version {champion.version})",
        value=value,
        threshold=threshold,
        champion=champion.version,
    )


def _monitoring(rule: Rule, version: ModelVersionInfo, client: Client) -> Evidence:
    from shipway.monitoring.history import list_results

    latest = next(iter(list_results(version.name, limit=1, client=client)), None)
    if latest is None:
        return _verdict(
            rule,
            False,
            f"No monitoring result of '{version.name}' is stored: run `shipway monitor run` first.",
        )
    critical = [a for a in latest.alerts if a.severity == "critical"]
    seen = {
        "result": latest.id,
        "monitored_version": latest.version,
        "at": latest.created_at.isoformat(),
    }
    if critical:
        names = ", ".join(sorted({a.name for a in critical}))
        detail = (
            f"Monitoring result {latest.id[:12]} has {len(critical)} critical alert(s): {names}."
        )
        alerts = [a.message for a in critical]
        return _verdict(rule, False, detail, **seen, critical=alerts)
    return _verdict(
        rule, True, f"Monitoring result {latest.id[:12]} has no critical alert.", **seen
    )


def _fairness(rule: Rule, version: ModelVersionInfo, client: Client) -> Evidence:
    from shipway.monitoring.history import list_results

    # Monitoring runs without a sensitive column carry no fairness report: skip those.
    reports = [r for r in list_results(version.name, limit=50, client=client) if r.fairness]
    if not reports:
        return _verdict(
            rule,
            False,
            f"No monitoring result of '{version.name}' has a fairness report: run "
            "`shipway monitor run` with a sensitive column first.",
        )
    latest = reports[0]
    assert latest.fairness is not None
    ratio = latest.fairness.demographic_parity_ratio
    seen: dict[str, Any] = {"result": latest.id, "ratio": ratio}
    if not latest.fairness.four_fifths_violated:
        return _verdict(
            rule,
            True,
            f"Demographic parity ratio {_ratio(ratio)}: no four-fifths violation.",
            **seen,
        )
    previous = reports[1].fairness if len(reports) > 1 else None
    before = previous.demographic_parity_ratio if previous else None
    seen |= {"previous_result": reports[1].id if previous else None, "previous_ratio": before}
    if ratio is not None and before is not None and ratio >= before:
        return _verdict(
            rule,
            True,
            f"Demographic parity ratio {_ratio(ratio)} violates four-fifths but is no lower "
            f"than before ({_ratio(before)}).",
            **seen,
        )
    why = f"below {_ratio(before)} before" if before is not None else "with nothing to compare"
    return _verdict(
        rule,
        False,
        f"Demographic parity ratio {_ratio(ratio)} violates the four-fifths rule ({why}).",
        **seen,
    )


def _ratio(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


_EVALUATORS: dict[str, Callable[[Rule, ModelVersionInfo, Client], Evidence]] = {
    "metric": _metric,
    "monitoring": _monitoring,
    "fairness": _fairness,
}
