"""The `shipway` command. One module per noun; heavy imports happen inside commands."""

from __future__ import annotations

import sys

import typer

from shipway.cli import (
    approvals,
    audit,
    build,
    deploy,
    k8s,
    models,
    monitor,
    pipeline,
    retrain,
    runs,
    serve,
    server,
    users,
)


def create_app() -> typer.Typer:
    app = typer.Typer(
        name="shipway",
        help="Shipway: take a model from a notebook to a dependable production service.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.add_typer(runs.app, name="runs")
    app.add_typer(models.app, name="models")
    app.add_typer(audit.app, name="audit")
    app.add_typer(approvals.app, name="approvals")
    app.add_typer(monitor.app, name="monitor")
    app.add_typer(pipeline.app, name="pipeline")
    app.add_typer(deploy.deployments, name="deployments")
    app.add_typer(deploy.rollout, name="rollout")
    app.add_typer(k8s.app, name="k8s")
    app.add_typer(users.users, name="users")
    app.add_typer(users.tokens, name="tokens")
    app.command("serve")(serve.serve)
    app.command("server")(server.server)
    app.command("build")(build.build)
    app.command("run-image")(build.run_image)
    app.command("deploy")(deploy.deploy)
    app.command("lineage")(models.lineage)
    retrain.register(app)

    @app.command()
    def version() -> None:
        """Print Shipway's version."""
        from shipway import __version__

        typer.echo(__version__)

    return app


def main() -> None:
    from shipway.cli._output import run_cli

    sys.exit(run_cli(create_app()))
