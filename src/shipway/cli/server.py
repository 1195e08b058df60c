"""`shipway server`: the team server."""

from __future__ import annotations

import typer

from shipway.cli._output import console, err_console


def server(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8800, help="Port to listen on."),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        help="Proxies whose X-Forwarded-For is believed (comma-separated IPs); by default the "
        "socket's address is the client's, as recorded in the audit log.",
    ),
) -> None:
    """Serve the team REST API (/api/v1, docs at /docs) over this store, behind API tokens."""
    from shipway.addresses import check_listen_address
    from shipway.client import get_client
    from shipway.governance.identity import list_users
    from shipway.server.serve import serve

    check_listen_address(host, port)
    client = get_client()
    if client.settings.tracking_uri:  # the server serves its own store, never another server
        from shipway.client import Client

        err_console.print(
            f"SHIPWAY_TRACKING_URI ({client.settings.tracking_uri}) is ignored here: the server "
            f"serves the store under {client.settings.home} (or SHIPWAY_DATABASE_URL).",
            highlight=False,
        )
        client = Client(client.settings.model_copy(update={"tracking_uri": None, "token": None}))
    if not any(u.role == "admin" and not u.disabled for u in list_users(client=client)):
        err_console.print(
            "[bold yellow]No admin exists yet.[/bold yellow] Every API route needs a token: "
            "create the first admin and its token on this machine with\n"
            "  shipway users create-admin NAME\n"
            "then give others theirs with `shipway users create` and `shipway tokens create`.",
            highlight=False,
        )
    console.print(
        f"Shipway team server on http://{host}:{port}: API at /api/v1, docs at /docs.",
        highlight=False,
    )
    serve(host=host, port=port, client=client, forwarded_allow_ips=forwarded_allow_ips)
