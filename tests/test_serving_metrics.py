"""Tests of the model server's Prometheus metrics (``shipway.serving.metrics``).

The exposition is parsed back with prometheus-client's own parser and linted with the real
``promtool check metrics`` (Debian package ``prometheus``; ``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from servers import assert_promtool_clean
from shipway.serving.metrics import (
    BATCH_SIZE_BUCKETS,
    MAX_SCORES_PER_CALL,
    REQUEST_DURATION_BUCKETS,
    SCORE_BUCKETS,
    ServingMetrics,
)

# =============================================================================
# Helpers
# =============================================================================


def all_samples(body: bytes | str) -> list[Sample]:
    text = body.decode() if isinstance(body, bytes) else body
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def find(body: bytes | str, name: str, **labels: str) -> list[Sample]:
    """Samples called ``name`` whose labels include ``labels``."""
    return [
        s
        for s in all_samples(body)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(body: bytes | str, name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` with (at least) ``labels``."""
    matches = find(body, name, **labels)
    assert len(matches) == 1, f"expected one {name}{labels}, found {matches}"
    return matches[0].value


def buckets(body: bytes | str, name: str, **labels: str) -> dict[str, float]:
    """``le`` -> cumulative count of histogram ``name``."""
    return {s.labels["le"]: s.value for s in find(body, f"{name}_bucket", **labels)}


def metric_names(body: bytes | str) -> set[str]:
    return {s.name for s in all_samples(body)}






def exercise(metrics: ServingMetrics) -> None:
    """One of every observation."""
    metrics.observe_request("iris", "/predict", 200, 0.004)
    metrics.observe_request("iris", "/predict", 503, 0.0001)
    metrics.observe_batch("iris", 8)
    metrics.observe_scores("iris", 3, [0.05, 0.5, 0.99])
    metrics.set_queue_depth("iris", 4)
    metrics.set_model_loaded("iris", 3, "sklearn", 1.25)
    metrics.prediction_log_dropped("iris", 2)
    metrics.overload_rejected("iris")
    with metrics.track_in_flight():
        pass


def fake_nvml(
    count: int = 2, *, fail_init: bool = False, broken: tuple[int, ...] = ()
) -> types.ModuleType:
    """A stand-in for the ``pynvml`` module (package nvidia-ml-py) with ``count`` GPUs."""
    module = types.ModuleType("pynvml")

    def init() -> None:
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def handle(index: int) -> int:
        if index in broken:
            raise RuntimeError("GPU is lost")
        return index

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: count  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = handle  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        gpu=40 + 10 * h, memory=5
    )
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        used=(h + 1) * 2**30, free=2**30, total=(h + 2) * 2**30
    )
    return module


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import pynvml`` fail, whether or not nvidia-ml-py is installed."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


# =============================================================================
# Single-process mode: values
# =============================================================================


def test_requests_are_counted_by_status_and_timed_by_endpoint() -> None:
    metrics = ServingMetrics()
    for seconds in (0.0004, 0.003, 0.2):
        metrics.observe_request("iris", "/predict", 200, seconds)
    metrics.observe_request("iris", "/predict", 500, 12.0)
    metrics.observe_request("wine", "/v2/infer", 200, 0.01)
    body, _ = metrics.render()

    assert (
        value(body, "shipway_requests_total", model="iris", endpoint="/predict", status="200") == 3
    )
    assert (
        value(body, "shipway_requests_total", model="iris", endpoint="/predict", status="500") == 1
    )
    assert value(body, "shipway_requests_total", model="wine", endpoint="/v2/infer") == 1
    duration = "shipway_request_duration_seconds"
    assert value(body, f"{duration}_count", model="iris", endpoint="/predict") == 4
    assert value(body, f"{duration}_sum", model="iris", endpoint="/predict") == pytest.approx(
        12.2034
    )
    iris = buckets(body, duration, model="iris", endpoint="/predict")
    assert list(iris) == [*(str(float(b)) for b in REQUEST_DURATION_BUCKETS), "+Inf"]
    assert iris["0.0005"] == 1
    assert iris["0.0025"] == 1
    assert iris["0.005"] == 2
    assert iris["0.25"] == 3
    assert iris["10.0"] == 3
    assert iris["+Inf"] == 4


def test_batch_sizes_use_power_of_two_buckets() -> None:
    metrics = ServingMetrics()
    for rows in (1, 3, 1024, 5000):
        metrics.observe_batch("iris", rows)
    body, _ = metrics.render()

    counts = buckets(body, "shipway_batch_size", model="iris")
    assert list(counts) == [*(str(float(2**i)) for i in range(11)), "+Inf"]
    assert BATCH_SIZE_BUCKETS[0] == 1 and BATCH_SIZE_BUCKETS[-1] == 1024
    assert counts["1.0"] == 1
    assert counts["2.0"] == 1
    assert counts["4.0"] == 2
    assert counts["512.0"] == 2
    assert counts["1024.0"] == 3
    assert counts["+Inf"] == 4
    assert value(body, "shipway_batch_size_sum", model="iris") == 1 + 3 + 1024 + 5000


def test_prediction_scores_histogram_by_model_version() -> None:
    metrics = ServingMetrics()
    metrics.observe_scores("iris", 3, [0.0, 0.05, 0.1, 0.55, 0.97, 1.0])
    metrics.observe_scores("iris", 3, [float("nan"), float("inf"), 0.3])  # non-finite skipped
    metrics.observe_scores("iris", 4, [])  # nothing observed, no series
    body, _ = metrics.render()

    counts = buckets(body, "shipway_prediction_score", model="iris", version="3")
    assert list(counts) == [*(str(b) for b in SCORE_BUCKETS), "+Inf"]
    assert list(counts)[:4] == ["0.0", "0.1", "0.2", "0.3"]
    assert counts["0.0"] == 1
    assert counts["0.1"] == 3
    assert counts["0.3"] == 4
    assert counts["0.5"] == 4
    assert counts["0.6"] == 5
    assert counts["0.9"] == 5
    assert counts["1.0"] == 7
    assert counts["+Inf"] == 7
    assert find(body, "shipway_prediction_score_count", version="4") == []


def test_prediction_scores_are_sampled_to_a_bounded_number_per_call() -> None:
    metrics = ServingMetrics()
    metrics.observe_scores("big", 1, [i / 10_000 for i in range(10_000)])
    metrics.observe_scores("odd", 1, [0.5] * (MAX_SCORES_PER_CALL + 1))
    metrics.observe_scores("exact", 1, [0.5] * MAX_SCORES_PER_CALL)
    body, _ = metrics.render()

    assert value(body, "shipway_prediction_score_count", model="big") == MAX_SCORES_PER_CALL
    # The sample is spread over the whole batch, not its first rows.
    big = buckets(body, "shipway_prediction_score", model="big")
    assert big["0.5"] == pytest.approx(MAX_SCORES_PER_CALL / 2, abs=1)
    assert 0 < value(body, "shipway_prediction_score_count", model="odd") <= MAX_SCORES_PER_CALL
    assert value(body, "shipway_prediction_score_count", model="exact") == MAX_SCORES_PER_CALL


def test_gauges_and_counters() -> None:
    metrics = ServingMetrics()
    metrics.set_queue_depth("iris", 10)
    metrics.set_queue_depth("iris", 6)
    metrics.set_queue_depth("wine", 0)
    metrics.prediction_log_dropped("iris", 5)
    metrics.prediction_log_dropped("iris")
    metrics.prediction_log_dropped("iris", 0)
    metrics.overload_rejected("iris")
    metrics.overload_rejected("iris")
    body, _ = metrics.render()

    assert value(body, "shipway_queue_depth", model="iris") == 6
    assert value(body, "shipway_queue_depth", model="wine") == 0
    assert value(body, "shipway_prediction_log_dropped_total", model="iris") == 6
    assert value(body, "shipway_overload_rejections_total", model="iris") == 2
    assert find(body, "shipway_overload_rejections_total", model="wine") == []


def test_in_flight_requests() -> None:
    metrics = ServingMetrics()

    def in_flight() -> float:
        return value(metrics.render()[0], "shipway_requests_in_flight")

    assert in_flight() == 0
    with metrics.track_in_flight():
        assert in_flight() == 1
        with metrics.track_in_flight():
            assert in_flight() == 2
    assert in_flight() == 0
    with pytest.raises(ValueError), metrics.track_in_flight():
        raise ValueError("handler failed")
    assert in_flight() == 0
    metrics.request_started()
    metrics.request_started()
    metrics.request_finished()
    assert in_flight() == 1


def test_model_loaded_and_unloaded() -> None:
    metrics = ServingMetrics()
    metrics.set_model_loaded("iris", 3, "sklearn", 1.5)
    metrics.set_model_loaded("wine", 1, "pyfunc", 0.25)
    body, _ = metrics.render()
    assert value(body, "shipway_model_load_seconds", model="iris", version="3") == 1.5
    assert value(body, "shipway_model_info", model="iris", version="3", flavor="sklearn") == 1
    assert value(body, "shipway_model_info", model="wine", version="1", flavor="pyfunc") == 1

    metrics.set_model_loaded("iris", 4, "sklearn", 2.0)
    metrics.set_model_unloaded("iris", 3)
    metrics.set_model_unloaded("iris", 99)  # never loaded: no-op
    body, _ = metrics.render()
    assert find(body, "shipway_model_info", model="iris", version="3") == []
    assert find(body, "shipway_model_load_seconds", model="iris", version="3") == []
    assert value(body, "shipway_model_info", model="iris", version="4", flavor="sklearn") == 1
    assert value(body, "shipway_model_load_seconds", model="iris", version="4") == 2.0


def test_process_and_platform_metrics_in_single_process_mode() -> None:
    body, _ = ServingMetrics().render()
    names = metric_names(body)
    assert "python_info" in names
    if sys.platform.startswith("linux"):  # ProcessCollector reads /proc
        assert value(body, "process_resident_memory_bytes") > 0
        assert "process_cpu_seconds_total" in names
    assert "shipway_process_resident_memory_bytes" not in names  # multiprocess mode only


def test_instances_have_private_registries() -> None:
    first, second = ServingMetrics(), ServingMetrics()  # no "Duplicated timeseries" error
    first.overload_rejected("iris")
    assert value(first.render()[0], "shipway_overload_rejections_total", model="iris") == 1
    assert find(second.render()[0], "shipway_overload_rejections_total") == []
    assert first.registry is not second.registry
    assert first.registry is not REGISTRY
    assert not any(name.startswith("shipway_") for name in REGISTRY._names_to_collectors)


def test_caller_supplied_registry() -> None:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # already there: not registered twice
    metrics = ServingMetrics(registry)
    metrics.overload_rejected("iris")
    assert metrics.registry is registry
    body, _ = metrics.render()
    assert value(body, "shipway_overload_rejections_total", model="iris") == 1
    assert "python_info" in metric_names(body)


def test_render_content_types() -> None:
    metrics = ServingMetrics()
    exercise(metrics)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"# TYPE shipway_requests_total counter" in body

    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_single_process_exposition_passes_promtool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())  # lint the GPU metrics too
    metrics = ServingMetrics()
    exercise(metrics)
    body, _ = metrics.render()
    assert "shipway_gpu_utilization_ratio" in metric_names(body)
    assert_promtool_clean(body)


def test_empty_exposition_passes_promtool(no_nvml: None) -> None:
    assert_promtool_clean(ServingMetrics().render()[0])


# =============================================================================
# GPU collector
# =============================================================================


def test_gpu_metrics_absent_without_pynvml(no_nvml: None) -> None:
    metrics = ServingMetrics()
    exercise(metrics)
    names = metric_names(metrics.render()[0])
    assert not any(name.startswith("shipway_gpu_") for name in names)


@pytest.mark.parametrize(
    "nvml", [fake_nvml(fail_init=True), fake_nvml(count=0)], ids=["no-driver", "no-gpu"]
)
def test_gpu_metrics_absent_without_a_gpu(
    monkeypatch: pytest.MonkeyPatch, nvml: types.ModuleType
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    names = metric_names(ServingMetrics().render()[0])
    assert not any(name.startswith("shipway_gpu_") for name in names)


def test_gpu_metrics_read_at_scrape_time(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml(count=2)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    metrics = ServingMetrics()
    body, _ = metrics.render()
    assert value(body, "shipway_gpu_utilization_ratio", gpu="0") == pytest.approx(0.4)
    assert value(body, "shipway_gpu_utilization_ratio", gpu="1") == pytest.approx(0.5)
    assert value(body, "shipway_gpu_memory_used_bytes", gpu="0") == 2**30
    assert value(body, "shipway_gpu_memory_used_bytes", gpu="1") == 2 * 2**30

    monkeypatch.setattr(
        nvml, "nvmlDeviceGetUtilizationRates", lambda h: types.SimpleNamespace(gpu=100, memory=0)
    )
    body, _ = metrics.render()
    assert value(body, "shipway_gpu_utilization_ratio", gpu="0") == 1.0


def test_gpu_that_errors_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(count=2, broken=(1,)))
    body, _ = ServingMetrics().render()
    assert [s.labels["gpu"] for s in find(body, "shipway_gpu_memory_used_bytes")] == ["0"]

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(count=1, broken=(0,)))
    body, _ = ServingMetrics().render()
    assert not any(name.startswith("shipway_gpu_") for name in metric_names(body))


# =============================================================================
# Multiprocess mode
# =============================================================================


def test_multiprocess_dir_set_after_import_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prometheus_client (imported above without the variable) keeps values in memory, where
    # MultiProcessCollector would never see them: fail loudly instead of exposing nothing.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        ServingMetrics()


MULTIPROCESS_DRIVER = textwrap.dedent(
    """
    import json
    import multiprocessing
    import os
    import sys

    from shipway.serving.metrics import ServingMetrics


    def worker(requests, ready, done):
        metrics = ServingMetrics()
        for _ in range(requests):
            metrics.observe_request("iris", "/predict", 200, 0.002)
        metrics.observe_batch("iris", requests)
        metrics.observe_scores("iris", 3, [0.95] * requests)
        metrics.set_queue_depth("iris", requests)
        metrics.set_model_loaded("iris", 3, "sklearn", float(requests))
        metrics.prediction_log_dropped("iris", requests)
        metrics.request_started()  # still in flight while the parent scrapes
        ready.set()
        done.wait(60)


    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        done = ctx.Event()
        workers = []
        for requests in (3, 5):
            ready = ctx.Event()
            process = ctx.Process(target=worker, args=(requests, ready, done))
            process.start()
            if not ready.wait(60):
                sys.exit("worker did not start")
            workers.append(process)
        metrics = ServingMetrics()  # the process that serves /metrics
        live, content_type = metrics.render()
        done.set()
        for process in workers:
            process.join(60)
            ServingMetrics.mark_process_dead(process.pid)
        after, _ = metrics.render()
        print(json.dumps({
            "live": live.decode(),
            "after": after.decode(),
            "content_type": content_type,
            "multiprocess": metrics.multiprocess,
            "pid": os.getpid(),
        }))
    """
)


@pytest.mark.slow
def test_multiprocess_mode_aggregates_worker_processes(tmp_path: Path) -> None:
    multiproc_dir = tmp_path / "prometheus-multiproc"
    multiproc_dir.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(MULTIPROCESS_DRIVER)
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    proc = subprocess.run(
        [sys.executable, str(driver)], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["multiprocess"] is True
    assert any(multiproc_dir.glob("counter_*.db"))
    live, after = out["live"], out["after"]

    # Counters and histograms: the sum over both workers (3 + 5).
    assert value(live, "shipway_requests_total", model="iris", status="200") == 8
    assert value(live, "shipway_request_duration_seconds_count", model="iris") == 8
    assert buckets(live, "shipway_request_duration_seconds", model="iris")["0.0025"] == 8
    assert value(live, "shipway_batch_size_count", model="iris") == 2
    assert buckets(live, "shipway_batch_size", model="iris")["4.0"] == 1
    assert value(live, "shipway_prediction_score_count", model="iris", version="3") == 8
    assert value(live, "shipway_prediction_log_dropped_total", model="iris") == 8
    # Gauges: live sums / maxima.
    assert value(live, "shipway_requests_in_flight") == 2
    assert value(live, "shipway_queue_depth", model="iris") == 8
    assert value(live, "shipway_model_load_seconds", model="iris", version="3") == 5
    assert value(live, "shipway_model_info", model="iris", version="3", flavor="sklearn") == 1
    # Memory of the scraped process via psutil; ProcessCollector does not work across processes.
    rss = find(live, "shipway_process_resident_memory_bytes")
    assert [s.labels["pid"] for s in rss] == [str(out["pid"])]
    assert rss[0].value > 0
    assert "process_resident_memory_bytes" not in metric_names(live)
    assert out["content_type"].startswith("text/plain")
    assert_promtool_clean(live.encode())

    # Workers gone (and marked dead): their counters stay, their live gauges go.
    assert value(after, "shipway_requests_total", model="iris", status="200") == 8
    assert value(after, "shipway_requests_in_flight") == 0
    assert find(after, "shipway_queue_depth") == []
    assert find(after, "shipway_model_info") == []
