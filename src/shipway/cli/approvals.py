"""`shipway approvals request|list|approve|reject` and `shipway approvals policy set|list`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from shipway.cli._output import JSON_OPTION, console, fmt, print_json, table

if TYPE_CHECKING:
    from shipway.governance.approvals import ApprovalInfo

app = typer.Typer(
    help="Approvals before a model version goes to an environment (four eyes).",
    no_args_is_help=True,
)
policy = typer.Typer(help="What each environment requires.", no_args_is_help=True)
app.add_typer(policy, name="policy")

STATUS_STYLE = {"pending": "yellow", "approved": "green", "rejected": "red", "expired": "dim"}
ID = typer.Argument(..., help="The approval's id (see `shipway approvals list`).")
COMMENT = typer.Option(None, "--comment", "-m", help="Why: kept with the decision.")


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _show(a: ApprovalInfo) -> None:
    """One request and its decision, with the evidence of an automatic one."""
    console.print(
        f"Approval [bold]{a.id}[/bold]: {a.uri} → [bold]{a.environment}[/bold]  "
        f"{_status(a.status)}",
        highlight=False,
    )
    console.print(f"  requested by {a.requested_by} at {fmt(a.requested_at)}", highlight=False)
    if a.decided_by:
        console.print(f"  decided by {a.decided_by} at {fmt(a.decided_at)}", highlight=False)
    if a.policy:
        console.print(f"  policy: {a.policy}", highlight=False)
    for e in a.evidence.get("rules", []):
        mark = "[green]✓[/]" if e["passed"] else "[red]✗[/]"
        console.print(f"  {mark} {e['detail']}", highlight=False)
    if a.expires_at and a.status in ("pending", "approved"):
        console.print(f"  valid until {fmt(a.expires_at)} UTC", highlight=False)


@app.command()
def request(
    uri: str = typer.Argument(..., help="models:/NAME/VERSION, or an alias (pinned now)."),
    env: str = typer.Option(..., "--env", "-e", help="The environment, e.g. production."),
    comment: str | None = COMMENT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask for a model version to go to an environment."""
    from shipway.governance.approvals import request_approval

    a = request_approval(uri, env, comment=comment)
    if as_json:
        print_json(a.to_dict())
        return
    _show(a)
    if a.status == "pending":
        console.print(
            f"Another person approves it: [bold]shipway approvals approve {a.id}[/bold]",
            highlight=False,
        )


@app.command("list")
def list_(
    env: str | None = typer.Option(None, "--env", "-e", help="Only this environment."),
    status: str | None = typer.Option(
        None, help="Only pending, approved, rejected or expired requests."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List approval requests, newest first."""
    from shipway.governance.approvals import list_approvals

    found = list_approvals(env, status=status)
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    table(
        "Approvals",
        ["id", "version", "env", "status", "by", "until (UTC)", "comment"],
        [
            (
                a.id,
                f"{a.model}/{a.version}",
                a.environment,
                _status(a.status),
                a.requested_by + (f" → {a.decided_by}" if a.decided_by else ""),
                f"{a.expires_at:%b %d %H:%M}"
                if a.expires_at and a.status in ("pending", "approved")
                else None,
                a.decision_comment or a.comment,
            )
            for a in found
        ],
        no_wrap=["id", "version", "env", "status", "until (UTC)"],
        compact=True,  # the comment gets the room borders would take
    )


def _decide(verb: str, approval_id: str, comment: str | None, as_json: bool) -> None:
    from shipway.governance import approvals

    a = getattr(approvals, verb)(approval_id, comment=comment)
    if as_json:
        print_json(a.to_dict())
        return
    _show(a)


@app.command()
def approve(
    approval_id: str = ID, comment: str | None = COMMENT, as_json: bool = JSON_OPTION
) -> None:
    """Approve a pending request (not your own)."""
    _decide("approve", approval_id, comment, as_json)


@app.command()
def reject(
    approval_id: str = ID, comment: str | None = COMMENT, as_json: bool = JSON_OPTION
) -> None:
    """Reject a pending request (not your own)."""
    _decide("reject", approval_id, comment, as_json)


def _rule(text: str) -> Any:
    from shipway.errors import InvalidInputError

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--rule {text!r} is not JSON ({exc.msg}).",
            'Quote it whole, e.g. --rule \'{"monitoring": "no_critical"}\'.',
        ) from None


@policy.command("set")
def policy_set(
    env: str = typer.Argument(..., help="The environment, e.g. production."),
    mode: str = typer.Option(..., help="manual, automatic or none."),
    rule: list[str] = typer.Option(
        [],
        "--rule",
        help='An automatic rule as JSON, repeatable: {"metric": "roc_auc", "at_least": '
        '"champion"}, {"monitoring": "no_critical"}, {"fairness": "no_regression"}.',
    ),
    ttl_hours: float = typer.Option(72, help="How long an approval stays valid."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set what an environment requires before a version goes there."""
    from shipway.governance.approval_rules import describe
    from shipway.governance.approvals import set_policy

    p = set_policy(env, mode, [_rule(r) for r in rule], ttl_hours)
    if as_json:
        print_json(p.to_dict())
        return
    needs = {
        "manual": "an approval by another person than the requester",
        "automatic": "its rules to pass: " + "; ".join(describe(r) for r in p.rules),
        "none": "no approval",
    }[p.mode]
    console.print(
        f"[bold]{p.environment}[/bold] now needs {needs}"
        + (f" (valid {p.ttl_hours:g} h)." if p.mode != "none" else "."),
        highlight=False,
    )


@policy.command("list")
def policy_list(as_json: bool = JSON_OPTION) -> None:
    """List the environments' policies (unlisted environments need no approval)."""
    from shipway.governance.approval_rules import describe
    from shipway.governance.approvals import list_policies

    found = list_policies()
    if as_json:
        print_json([p.to_dict() for p in found])
        return
    table(
        "Approval policies",
        ["environment", "mode", "rules", "ttl (h)", "set by", "set at"],
        [
            (
                p.environment,
                p.mode,
                "\n".join(describe(r) for r in p.rules) or None,
                p.ttl_hours,
                p.updated_by or "[dim](default)[/dim]",
                p.updated_at,
            )
            for p in found
        ],
    )
