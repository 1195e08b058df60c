"""`shipway build MODEL_URI` and `shipway run-image IMAGE`."""

from __future__ import annotations

from pathlib import Path

import typer

from shipway.cli._output import console

ENGINE = typer.Option(None, "--engine", help="docker, podman or buildah (default: found).")


def build(
    uri: str = typer.Argument(..., help="The model version: models:/NAME/VERSION or @ALIAS."),
    engine: str | None = ENGINE,
    base_image: str = typer.Option(
        "localhost/python-base:3.11",
        help="An image with Python 3.11; the default is made locally with debootstrap.",
    ),
    tag: str | None = typer.Option(
        None, help="Image tag (default NAME:vVERSION-COMMIT; training: NAME:train-vVERSION-COMMIT)."
    ),
    push: str | None = typer.Option(None, help="Push to this registry, e.g. HOST:PORT/NAME."),
    kind: str = typer.Option(
        "inference",
        help="inference (serves the model) or training (the project's code at the run's commit; "
        "runs its training command, tracked).",
    ),
    train_command: str | None = typer.Option(
        None,
        "--train-command",
        help="Training images: the command to run from the project root "
        "(default: the run's recorded command, e.g. 'python train.py --seed 7').",
    ),
    port: int = typer.Option(8080, help="The port the server listens on in the image."),
    context_only: Path | None = typer.Option(
        None, "--context-only", help="Only write the build context into this directory."
    ),
    insecure: bool = typer.Option(False, help="Push over plain HTTP to a non-loopback registry."),
) -> None:
    """Build a container image serving a model version (hermetic: wheels resolved on the host).

    With --kind training, the image instead runs the project's training command on the code
    of the model's run; give it SHIPWAY_HOME (a mounted volume) or SHIPWAY_DATABASE_URL and
    SHIPWAY_ARTIFACT_URL at run time to track its runs there.
    """
    from shipway.packaging.engines import EngineConfig, find_engine

    if context_only is not None:
        from shipway.packaging.context import prepare_context

        ctx = prepare_context(uri, context_only, base_image=base_image, tag=tag, kind=kind,
                              port=port, train_command=train_command)  # fmt: skip
        console.print(f"Build context for [bold]{ctx.tag}[/bold] written to {ctx.directory}.")
        return
    from shipway.packaging.build import build_image, push_built, push_model_beside

    eng = find_engine(EngineConfig.load(name=engine))
    console.print(f"Building {uri} with {eng.name} ...")
    result = build_image(uri, eng, base_image=base_image, tag=tag, kind=kind, port=port,
                         train_command=train_command)  # fmt: skip
    img = result.image
    console.print(
        f"Built [bold]{img.tag}[/bold] (image {img.image_id[:12]}, "
        f"{img.size_bytes / 1e6:.0f} MB, from {img.base_image}) in {result.seconds:.1f} s."
    )
    if push:
        pushed = push_built(result.context.uri, eng, img, push, insecure=insecure)
        console.print(f"Pushed [bold]{pushed.pushed_ref}[/bold].")
        if pushed.sbom_pushed_digest:
            console.print(f"Pushed its SBOM beside it ({pushed.sbom_pushed_digest}).")
        if pushed.pushed_ref and kind == "inference":
            model = push_model_beside(result.context.uri, pushed.pushed_ref, insecure=insecure)
            console.print(f"Pushed the model beside it ({model}).")


def run_image(
    image: str = typer.Argument(..., help="The image to run, e.g. credit:v3-1a2b3c4."),
    engine: str | None = ENGINE,
    port: int = typer.Option(8080, help="Host port to publish the server on (loopback)."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for readiness."),
    name: str | None = typer.Option(None, help="Name the container (default: the engine's)."),
) -> None:
    """Run an image built by `shipway build`, wait until it is ready, print its URL."""
    from shipway.addresses import check_listen_address
    from shipway.packaging.engines import EngineConfig, find_engine
    from shipway.packaging.local import run_image as run

    check_listen_address("127.0.0.1", port)  # published on loopback
    eng = find_engine(EngineConfig.load(name=engine))
    container, url, seconds = run(eng, image, port=port, name=name, timeout=timeout)
    console.print(f"Ready in {seconds:.1f} s at [bold]{url}[/bold] (container {container[:12]}).")
    console.print(f"Stop it with: {eng.name} rm -f {container[:12]}")
