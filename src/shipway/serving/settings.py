"""How a model server behaves: batching, limits, auth, prediction log."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from shipway.errors import InvalidInputError


class ServerSettings(BaseModel):
    max_batch_size: int = Field(64, ge=1, description="Rows per predict call at most.")
    max_latency_ms: float = Field(5.0, ge=0, description="Longest a batch is held open.")
    max_queue_rows: int = Field(4096, ge=1, description="Rows waiting per model before 503.")
    batching: bool = True
    model_process: bool = Field(
        True,
        description="Run each model in its own process, so its predict calls never hold "
        "the GIL the HTTP side needs.",
    )
    model_threads: int = Field(1, ge=1, description="OpenMP/BLAS threads per predict call.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    request_timeout_s: float = Field(30.0, gt=0)
    api_keys: list[str] = Field(default_factory=list, repr=False)
    api_key_file: Path | None = Field(None, description="More keys, one per line.")
    prediction_log: bool = True
    prediction_log_sample: float = Field(1.0, ge=0, le=1)
    load_before_accept: bool = Field(
        False,
        description="Load the models before taking connections (set with several workers, so "
        "a worker still loading never takes a request a ready one could serve).",
    )


def api_keys(settings: ServerSettings) -> list[str]:
    """Every key the server accepts: those given directly and those in the key file."""
    from_file = read_api_keys(settings.api_key_file) if settings.api_key_file else []
    return [*settings.api_keys, *from_file]


def read_api_keys(path: Path) -> list[str]:
    """One key per line; blank lines and `#` comments ignored."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read the API key file {path}: {exc.strerror}.") from None
    keys = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise InvalidInputError(f"The API key file {path} holds no keys.", "Put one per line.")
    return keys
