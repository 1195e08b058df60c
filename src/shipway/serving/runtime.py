"""A model as the server holds it: loaded, warmed, with its validator and batcher."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shipway.client import Client
from shipway.errors import InvalidInputError
from shipway.flavors import LoadedModel
from shipway.records import ModelVersionInfo
from shipway.serving.batching import Batcher, Columns
from shipway.serving.validation import Validator, to_frame
from shipway.types import ColumnSpec, Signature


def _plain(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def sample_row(signature: Signature) -> dict[str, Any]:
    """One valid row made from the signature alone, to warm the model up before it is ready."""

    def value(spec: ColumnSpec) -> Any:
        if spec.dtype == "int64":
            return 0
        if spec.dtype == "float64":
            return 0.0
        if spec.dtype == "bool":
            return False
        if spec.dtype == "category" and spec.categories:
            return spec.categories[0]
        if spec.dtype == "datetime":
            return datetime.now(UTC).isoformat()
        return ""

    return {spec.name: value(spec) for spec in signature.inputs}


@dataclass
class ServedModel:
    name: str
    version: int
    info: ModelVersionInfo
    model: LoadedModel
    signature: Signature
    load_seconds: float
    classes: list[Any] | None = None
    validator: Validator = field(init=False)
    batcher: Batcher | None = None
    ready: bool = False
    executor: ThreadPoolExecutor = field(default_factory=lambda: predict_executor(1))

    def __post_init__(self) -> None:
        self.validator = Validator(self.signature)
        out = self.signature.output
        self.classes = list(out.classes) if out and out.classes else None

    @classmethod
    def load(cls, uri: str, client: Client, threads: int = 1) -> ServedModel:
        from shipway.flavors import load_from_manifest
        from shipway.packaging import bundle

        started = time.perf_counter()
        if bundle.is_bundle_uri(uri):
            directory = bundle.bundle_path(uri)
            info = bundle.read_bundle(directory)
            store = bundle.blob_store(directory)
        else:  # the registry (and SQLAlchemy) only when a store is involved
            from shipway.registry.registry import get_model_version

            info = get_model_version(uri, client=client)
            store = client.artifacts
        model = load_from_manifest(store, info.manifest_digest)
        if model.signature is None:
            raise InvalidInputError(
                f"{info.uri} has no signature, so its input cannot be checked.",
                "Log the model with input_example=... so Shipway can infer one.",
            )
        return cls(
            info.name,
            info.version,
            info,
            model,
            model.signature,
            time.perf_counter() - started,
            executor=predict_executor(threads),
        )

    @property
    def has_proba(self) -> bool:
        return self.model.has_proba

    def predict_columns(self, columns: Columns, rows: int) -> dict[str, list[Any]]:
        """Predict checked columns; runs in the batcher's worker thread."""
        frame = to_frame(self.signature, columns)
        if self.has_proba and self.classes is not None:
            # A classifier's label is the most probable class: one model call, not two.
            proba = np.asarray(self.model.predict_proba(frame))
            labels = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
            return {"predictions": labels.tolist(), "probabilities": proba.tolist()}
        predictions = self.model.predict(frame)
        out: dict[str, list[Any]] = {"predictions": _plain(predictions)}
        if self.has_proba:
            out["probabilities"] = _plain(self.model.predict_proba(frame))
        return out

    def warm_up(self) -> None:
        columns = self.validator.from_records([sample_row(self.signature)])
        self.predict_columns(columns, 1)

    def arriving(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the reading of a request's rows, so the batcher knows more are on the way."""
        return self.batcher.arriving() if self.batcher is not None else contextlib.nullcontext()

    async def predict(self, columns: Columns, rows: int) -> dict[str, list[Any]]:
        if self.batcher is not None:
            return await self.batcher.submit(columns, rows)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.predict_columns, columns, rows)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def _limit_native_threads(threads: int) -> None:
    """Runs in the predict thread: OpenMP and BLAS pools sized for serving, not training.

    Spinning up a pool of native threads for every small batch costs far more than it saves
    (a gradient-boosted model's single-row predict was ten times slower with two OpenMP threads
    on a busy two-core machine), and the HTTP side needs a core too.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def predict_executor(threads: int = 1) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        1,
        thread_name_prefix="shipway-predict",
        initializer=_limit_native_threads,
        initargs=(threads,),
    )
