"""`shipway serve MODEL_URI [MODEL_URI ...]`."""

from __future__ import annotations

from pathlib import Path

import typer

from shipway.cli._output import console


def serve(
    uris: list[str] = typer.Argument(..., help="Models to serve: models:/NAME@ALIAS or /VERSION."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8080, help="Port to listen on."),
    workers: str = typer.Option(
        "1", help="Worker processes: a number, or auto (one per CPU this process may use)."
    ),
    max_batch_size: int = typer.Option(64, min=1, help="Rows per predict call at most."),
    max_latency_ms: float = typer.Option(5.0, min=0, help="Longest a batch is held open."),
    max_queue_rows: int = typer.Option(4096, min=1, help="Queued rows per model before 503."),
    no_batching: bool = typer.Option(False, "--no-batching", help="Predict each request alone."),
    max_body_bytes: int = typer.Option(10 * 1024 * 1024, min=1, help="Larger bodies get 413."),
    model_threads: int = typer.Option(1, min=1, help="OpenMP/BLAS threads per predict call."),
    in_process: bool = typer.Option(
        False,
        "--in-process",
        help="Predict in the server's own process, not one process per model (less memory, "
        "but predict calls then compete with HTTP for the GIL).",
    ),
    api_key_file: Path | None = typer.Option(None, help="File of API keys, one per line."),
    log_sample: float = typer.Option(1.0, min=0, max=1, help="Share of predictions logged."),
    no_prediction_log: bool = typer.Option(False, "--no-prediction-log"),
    drain_seconds: float = typer.Option(30.0, help="On SIGTERM, wait this long for requests."),
) -> None:
    """Serve models over REST and the Open Inference Protocol (v2), with /docs and /metrics."""
    from shipway.addresses import check_listen_address
    from shipway.serving.server import check_uris, worker_count
    from shipway.serving.server import serve as run
    from shipway.serving.settings import ServerSettings, read_api_keys

    settings = ServerSettings(
        max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms,
        max_queue_rows=max_queue_rows,
        batching=not no_batching,
        model_threads=model_threads,
        model_process=not in_process,
        max_body_bytes=max_body_bytes,
        api_key_file=api_key_file,
        prediction_log=not no_prediction_log,
        prediction_log_sample=log_sample,
    )
    if api_key_file is not None:
        read_api_keys(api_key_file)  # a missing or empty key file fails here, not in a worker
    count = worker_count(workers)  # a bad flag fails before anything is looked up
    check_listen_address(host, port)
    check_uris(uris)
    auth = "API key required" if api_key_file else "no auth"
    where = "in the server's process" if in_process else "each model in its own process"
    console.print(
        f"Serving {', '.join(uris)} on http://{host}:{port} ({count} worker(s), {where}, "
        f"{auth}); docs at /docs, metrics at /metrics.",
        soft_wrap=True,  # one line in a container's log, however narrow the terminal
    )
    run(uris, settings, host=host, port=port, workers=count, drain_seconds=drain_seconds)
