"""`shipway k8s render`: Kubernetes manifests (a kustomize base and overlays) for a version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shipway.cli._output import console

if TYPE_CHECKING:
    from rich.progress import Progress

    from shipway.deploy.kubernetes import RenderOptions
    from shipway.deploy.kubernetes.rollouts import CanaryRun
    from shipway.deploy.kubernetes.status import RolloutStatus

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
    retrain: bool = typer.Option(
        False,
        "--retrain",
        help="The CronJob runs `shipway retrain MODEL` (compare with the champion, the policy "
        "decides) instead of the bare training command.",
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
        schedule=schedule, retrain=retrain, canary=canary, canary_image=canary_image,
        canary_weight=canary_weight,
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


# ----------------------------------------------------------------------------------------------
# On a cluster: apply, status, rollback, and canary rollouts (issue 8)

CLUSTER = "Cluster"
rollout = typer.Typer(help="Canary releases on a cluster.", no_args_is_help=True)
app.add_typer(rollout, name="rollout")

ENV = typer.Option(..., "--env", "-e", help="The environment (its overlay and namespace).")
CONTEXT = typer.Option(
    None, help="kubeconfig context (default: the current one; recorded by apply).",
    rich_help_panel=CLUSTER,
)  # fmt: skip
NAMESPACE = typer.Option(
    None, help="Namespace (default: NAME-ENV, as the overlay sets it).", rich_help_panel=CLUSTER
)
TIMEOUT = typer.Option(
    600.0, help="Seconds to wait for the rollout to be available.", rich_help_panel=CLUSTER
)


def _options(uri: str, **values: Any) -> RenderOptions:
    """RenderOptions for a cluster command (imported late: `--help` stays fast)."""
    from shipway.deploy.kubernetes import RenderOptions

    return RenderOptions(uri=uri, output=Path("."), **values)


def _progress() -> tuple[Progress, Callable[[RolloutStatus], None]]:
    """A Rich progress bar of available replicas, and the callback that moves it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   console=console, transient=True)  # fmt: skip
    task = bar.add_task("waiting", total=None)

    def update(s: RolloutStatus) -> None:
        bar.update(task, total=s.desired, completed=min(s.available, s.desired),
                   description=f"{s.name}: {s.describe()}")  # fmt: skip

    return bar, update


FROM = typer.Option(
    None, "--from", help="A directory `shipway k8s render -o DIR` wrote: its options apply.",
    rich_help_panel=CLUSTER,
)  # fmt: skip
SHAPING = ("image", "name", "replicas", "max_replicas", "hpa", "cpu", "cpu_limit", "memory",
           "gpu", "port", "secret", "gateway")  # fmt: skip


def _saved_options(directory: Path, uri: str | None, image: str | None) -> RenderOptions:
    """The options `shipway k8s render` saved in ``directory``; ``uri`` (with ``image``, or its
    pushed image) applies another version with the very same options."""
    from dataclasses import replace

    from shipway.deploy.kubernetes import RenderOptions
    from shipway.deploy.kubernetes.render import OPTIONS_FILE
    from shipway.errors import NotFoundError

    path = directory / OPTIONS_FILE
    if not path.is_file():
        raise NotFoundError(
            f"{directory} has no {OPTIONS_FILE}.",
            "Give the directory `shipway k8s render -o DIR` wrote (render it again if it is "
            "older than this option).",
        )
    saved = RenderOptions.from_json(path.read_text())
    return replace(saved, uri=uri, image=image) if uri else saved


def _recorded_options(env: str, uri: str, image: str | None, **changes: Any) -> RenderOptions:
    """The options ``env`` was applied with (kept with its record), for ``uri``; the defaults
    for an environment applied before they were kept."""
    from dataclasses import replace

    from shipway.deploy.kubernetes import RenderOptions
    from shipway.deploy.records import find_deployment

    dep = find_deployment(env)
    saved = dep.observed.get("options") if dep is not None else None
    if not saved:
        return _options(uri, image=image, **changes)
    return replace(RenderOptions.from_saved(saved), uri=uri, image=image, **changes)


@app.command()
def apply(
    ctx: typer.Context,
    uri: str | None = typer.Argument(
        None, help="The version: models:/NAME/VERSION or @ALIAS (with --from: the rendered one)."
    ),
    env: str = ENV,
    source: Path | None = typer.Option(
        None,
        "--from",
        help="Apply with every option `shipway k8s render -o DIR` was given "
        "(GPU pools, secrets, server settings, ...).",
        rich_help_panel=CLUSTER,
    ),
    context: str | None = CONTEXT,
    namespace: str | None = NAMESPACE,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Server-side dry run: validate everything, change and record nothing.",
        rich_help_panel=CLUSTER,
    ),
    create_namespace: bool = typer.Option(
        True,
        "--create-namespace/--no-create-namespace",
        help="Apply the Namespace object too.",
        rich_help_panel=CLUSTER,
    ),
    timeout: float = TIMEOUT,
    image: str | None = typer.Option(None, help="Image by digest (default: the pushed one)."),
    name: str | None = typer.Option(None, help="Name of the objects (default: from the model)."),
    replicas: int = typer.Option(3, help="Production replicas (staging runs 1)."),
    max_replicas: int = typer.Option(10, help="Production autoscaling maximum."),
    hpa: bool = typer.Option(True, "--hpa/--no-hpa", help="Autoscale on CPU."),
    cpu: str = typer.Option("500m", help="CPU request (staging asks half)."),
    cpu_limit: str = typer.Option("2", help="CPU limit."),
    memory: str = typer.Option("1Gi", help="Memory request."),
    gpu: int = typer.Option(0, help="NVIDIA GPUs per pod."),
    port: int = typer.Option(8080, help="The port the server listens on in the image."),
    secret: list[str] = typer.Option([], "--secret", help="Existing Secret to load (repeat)."),
    gateway: str | None = typer.Option(None, help="Also route through this Gateway."),
) -> None:
    """Apply a version to an environment on a cluster (server-side apply), wait until it is
    available, then record it. Production needs an approved version."""
    from shipway.deploy.kubernetes.apply import apply as run
    from shipway.errors import InvalidInputError

    if source is not None:
        # typer vendors click: compare the source by name, not by click's enum
        given = [f"--{n.replace('_', '-')}" for n in SHAPING if n != "image"
                 and getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"]  # fmt: skip
        if given:
            raise InvalidInputError(
                f"{', '.join(given)} cannot change what --from {source} rendered.",
                "Render again with the new options, then apply that directory.",
            )
        o = _saved_options(source, uri, image)
    elif uri is None:
        raise InvalidInputError(
            "Give the version to apply, or --from DIR (a directory `shipway k8s render` wrote)."
        )
    else:
        o = _options(uri, name=name, image=image, replicas=replicas, max_replicas=max_replicas,
                     hpa=hpa, cpu=cpu, cpu_limit=cpu_limit, memory=memory, gpu=gpu, port=port,
                     secrets=tuple(secret), gateway=gateway)  # fmt: skip
    bar, update = _progress()
    with bar:
        done = run(
            o, env, context=context, namespace=namespace, dry_run=dry_run,
            create_namespace=create_namespace, timeout_s=timeout, on_status=update,
        )  # fmt: skip
    where = f"{done.namespace} (context {done.context})"
    if done.dry_run:
        console.print(f"Dry run: the cluster accepts {len(done.objects)} objects for "
                      f"{done.release.uri} in {where}. Nothing changed or recorded.")  # fmt: skip
        for obj in done.objects:
            console.print(f"  {obj['kind']}/{obj['metadata']['name']}")
        return
    assert done.status is not None
    console.print(f"{done.release.uri} is available in {env}: {where}, "
                  f"{done.status.available}/{done.status.desired} replicas, revision "
                  f"{done.status.revision}, image {done.release.image}.")  # fmt: skip


@app.command()
def status(
    env: str = ENV,
    context: str | None = CONTEXT,
    namespace: str | None = NAMESPACE,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What is recorded for an environment on a cluster, and what runs there now."""
    from shipway.cli._output import print_json, table
    from shipway.deploy.kubernetes.apply import live_status

    live = live_status(env, context=context, namespace=namespace)
    dep = live.recorded
    tracks = [("stable", live.stable)] + ([("canary", live.canary)] if live.canary else [])
    if json_out:
        print_json({"recorded": dep.to_dict(), "weights": live.weights,
                    "tracks": {t: vars(s) | {"done": s.done} for t, s in tracks}})  # fmt: skip
        return
    console.print(
        f"{env}: models:/{dep.model}/{dep.version} recorded {dep.since:%Y-%m-%d %H:%M} on "
        f"context {dep.host}, namespace {dep.observed.get('namespace')}, revision "
        f"{dep.observed.get('revision')}, image {dep.image}."
    )
    weights = live.weights or {}
    app_name = dep.observed.get("app")
    table(None, ["track", "version", "ready", "revision", "weight", "digest", "state"],
          [(t, s.version, f"{s.ready}/{s.desired}", s.revision, weights.get(f"{app_name}-{t}"),
            _digest(s.image), "available" if s.done else (s.failed or s.describe()))
           for t, s in tracks])  # fmt: skip


def _digest(image: str | None) -> str | None:
    """The image's digest, shortened: enough to tell images apart in a table."""
    if image is None or "@sha256:" not in image:
        return image
    return image.partition("@sha256:")[2][:12]


@app.command()
def rollback(
    env: str = ENV,
    to_revision: int | None = typer.Option(
        None, help="The revision to return to (default: the previous one)."
    ),
    context: str | None = CONTEXT,
    namespace: str | None = NAMESPACE,
    timeout: float = TIMEOUT,
) -> None:
    """Return the environment's Deployment to an earlier revision (`kubectl rollout undo`),
    wait for it, and record it."""
    from shipway.deploy.kubernetes.apply import rollback as run

    bar, update = _progress()
    with bar:
        dep = run(env, to_revision=to_revision, context=context, namespace=namespace,
                  timeout_s=timeout, on_status=update)  # fmt: skip
    console.print(f"{env} rolled back to revision {dep.observed.get('revision')}: "
                  f"models:/{dep.model}/{dep.version}, image {dep.image}.")  # fmt: skip


@rollout.command("start")
def rollout_start(
    uri: str = typer.Argument(..., help="The canary: models:/NAME/VERSION."),
    env: str = ENV,
    steps: str = typer.Option("10,25,50,100", help="Canary traffic % per step, or 'pause'."),
    interval: str = typer.Option("1m", help="Analysis interval per step: 30s, 2m ..."),
    failure_limit: int = typer.Option(1, min=1, help="Failed analyses that abort."),
    prometheus_url: str = typer.Option(..., help="The Prometheus HTTP API to query."),
    max_error_rate: float = typer.Option(0.05, help="Canary 5xx share that fails."),
    max_p99_ms: float | None = typer.Option(None, help="Absolute canary p99 bound (ms)."),
    max_p99_ratio: float = typer.Option(1.5, help="Else: canary p99 over stable p99 x this."),
    min_requests: int = typer.Option(20, help="Fewer canary requests: inconclusive."),
    context: str | None = CONTEXT,
    namespace: str | None = NAMESPACE,
    timeout: float = TIMEOUT,
    image: str | None = typer.Option(None, help="The canary's image by digest."),
    canary_replicas: int = typer.Option(1, help="Canary replicas."),
    gateway: str | None = typer.Option(None, help="The Gateway of the HTTPRoute."),
    hostname: list[str] = typer.Option([], "--hostname", help="Host the route answers."),
    source: Path | None = FROM,
) -> None:
    """Run a canary on the cluster in the foreground: shift the HTTPRoute's weights step by
    step, analyse Prometheus' numbers, promote or roll back. Ctrl-C aborts it; if this process
    dies instead, `shipway k8s rollout resume` carries on."""
    from shipway.cli.deploy import _print_move, _seconds
    from shipway.deploy.analysis import Checks
    from shipway.deploy.kubernetes import rollouts
    from shipway.deploy.kubernetes.prometheus import PrometheusMetricsSource
    from shipway.deploy.rollout import parse_steps

    if source is not None:
        from dataclasses import replace

        o = replace(_saved_options(source, uri, image), canary_replicas=canary_replicas,
                    gateway=gateway, hostnames=tuple(hostname))  # fmt: skip
    else:
        o = _recorded_options(env, uri, image, canary_replicas=canary_replicas,
                              gateway=gateway, hostnames=tuple(hostname))  # fmt: skip
    checks = Checks(max_error_rate=max_error_rate, max_p99_ms=max_p99_ms,
                    max_p99_ratio=max_p99_ratio, min_requests=min_requests)  # fmt: skip
    bar, update = _progress()
    with bar:
        started = rollouts.start(
            o, env, steps=parse_steps(steps), interval_s=_seconds(interval),
            failure_limit=failure_limit, checks=checks, context=context, namespace=namespace,
            timeout_s=timeout, on_status=update,
            source=lambda ns, app_: PrometheusMetricsSource(prometheus_url, namespace=ns, app=app_),
        )  # fmt: skip
    state = started.controller.state
    console.print(f"Rollout {state.id}: version {state.stable_version} -> "
                  f"{state.canary_version} in {env}, steps {steps}, every {interval}.")  # fmt: skip
    _print_move(state)
    _follow(started)


def _follow(started: CanaryRun) -> None:
    from shipway.cli.deploy import _print_move
    from shipway.deploy.kubernetes import rollouts

    final = rollouts.run(
        started, on_change=_print_move,
        on_error=lambda exc: console.print(f"  [yellow]warning:[/yellow] {exc}"),
    )  # fmt: skip
    if final.status in ("failed", "aborted"):
        raise typer.Exit(1)


@rollout.command("resume")
def rollout_resume(
    env: str = ENV,
    prometheus_url: str = typer.Option(..., help="The Prometheus HTTP API to query."),
    source: Path | None = FROM,
    context: str | None = CONTEXT,
    namespace: str | None = NAMESPACE,
    timeout: float = TIMEOUT,
) -> None:
    """Carry on the environment's canary after the process that followed it died: same state,
    same step. Give --from DIR if the environment was applied from a rendered directory (a
    promotion applies the stable Deployment with those options). Run it once: two processes
    following one rollout would both move it."""
    from shipway.cli.deploy import _print_move
    from shipway.deploy.kubernetes import rollouts
    from shipway.deploy.kubernetes.prometheus import PrometheusMetricsSource

    # The URI is the canary's, from the stored rollout: attach replaces this placeholder.
    placeholder = "models:/_/1"
    o = (_saved_options(source, None, None) if source is not None
         else _recorded_options(env, placeholder, None))  # fmt: skip
    bar, update = _progress()
    with bar:
        attached = rollouts.attach(
            o, env, context=context, namespace=namespace, timeout_s=timeout, on_status=update,
            source=lambda ns, app_: PrometheusMetricsSource(prometheus_url, namespace=ns, app=app_),
        )  # fmt: skip
    state = attached.controller.state
    console.print(f"Resuming rollout {state.id}: version {state.stable_version} -> "
                  f"{state.canary_version} in {env}, at {state.weight:g}%.")  # fmt: skip
    _print_move(state)
    _follow(attached)
