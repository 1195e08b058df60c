"""A model as the server holds it: loaded (here or in its own process), warmed, with its
validator and batcher."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipway.client import Client
from shipway.errors import InvalidInputError
from shipway.flavors import LoadedModel
from shipway.records import ModelVersionInfo
from shipway.serving.batching import Batcher, Columns
from shipway.serving.model_process import ModelProcess
from shipway.serving.positional import ArrayModel, array_model
from shipway.serving.validation import Validator, frame_columns, sample_row, to_frame
from shipway.types import Signature


def _plain(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


@dataclass
class ServedModel:
    """`model` is the loaded model when it runs in this process; `process` is its child
    process otherwise (and `model` is None)."""

    name: str
    version: int
    info: ModelVersionInfo
    model: LoadedModel | None
    signature: Signature
    load_seconds: float
    flavor: str = ""
    classes: list[Any] | None = None
    validator: Validator = field(init=False)
    batcher: Batcher | None = None
    activated: bool = False  # loaded, warmed up and taking requests
    executor: ThreadPoolExecutor = field(default_factory=lambda: predict_executor(1))
    process: ModelProcess | None = None
    has_proba: bool = False
    takes_arrays: bool = False  # predicts through `array_model` (here or in its process)
    array_model: ArrayModel | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.validator = Validator(self.signature)
        out = self.signature.output
        self.classes = list(out.classes) if out and out.classes else None
        if self.model is not None:
            self.flavor, self.has_proba = self.model.flavor, self.model.has_proba
            if self.flavor == "sklearn":
                self.array_model = array_model(self.model.impl, self.signature)
            self.takes_arrays = self.array_model is not None

    @property
    def ready(self) -> bool:
        """Activated and, when the model has its own process, that process loaded and alive:
        not while a dead one is being replaced (requests wait for the new one meanwhile)."""
        return self.activated and (self.process is None or self.process.running())

    @classmethod
    def load(cls, uri: str, client: Client, threads: int = 1) -> ServedModel:
        """Load the model into this process."""
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

    @classmethod
    def start_process(cls, process: ModelProcess, threads: int = 1) -> ServedModel:
        """Load the model in its own process (loaded and warm when this returns)."""
        meta = process.start()
        return cls(
            meta.info.name,
            meta.info.version,
            meta.info,
            None,
            meta.signature,
            meta.load_seconds,
            flavor=meta.flavor,
            executor=predict_executor(threads),
            process=process,
            has_proba=meta.has_proba,
            takes_arrays=meta.takes_arrays,
        )

    def predict_columns(self, columns: Columns, rows: int) -> dict[str, list[Any]]:
        """Predict checked columns; runs in the batcher's worker thread."""
        if self.process is not None:
            return self.process.predict(columns, rows)
        if self.array_model is not None:
            with contextlib.suppress(Exception):  # the original then says why, in its words
                return self._predict(self.array_model, frame_columns(self.signature, columns))
        assert self.model is not None
        return self._predict(self.model, to_frame(self.signature, columns))

    def _predict(self, model: LoadedModel | ArrayModel, data: Any) -> dict[str, list[Any]]:
        if self.has_proba and self.classes is not None:
            # A classifier's label is the most probable class: one model call, not two.
            proba = np.asarray(model.predict_proba(data))
            labels = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
            return {"predictions": labels.tolist(), "probabilities": proba.tolist()}
        predictions = model.predict(data)
        out: dict[str, list[Any]] = {"predictions": _plain(predictions)}
        if self.has_proba:
            out["probabilities"] = _plain(model.predict_proba(data))
        return out

    def warm_up(self) -> None:
        if self.process is not None:
            return  # warmed up in its process before it said it was ready
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
        if self.process is not None:
            self.process.close()


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


def short_gil_turns() -> None:
    """Hand the GIL over every 0.5 ms instead of CPython's 5 ms, in our own server processes.

    A thread that wakes up (the predict thread when its batch comes back, the model process's
    main thread when the log writer holds the GIL) waits for the running thread's turn to end:
    up to 5 ms by default, as long as a whole predict call. Shorter turns: about 13% more
    requests per second at 64 connections on two cores, measured side by side (bench/README.md).
    Only for processes Shipway owns (`shipway serve`, model processes): it is process-wide.
    """
    sys.setswitchinterval(0.0005)


def quiet_garbage_collector() -> None:
    """Keep the cyclic GC off the request path.

    A loaded model is a large graph of long-lived objects; every full collection walked it
    again and stalled the server (p99 119 ms against 25 ms at 64 connections). Freezing moves
    what exists after loading out of the collector's sight, and a higher first threshold makes
    collections rare: request objects are freed by reference counting anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


# Prediction ids: a random 64-bit prefix per process and a counter. As unique as uuid4 for
# our purposes, and a tenth of its cost (uuid4 reads the OS's random source for every id).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count()


def _new_id_prefix() -> None:  # a forked worker must not repeat its parent's ids
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = uuid.uuid4().hex[:16], itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)


def new_ids(n: int) -> list[str]:
    return [f"{_ID_PREFIX}{next(_ID_COUNTER):016x}" for _ in range(n)]
