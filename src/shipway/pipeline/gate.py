"""The `gate` stage: the version goes on only with an approval for the environment.

The environment's approval policy (governance) decides how: `automatic` rules decide at once
with their evidence, `manual` waits here until an approver approves or rejects (or the gate's
timeout passes), `none` lets it through. An approval given earlier is reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shipway.client import Client
from shipway.durations import parse_duration
from shipway.errors import ApprovalRequiredError
from shipway.governance.approvals import (
    ApprovalInfo,
    check_approved,
    get_policy,
    list_approvals,
    request_approval,
)
from shipway.pipeline.spec import GateOptions
from shipway.pipeline.stages import Outcome
from shipway.registry.registry import get_model_version

__all__ = ["gate"]

POLL_S = 1.0


def gate(
    uri: str,
    o: GateOptions,
    client: Client,
    say: Callable[[str], None],
    deadline: float | None = None,
) -> Outcome:
    version = get_model_version(uri, client=client)
    policy = get_policy(o.environment, client=client)
    if policy.mode == "none":
        return Outcome(True, f"{o.environment} needs no approval (policy none)")
    try:
        done = check_approved(o.environment, version.name, version.version, client=client)
    except ApprovalRequiredError:
        done = None
    if done is not None:
        return Outcome(True, f"{version.uri} was already approved by {done.decided_by}")
    asked = [
        a
        for a in list_approvals(o.environment, model=version.name, client=client)
        if a.version == version.version
    ]  # newest first
    if asked and asked[0].status in ("pending", "rejected"):
        approval = asked[0]  # wait for the open request; a rejection stands until re-asked
    else:
        approval = request_approval(
            version.uri, o.environment, comment="requested by the pipeline's gate", client=client
        )
    if approval.status == "pending":
        say(
            f"waiting for an approver: `shipway approvals approve {approval.id}` "
            f"(or reject it); the gate waits {o.timeout}"
        )
        limit = time.monotonic() + parse_duration(o.timeout, "gate timeout").total_seconds()
        if deadline is not None:
            limit = min(limit, deadline)
        approval = _wait(approval, limit, client)
    return _outcome(approval, o)


def _wait(approval: ApprovalInfo, limit: float, client: Client) -> ApprovalInfo:
    while approval.status == "pending" and time.monotonic() < limit:
        time.sleep(POLL_S)
        found = [
            a
            for a in list_approvals(approval.environment, model=approval.model, client=client)
            if a.id == approval.id
        ]
        approval = found[0] if found else approval
    return approval


def _outcome(approval: ApprovalInfo, o: GateOptions) -> Outcome:
    by = approval.decided_by or "nobody"
    checks = [
        {"name": "approval", "passed": approval.status == "approved", "value": approval.status,
         "bound": "approved", "detail": f"approval {approval.id}: {approval.status} by {by}",
         "evidence": approval.evidence}
    ]  # fmt: skip
    if approval.status == "approved":
        return Outcome(True, f"{approval.uri} approved for {o.environment} by {by}", checks)
    if approval.status == "pending":
        return Outcome(
            False,
            f"no decision on approval {approval.id} within {o.timeout}; once it is approved, "
            "continue with `shipway pipeline run --from <this stage>`",
            checks,
        )
    why = f": {approval.decision_comment}" if approval.decision_comment else ""
    rules = approval.evidence.get("rules") or []
    failed = [r.get("detail") for r in rules if not r.get("passed")]
    if failed:
        why = f": {failed[0]}"
    verdict = f"{approval.uri} {approval.status} for {o.environment} by {by}{why}"
    return Outcome(False, verdict, checks)
