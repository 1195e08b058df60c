"""`shipway users create-admin|create|list|set-role|disable`, `shipway tokens create|list|revoke`.

Locally these act on the store directly (whoever can write it owns it); on the team server the
same changes need an admin's token.
"""

from __future__ import annotations

import re
from datetime import timedelta

import typer

from shipway.cli._output import JSON_OPTION, console, err_console, print_json, table

users = typer.Typer(
    help="Users and their roles (viewer < developer < approver < admin).", no_args_is_help=True
)
tokens = typer.Typer(
    help="API tokens for the team server: shown once, stored only as hashes.", no_args_is_help=True
)

USER = typer.Argument(..., help="The user name: letters, digits, '.', '-', '_' or '@'.")
ROLE = "viewer, developer, approver or admin"


def _show_token(token: str, user: str, as_json: bool, extra: dict[str, object]) -> None:
    if as_json:
        print_json(extra | {"token": token})
        return
    err_console.print(
        f"[bold yellow]API token for {user}[/bold yellow], shown only now: it will not be shown "
        "again. Keep it somewhere safe.",
        highlight=False,
    )
    typer.echo(token)  # alone on stdout, so `TOKEN=$(shipway tokens create ...)` works


@users.command("create-admin")
def create_admin(name: str = USER, as_json: bool = JSON_OPTION) -> None:
    """Create the first admin and its token (refused once an admin exists)."""
    from shipway.governance.identity import create_admin as create

    user, token = create(name)
    _show_token(token, user.name, as_json, {"user": user.to_dict()})


@users.command("create")
def create(
    name: str = USER,
    role: str = typer.Option("viewer", "--role", "-r", help=f"The role: {ROLE}."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a user; then give them a token with `shipway tokens create NAME`."""
    from shipway.governance.identity import check_role, create_user

    user = create_user(name, check_role(role))
    if as_json:
        print_json(user.to_dict())
        return
    console.print(f"Created user [bold]{user.name}[/bold] ({user.role}).")


@users.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """List users and their roles."""
    from shipway.governance.identity import list_users

    found = list_users()
    if as_json:
        print_json([u.to_dict() for u in found])
        return
    table(
        "Users",
        ["user", "role", "status", "created", "by"],
        [
            (
                u.name,
                u.role,
                "[dim]disabled[/dim]" if u.disabled else "[green]active[/green]",
                u.created_at,
                u.created_by,
            )
            for u in found
        ],
    )


@users.command("set-role")
def set_role(
    name: str = USER,
    role: str = typer.Argument(..., help=f"The new role: {ROLE}."),
) -> None:
    """Change a user's role (the last active admin cannot be demoted)."""
    from shipway.governance.identity import check_role
    from shipway.governance.identity import set_role as change

    user = change(name, check_role(role))
    console.print(f"[bold]{user.name}[/bold] is now {user.role}.")


@users.command("disable")
def disable(name: str = USER) -> None:
    """Disable a user: every token of theirs stops working at once."""
    from shipway.governance.identity import disable_user

    user = disable_user(name)
    console.print(f"Disabled [bold]{user.name}[/bold]; their tokens no longer work.")


@tokens.command("create")
def create_token(
    user: str = USER,
    name: str = typer.Option("default", "--name", "-n", help="What the token is for."),
    expires_days: int | None = typer.Option(
        None, "--expires-days", min=1, help="Days until it expires (default 90)."
    ),
    no_expiry: bool = typer.Option(False, "--no-expiry", help="A token that never expires."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an API token for USER; it is printed once and only its hash is kept."""
    from shipway.errors import InvalidInputError
    from shipway.governance.identity import create_token as create

    if no_expiry and expires_days is not None:
        raise InvalidInputError("Give --expires-days or --no-expiry, not both.")
    days = 90 if expires_days is None else expires_days
    info, token = create(user, name=name, expires_in=None if no_expiry else timedelta(days=days))
    _show_token(token, user, as_json, info.to_dict())


@tokens.command("list")
def list_tokens(
    user: str | None = typer.Argument(None, help="Only this user's tokens."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List tokens: ids, owners, names and dates (never secrets or hashes)."""
    from shipway.governance.identity import list_tokens as find

    found = find(user)
    if as_json:
        print_json([t.to_dict() for t in found])
        return
    colours = {"active": "green", "expired": "yellow", "revoked": "dim"}
    table(
        f"Tokens of {user}" if user else "Tokens",
        ["id", "user", "name", "status", "created", "expires", "last used"],
        [
            (
                t.id,
                t.user,
                t.name,
                f"[{colours[t.status]}]{t.status}[/{colours[t.status]}]",
                t.created_at,
                t.expires_at or "never",
                t.last_used_at,
            )
            for t in found
        ],
        no_wrap=["id"],
    )


@tokens.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="The token's id, as `tokens list` shows."),
) -> None:
    """Revoke a token: it stops working at once."""
    from shipway.governance.identity import revoke_token

    revoke_token(token_id)
    # Echo the id only: a whole token pasted here by mistake is not printed back.
    shown = f" {token_id}" if re.fullmatch(r"[0-9a-f]{8}", token_id) else ""
    console.print(f"Revoked token{shown}; it no longer works.")
