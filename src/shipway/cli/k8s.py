"""`shipway k8s render`: Kubernetes manifests (a kustomize base and overlays) for a version."""

from __future__ import annotations

from pathlib import Path

import typer

from shipway.cli._output import console

app = typer.Typer(help="Kubernetes: manifests for a model version.", no_args_is_help=True)

SERVE = "Server"
SCALE = "Scale and resources"
SECRETS = "Secrets"
GPU = "GPU pool"
TRAINING = "Training (--kind training)"
CANARY = "Canary release"


@app.command()
def render(
    uri: str = typer.Argument(..., help="The version: models:/NAME/VERSION or models:/NAME@ALIAS."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write (new or empty)."),
    env: list[str] = typer.Option(
        [],
        "--env",
        "-e",
        help="An environment to write an overlay for, besides staging and production (which are "
        "always written); repeat for more. 'prod' and 'prod-*' get production's profile, "
        "others staging's.",
    ),
    kind: str = typer.Option("inference", help="inference (serve) or training (Job, CronJob)."),
    image: str | None = typer.Option(
        None,
        help="Image by digest, REPO@sha256:...; default: the one `shipway build --push` recorded.",
    ),
    name: str | None = typer.Option(None, help="Name of the objects (default: from the model)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output directory."),
    # Scale and resources
    replicas: int = typer.Option(
        3, help="Production replicas (and autoscaling minimum).", rich_help_panel=SCALE
    ),
    max_replicas: int = typer.Option(
        10, help="Production autoscaling maximum.", rich_help_panel=SCALE
    ),
    hpa: bool = typer.Option(
        True, "--hpa/--no-hpa", help="Autoscale on CPU (and --hpa-metric).", rich_help_panel=SCALE
    ),
    cpu_utilization: int = typer.Option(
        70, help="Autoscaling target: CPU % of the request.", rich_help_panel=SCALE
    ),
    hpa_metric: list[str] = typer.Option(
        [],
        "--hpa-metric",
        rich_help_panel=SCALE,
        help="Also scale on a per-pod metric, METRIC=TARGET, e.g. shipway_requests_in_flight=4 "
        "(needs a metrics adapter such as prometheus-adapter).",
    ),
    max_surge: str = typer.Option(
        "25%", help="Rolling update: extra pods (count or %).", rich_help_panel=SCALE
    ),
    max_unavailable: str = typer.Option(
        "0", help="Rolling update: pods down (count or %).", rich_help_panel=SCALE
    ),
    cpu: str = typer.Option("500m", help="CPU request (staging asks half).", rich_help_panel=SCALE),
    cpu_limit: str = typer.Option("2", help="CPU limit.", rich_help_panel=SCALE),
    memory: str = typer.Option("1Gi", help="Memory request.", rich_help_panel=SCALE),
    memory_limit: str | None = typer.Option(
        None, help="Memory limit (default: the request).", rich_help_panel=SCALE
    ),
    # GPU
    gpu: int = typer.Option(
        0, help="NVIDIA GPUs per pod; schedules on the GPU pool.", rich_help_panel=GPU
    ),
    gpu_node_selector: list[str] = typer.Option(
        [],
        "--gpu-node-selector",
        rich_help_panel=GPU,
        help="KEY=VALUE node label of the GPU pool (repeat; default nvidia.com/gpu.present=true).",
    ),
    gpu_toleration: list[str] = typer.Option(
        [],
        "--gpu-toleration",
        rich_help_panel=GPU,
        help="KEY[=VALUE][:EFFECT]: a taint of the GPU pool to tolerate "
        "(default nvidia.com/gpu:NoSchedule).",
    ),
    # Server
    port: int = typer.Option(
        8080, help="The port the server listens on in the image.", rich_help_panel=SERVE
    ),
    workers: int = typer.Option(1, help="Server worker processes per pod.", rich_help_panel=SERVE),
    startup_seconds: int = typer.Option(
        300, help="Longest a model may take to load.", rich_help_panel=SERVE
    ),
    drain_seconds: int = typer.Option(
        30, help="On SIGTERM, wait this long for requests.", rich_help_panel=SERVE
    ),
    prestop_seconds: int = typer.Option(
        5, help="Sleep before SIGTERM, while endpoints update.", rich_help_panel=SERVE
    ),
    max_batch_size: int = typer.Option(
        64, min=1, help="Rows per predict call at most.", rich_help_panel=SERVE
    ),
    max_latency_ms: float = typer.Option(
        5.0, min=0, help="Longest a batch is held open.", rich_help_panel=SERVE
    ),
    max_queue_rows: int = typer.Option(
        4096, min=1, help="Queued rows per model before 503.", rich_help_panel=SERVE
    ),
    model_threads: int = typer.Option(
        1, min=1, help="OpenMP/BLAS threads per predict call.", rich_help_panel=SERVE
    ),
    log_sample: float = typer.Option(
        1.0, min=0, max=1, help="Share of predictions logged.", rich_help_panel=SERVE
    ),
    no_prediction_log: bool = typer.Option(False, "--no-prediction-log", rich_help_panel=SERVE),
    artifact_url: str | None = typer.Option(
        None,
        help="Shared artefact store for the prediction log, e.g. s3://bucket/shipway "
        "(credentials by --secret).",
        rich_help_panel=SERVE,
    ),
    # Secrets
    secret: list[str] = typer.Option(
        [],
        "--secret",
        help="An existing Secret to load as environment (repeat).",
        rich_help_panel=SECRETS,
    ),
    external_secret: list[str] = typer.Option(
        [],
        "--external-secret",
        rich_help_panel=SECRETS,
        help="A key in your secret store: an ExternalSecret stub makes the Secret (repeat).",
    ),
    secret_store: str = typer.Option(
        "shipway", help="The ClusterSecretStore of --external-secret.", rich_help_panel=SECRETS
    ),
    image_pull_secret: list[str] = typer.Option(
        [],
        "--image-pull-secret",
        help="Registry credentials Secret (repeat).",
        rich_help_panel=SECRETS,
    ),
    # Training
    schedule: str | None = typer.Option(
        None,
        help="Retraining schedule (cron), e.g. '0 3 * * 0': adds a CronJob.",
        rich_help_panel=TRAINING,
    ),
    # Canary
    canary: str | None = typer.Option(
        None, help="The canary version, models:/NAME/VERSION.", rich_help_panel=CANARY
    ),
    canary_image: str | None = typer.Option(
        None, help="The canary's image by digest.", rich_help_panel=CANARY
    ),
    canary_weight: int = typer.Option(
        10, help="Traffic % to the canary (0-100).", rich_help_panel=CANARY
    ),
    canary_replicas: int = typer.Option(1, help="Canary replicas.", rich_help_panel=CANARY),
    gateway: str | None = typer.Option(
        None,
        help="The Gateway the HTTPRoute attaches to: NAME or NAMESPACE/NAME "
        "(default shipway-gateway with --canary or --argo).",
        rich_help_panel=CANARY,
    ),
    hostname: list[str] = typer.Option(
        [], "--hostname", help="Host name the route answers (repeat).", rich_help_panel=CANARY
    ),
    argo: bool = typer.Option(
        False,
        "--argo",
        help="An Argo Rollouts Rollout and AnalysisTemplate instead of Deployments.",
        rich_help_panel=CANARY,
    ),
    steps: str = typer.Option(
        "10,25,50,100", help="--argo: canary % per step, or 'pause'.", rich_help_panel=CANARY
    ),
    interval: str = typer.Option(
        "1m", help="--argo: analysis interval per step (30s, 2m, 1h).", rich_help_panel=CANARY
    ),
    failure_limit: int = typer.Option(
        1, help="--argo: failed analyses that abort.", rich_help_panel=CANARY
    ),
    max_error_rate: float = typer.Option(
        0.05, help="--argo: canary 5xx share that fails.", rich_help_panel=CANARY
    ),
    max_p99_ms: float | None = typer.Option(
        None, help="--argo: absolute canary p99 bound (ms).", rich_help_panel=CANARY
    ),
    max_p99_ratio: float = typer.Option(
        1.5, help="--argo: else canary p99 over stable p99 x this.", rich_help_panel=CANARY
    ),
    min_requests: int = typer.Option(
        20, help="--argo: fewer canary requests: inconclusive.", rich_help_panel=CANARY
    ),
    prometheus_url: str = typer.Option(
        "http://prometheus-operated.monitoring.svc:9090",
        help="--argo: the Prometheus to query.",
        rich_help_panel=CANARY,
    ),
) -> None:
    """Write Kubernetes manifests for a model version: a kustomize base and one overlay per
    environment (apply one with `kubectl apply -k DIR/overlays/ENV`). No secret value is ever
    written: secrets are referenced by name or made by the External Secrets operator."""
    from shipway.deploy.analysis import Checks
    from shipway.deploy.kubernetes import RenderOptions
    from shipway.deploy.kubernetes import render as run
    from shipway.errors import InvalidInputError
    from shipway.serving.settings import ServerSettings

    if kind not in ("inference", "training"):
        raise InvalidInputError(f"Unknown kind '{kind}'.", "Use inference or training.")
    options = RenderOptions(
        uri=uri, output=output, environments=tuple(env), kind=kind,  # type: ignore[arg-type]
        image=image, name=name, force=force, port=port,
        replicas=replicas, max_replicas=max_replicas, hpa=hpa, cpu_utilization=cpu_utilization,
        pods_metrics=tuple(hpa_metric), max_surge=max_surge, max_unavailable=max_unavailable,
        cpu=cpu, cpu_limit=cpu_limit, memory=memory, memory_limit=memory_limit,
        gpu=gpu, gpu_node_selector=tuple(gpu_node_selector), gpu_tolerations=tuple(gpu_toleration),
        startup_seconds=startup_seconds, drain_seconds=drain_seconds,
        prestop_seconds=prestop_seconds, workers=workers,
        server=ServerSettings(
            max_batch_size=max_batch_size, max_latency_ms=max_latency_ms,
            max_queue_rows=max_queue_rows, model_threads=model_threads,
            prediction_log=not no_prediction_log, prediction_log_sample=log_sample,
        ),
        artifact_url=artifact_url, secrets=tuple(secret), external_secrets=tuple(external_secret),
        secret_store=secret_store, image_pull_secrets=tuple(image_pull_secret),
        schedule=schedule, canary=canary, canary_image=canary_image, canary_weight=canary_weight,
        canary_replicas=canary_replicas, gateway=gateway, hostnames=tuple(hostname), argo=argo,
        steps=steps, interval=interval, failure_limit=failure_limit,
        checks=Checks(max_error_rate=max_error_rate, max_p99_ms=max_p99_ms,
                      max_p99_ratio=max_p99_ratio, min_requests=min_requests),
        prometheus_url=prometheus_url,
    )  # fmt: skip
    done = run(options)
    what = done.release.uri + (f" with canary {done.canary.uri}" if done.canary else "")
    console.print(
        f"Wrote {len(done.files)} files for {what} to {done.directory} "
        f"(image {done.release.image})."
    )
    for env_name in done.environments:
        console.print(f"  {env_name}: kubectl apply -k {done.directory / 'overlays' / env_name}")
