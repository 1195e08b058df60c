"""Prometheus metrics of the model server.

``ServingMetrics`` owns every metric the server exposes and the cheap helpers the request path
calls. Two modes, chosen when it is constructed:

* **single process** (the default): the metrics live in a private ``CollectorRegistry`` (never
  the global default one, so several apps in one process do not collide), together with
  prometheus-client's ``ProcessCollector`` (``process_resident_memory_bytes``,
  ``process_cpu_seconds_total``, ...) and ``PlatformCollector`` (``python_info``).
* **multiprocess**, when ``PROMETHEUS_MULTIPROC_DIR`` is set (the server runs N worker
  processes): every worker writes its values to memory-mapped files in that directory and
  :meth:`ServingMetrics.render` aggregates all of them with ``MultiProcessCollector``. Gauges use
  the ``live*`` modes, so a dead worker's values vanish once
  :meth:`ServingMetrics.mark_process_dead` is called for it (e.g. from a process manager's
  child-exit hook); its counters and histograms are kept. ``ProcessCollector`` cannot work
  across processes, so the rendering process reports its own memory as
  ``shipway_process_resident_memory_bytes{pid}``. prometheus-client picks its storage when it is
  first imported: the variable must be set before then, in every worker, and the directory must be
  emptied when the whole server (re)starts.

GPU metrics (``shipway_gpu_utilization_ratio{gpu}``, ``shipway_gpu_memory_used_bytes{gpu}``) are
read through NVML at scrape time when the optional ``pynvml`` module (package ``nvidia-ml-py``)
imports and a GPU is present; they are silently absent otherwise.

Label values must have a small, bounded set of values: pass route templates (``/predict``), not
raw paths, as ``endpoint``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Final, cast

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "MAX_SCORES_PER_CALL",
    "REQUEST_DURATION_BUCKETS",
    "SCORE_BUCKETS",
    "InFlightTracker",
    "ServingMetrics",
    "multiprocess_dir",
]

#: Request latency buckets (seconds): 0.5 ms to 10 s, roughly 1-2.5-5 per decade.
REQUEST_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Rows per predict call: powers of two, 1 to 1024.
BATCH_SIZE_BUCKETS: Final[tuple[float, ...]] = tuple(float(2**i) for i in range(11))
#: Predicted scores / probabilities: 0.0 to 1.0 in 0.1 steps.
SCORE_BUCKETS: Final[tuple[float, ...]] = tuple(round(i / 10, 1) for i in range(11))
#: ``observe_scores`` observes at most this many scores per call (an even sample of larger
#: batches), so one huge batch cannot stall the request path.
MAX_SCORES_PER_CALL: Final = 1000

_MULTIPROC_ENV_VARS: Final = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")

# prometheus_client.multiprocess is not annotated; give the two functions used here their types.
_MultiProcessCollector = cast(
    "Callable[[CollectorRegistry, str | None], object]", multiprocess.MultiProcessCollector
)
_mark_process_dead = cast("Callable[[int, str | None], None]", multiprocess.mark_process_dead)


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, or None in single-process mode.

    Mirrors prometheus-client: the variable being set (even empty) selects multiprocess mode.
    """
    for name in _MULTIPROC_ENV_VARS:
        if name in os.environ:
            return os.environ[name]
    return None


class InFlightTracker:
    """Reusable, reentrant context manager: +1 on ``shipway_requests_in_flight`` while inside."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def __enter__(self) -> None:
        self._gauge.inc()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gauge.dec()


class _ProcessMemoryCollector:
    """Multiprocess mode: resident memory of the process that renders, labelled by pid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._process: psutil.Process | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        pid = os.getpid()
        family = GaugeMetricFamily(
            "shipway_process_resident_memory_bytes",
            "Resident memory size of the worker process that served this scrape, in bytes.",
            labels=["pid"],
        )
        try:
            with self._lock:
                if self._process is None or self._pid != pid:  # first call, or forked since
                    self._process, self._pid = psutil.Process(pid), pid
                process = self._process
            family.add_metric([str(pid)], float(process.memory_info().rss))
        except (psutil.Error, OSError):
            return []
        return [family]


class _ModelProcessMemoryCollector:
    """Resident memory of each model's own process (where the model's memory is), by model
    and pid; `pids` says which processes there are at scrape time."""

    def __init__(self, pids: Callable[[], Mapping[str, int | None]]) -> None:
        self._pids = pids

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "shipway_model_process_resident_memory_bytes",
            "Resident memory size of the process a model runs in, in bytes.",
            labels=["model", "pid"],
        )
        for model, pid in self._pids().items():
            if pid is None:
                continue
            try:
                family.add_metric([model, str(pid)], float(psutil.Process(pid).memory_info().rss))
            except (psutil.Error, OSError):  # exited since: left out of this scrape
                continue
        return [family] if family.samples else []


class _GpuCollector:
    """GPU utilisation and memory per device, read through NVML at scrape time."""

    def __init__(self, nvml: ModuleType, device_count: int) -> None:
        self._nvml = nvml
        self._device_count = device_count

    @classmethod
    def create(cls) -> _GpuCollector | None:
        """A collector when ``pynvml`` imports, NVML initialises and a GPU is present, else None."""
        try:
            nvml = importlib.import_module("pynvml")
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
        except Exception:  # not installed, no driver, no device: GPU metrics are optional
            return None
        return cls(nvml, count) if count > 0 else None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        utilization = GaugeMetricFamily(
            "shipway_gpu_utilization_ratio",
            "Fraction of the last sample period during which the GPU was busy (0-1).",
            labels=["gpu"],
        )
        memory = GaugeMetricFamily(
            "shipway_gpu_memory_used_bytes",
            "GPU memory in use, in bytes.",
            labels=["gpu"],
        )
        nvml = self._nvml
        for index in range(self._device_count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                busy = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0
                used = float(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            except Exception:  # a device that errors (lost, reset) is left out of this scrape
                continue
            utilization.add_metric([str(index)], busy)
            memory.add_metric([str(index)], used)
        if not utilization.samples:
            return []
        return [utilization, memory]


class ServingMetrics:
    """All metrics of one model server, with cheap helpers for the request path.

    ``registry`` is the registry :meth:`render` exposes; by default a new private one. In
    single-process mode the metrics (and, if not already there, the process and platform
    collectors) are registered in it; in multiprocess mode it receives the
    ``MultiProcessCollector`` instead and the metrics themselves are not registered anywhere.

    Helpers cache each label combination's child metric, so the hot path is a dict lookup plus
    the metric update. Safe to call from many threads.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        path = multiprocess_dir()
        self.multiprocess: Final = path is not None
        if self.multiprocess != (values.ValueClass is not values.MutexValue):
            raise RuntimeError(
                "PROMETHEUS_MULTIPROC_DIR must be set (or unset) before prometheus_client is "
                "first imported: it was "
                + ("set after" if self.multiprocess else "unset after")
                + " the import, so metric values would not be where render() reads them"
            )
        self.registry: Final = registry if registry is not None else CollectorRegistry()
        own: CollectorRegistry | None = None if self.multiprocess else self.registry

        self._requests = Counter(
            "shipway_requests_total",
            "Requests handled, by model, endpoint and HTTP status code.",
            ["model", "endpoint", "status"],
            registry=own,
        )
        self._request_duration = Histogram(
            "shipway_request_duration_seconds",
            "Time from receiving a request to sending its response, in seconds.",
            ["model", "endpoint"],
            buckets=REQUEST_DURATION_BUCKETS,
            registry=own,
        )
        self._batch_size = Histogram(
            "shipway_batch_size",
            "Rows passed to the model per predict call.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=own,
        )
        self._in_flight = Gauge(
            "shipway_requests_in_flight",
            "Requests currently being handled.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self._queue_depth = Gauge(
            "shipway_queue_depth",
            "Rows waiting to be batched, by model.",
            ["model"],
            registry=own,
            multiprocess_mode="livesum",
        )
        self._model_load = Gauge(
            "shipway_model_load_seconds",
            "Time it took to load the model version, in seconds (slowest worker).",
            ["model", "version"],
            registry=own,
            multiprocess_mode="livemax",
        )
        self._scores = Histogram(
            "shipway_prediction_score",
            "Predicted scores / probabilities (at most "
            f"{MAX_SCORES_PER_CALL} sampled per predict call).",
            ["model", "version"],
            buckets=SCORE_BUCKETS,
            registry=own,
        )
        self._log_dropped = Counter(
            "shipway_prediction_log_dropped_total",
            "Prediction log records dropped because the log could not keep up.",
            ["model"],
            registry=own,
        )
        self._overload = Counter(
            "shipway_overload_rejections_total",
            "Requests rejected because the server was overloaded.",
            ["model"],
            registry=own,
        )
        self._model_info = Gauge(
            "shipway_model_info",
            "Model versions being served (always 1; 0 in multiprocess mode once unloaded).",
            ["model", "version", "flavor"],
            registry=own,
            multiprocess_mode="livemax",
        )

        self._in_flight_tracker = InFlightTracker(self._in_flight)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._batch_children: dict[str, Histogram] = {}
        self._queue_children: dict[str, Gauge] = {}
        self._score_children: dict[tuple[str, int], Histogram] = {}
        self._dropped_children: dict[str, Counter] = {}
        self._overload_children: dict[str, Counter] = {}
        self._loaded_lock = threading.Lock()
        self._loaded: dict[tuple[str, str], str] = {}  # (model, version) -> flavor

        if self.multiprocess:
            _MultiProcessCollector(self.registry, path)
            self.registry.register(_ProcessMemoryCollector())
        else:
            for make in (ProcessCollector, PlatformCollector):
                with contextlib.suppress(ValueError):  # a caller's registry may already have it
                    make(registry=self.registry)
        gpu = _GpuCollector.create()
        if gpu is not None:
            self.registry.register(gpu)

    def watch_model_processes(self, pids: Callable[[], Mapping[str, int | None]]) -> None:
        """Export the resident memory of the processes `pids()` names (model -> pid)."""
        self.registry.register(_ModelProcessMemoryCollector(pids))

    # ------------------------------------------------------------------ hot path

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one handled request and record its duration."""
        key = (model, endpoint, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self._requests.labels(model, endpoint, str(status)),
                self._request_duration.labels(model, endpoint),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, model: str, rows: int) -> None:
        """Record the number of rows of one predict call."""
        child = self._batch_children.get(model)
        if child is None:
            child = self._batch_children[model] = self._batch_size.labels(model)
        child.observe(rows)

    def observe_scores(self, model: str, version: int, scores: Sequence[float]) -> None:
        """Record predicted scores; at most ``MAX_SCORES_PER_CALL``, non-finite ones skipped.

        Larger batches are sampled evenly (every k-th score), so bucket counts then reflect the
        distribution, not the exact number of predictions.
        """
        n = len(scores)
        if n == 0:
            return
        key = (model, version)
        child = self._score_children.get(key)
        if child is None:
            child = self._score_children[key] = self._scores.labels(model, str(version))
        if n > MAX_SCORES_PER_CALL:
            scores = scores[:: -(-n // MAX_SCORES_PER_CALL)]
        observe = child.observe
        isfinite = math.isfinite
        for score in scores:
            value = float(score)
            if isfinite(value):
                observe(value)

    def set_queue_depth(self, model: str, rows: int) -> None:
        """Set the number of rows waiting to be batched for ``model`` (in this process)."""
        child = self._queue_children.get(model)
        if child is None:
            child = self._queue_children[model] = self._queue_depth.labels(model)
        child.set(rows)

    def track_in_flight(self) -> InFlightTracker:
        """Context manager counting the enclosed request in ``shipway_requests_in_flight``."""
        return self._in_flight_tracker

    def request_started(self) -> None:
        """+1 request in flight (pair with :meth:`request_finished`)."""
        self._in_flight.inc()

    def request_finished(self) -> None:
        """-1 request in flight."""
        self._in_flight.dec()

    def prediction_log_dropped(self, model: str, n: int = 1) -> None:
        """Count ``n`` prediction log records dropped for ``model``."""
        if n <= 0:
            return
        child = self._dropped_children.get(model)
        if child is None:
            child = self._dropped_children[model] = self._log_dropped.labels(model)
        child.inc(n)

    def overload_rejected(self, model: str) -> None:
        """Count one request for ``model`` rejected because the server was overloaded."""
        child = self._overload_children.get(model)
        if child is None:
            child = self._overload_children[model] = self._overload.labels(model)
        child.inc()

    # ------------------------------------------------------------------ model lifecycle

    def set_model_loaded(self, model: str, version: int, flavor: str, seconds: float) -> None:
        """Record that ``model`` version ``version`` (``flavor``) loaded in ``seconds``."""
        key = (model, str(version))
        with self._loaded_lock:
            previous = self._loaded.get(key)
            if previous is not None and previous != flavor:
                self._drop_info(model, key[1], previous)
            self._loaded[key] = flavor
            self._model_load.labels(model, key[1]).set(seconds)
            self._model_info.labels(model, key[1], flavor).set(1)

    def set_model_unloaded(self, model: str, version: int) -> None:
        """Stop reporting ``model`` version ``version`` as served (e.g. after a version swap)."""
        key = (model, str(version))
        with self._loaded_lock:
            flavor = self._loaded.pop(key, None)
            if flavor is None:
                return
            self._drop_info(model, key[1], flavor)
            if not self.multiprocess:
                self._model_load.remove(model, key[1])

    def _drop_info(self, model: str, version: str, flavor: str) -> None:
        if self.multiprocess:  # label removal is not supported across processes
            self._model_info.labels(model, version, flavor).set(0)
        else:
            self._model_info.remove(model, version, flavor)

    # ------------------------------------------------------------------ exposition

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type.

        Prometheus text format by default; pass the request's ``Accept`` header to negotiate
        (e.g. OpenMetrics).
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    @staticmethod
    def mark_process_dead(pid: int) -> None:
        """Multiprocess mode: drop the ``live*`` gauge values of a worker process that exited."""
        path = multiprocess_dir()
        if path is not None:
            _mark_process_dead(pid, path)
