"""Micro-batching: correct answers under concurrency, bounded queues, isolated model failures.

Server-level tests run a real uvicorn server and send concurrent requests with
httpx.AsyncClient; unit-level tests drive `shipway.serving.batching.Batcher` directly with a
fake predict function.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving_helpers import (
    FEATURES,
    credit_frame,
    live_server,
    records,
    register_toy,
    shipway_env,
    toy_expected,
    toy_frame,
    train_credit,
)
from shipway.errors import OverloadedError
from shipway.serving import ServerSettings, create_app
from shipway.serving.app import _wait_for
from shipway.serving.batching import Batcher

POISON = 999.5  # the value of x that makes the failing ToyModel raise
SLOW = 777.25  # and the value that makes its call take half a second


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    with shipway_env(tmp_path_factory.mktemp("serving-batching") / "home"):
        _, model, _ = train_credit()
        register_toy("slow", delay=0.05)
        register_toy("flaky", fail_on=POISON, slow_on=SLOW, slow_delay=0.5)
        rows = credit_frame(1200, seed=11)[FEATURES].reset_index(drop=True)
        yield SimpleNamespace(model=model, rows=rows)


def jsonable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in records(frame)
    ]


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def split_sizes(total_requests: int, seed: int, low: int = 1, high: int = 5) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(k) for k in rng.integers(low, high + 1, total_requests)]


async def post_all(
    url: str, path: str, bodies: list[Any], *, timeout: float = 60
) -> list[httpx.Response]:
    """POST every body at once; the whole lot must finish within `timeout` seconds."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        return await asyncio.wait_for(
            asyncio.gather(*(client.post(path, json=b) for b in bodies)), timeout
        )


# =============================================================================
# A real server under concurrent load
# =============================================================================


def test_concurrent_requests_each_get_their_own_rows(env: SimpleNamespace) -> None:
    sizes = split_sizes(200, seed=5)
    starts = np.cumsum([0, *sizes[:-1]])
    assert sum(sizes) <= len(env.rows)
    frames = [env.rows.iloc[s : s + k] for s, k in zip(starts, sizes, strict=True)]
    app = create_app(["models:/credit/1"])
    with live_server(app) as url:
        before = httpx.get(f"{url}/metrics").text
        answers = asyncio.run(post_all(url, "/predict", [jsonable(f) for f in frames]))
        after = httpx.get(f"{url}/metrics").text

    all_ids: list[str] = []
    for frame, r in zip(frames, answers, strict=True):
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["ids"]) == len(frame)
        assert body["predictions"] == env.model.predict(frame).tolist()
        assert np.allclose(body["probabilities"], env.model.predict_proba(frame), atol=1e-12)
        all_ids += body["ids"]
    assert len(set(all_ids)) == sum(sizes)

    count = metric(after, "shipway_batch_size_count", model="credit") - metric(
        before, "shipway_batch_size_count", model="credit"
    )
    rows = metric(after, "shipway_batch_size_sum", model="credit") - metric(
        before, "shipway_batch_size_sum", model="credit"
    )
    assert rows == sum(sizes)  # every row predicted exactly once
    assert count < len(frames)  # so some predict call held more than one request's rows
    assert rows > count
    assert metric(after, "shipway_queue_depth", model="credit") == 0
    assert metric(after, "shipway_requests_total", status="200", model="credit") >= 200


def test_request_larger_than_max_batch_size_is_answered_whole(env: SimpleNamespace) -> None:
    big = env.rows.iloc[:25]
    smalls = [env.rows.iloc[100 + 2 * i : 102 + 2 * i] for i in range(30)]
    frames = [*smalls[:15], big, *smalls[15:]]
    app = create_app(["models:/credit/1"], ServerSettings(max_batch_size=4))
    with live_server(app) as url:
        answers = asyncio.run(post_all(url, "/predict", [jsonable(f) for f in frames]))
        text = httpx.get(f"{url}/metrics").text
    for frame, r in zip(frames, answers, strict=True):
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == env.model.predict(frame).tolist()
        assert np.allclose(r.json()["probabilities"], env.model.predict_proba(frame))
    # max_batch_size is respected: only the one oversized request made a call above 4 rows.
    total = metric(text, "shipway_batch_size_count", model="credit")
    up_to_4 = metric(text, "shipway_batch_size_bucket", model="credit", le="4.0")
    assert total - up_to_4 == 1
    assert metric(text, "shipway_batch_size_bucket", model="credit", le="16.0") == up_to_4
    assert metric(text, "shipway_batch_size_sum", model="credit") == 25 + 60


def test_overload_answers_503_with_retry_after_and_never_500(env: SimpleNamespace) -> None:
    frame = toy_frame(300, seed=4).iloc[1:]  # row 0 has a null rate
    sizes = split_sizes(100, seed=9, low=1, high=2)
    starts = np.cumsum([0, *sizes[:-1]])
    frames = [frame.iloc[s : s + k] for s, k in zip(starts, sizes, strict=True)]
    settings = ServerSettings(max_queue_rows=8, max_batch_size=4)
    app = create_app(["models:/slow/1"], settings)
    with live_server(app) as url:
        started = time.monotonic()
        answers = asyncio.run(post_all(url, "/predict", [jsonable(f) for f in frames], timeout=60))
        elapsed = time.monotonic() - started
        text = httpx.get(f"{url}/metrics").text
        # The server recovers: a request after the burst is answered.
        r = httpx.post(f"{url}/predict", json=jsonable(frames[0]), timeout=30)
        assert r.status_code == 200

    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503}, statuses
    rejected = [r for r in answers if r.status_code == 503]
    served = [(f, r) for f, r in zip(frames, answers, strict=True) if r.status_code == 200]
    assert rejected and served, statuses
    for r in rejected:
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"].startswith("application/json")
        assert "queue is full" in r.json()["error"]
    for f, r in served:
        assert np.allclose(r.json()["predictions"], toy_expected(f))
        assert len(r.json()["ids"]) == len(f)
    # Served rows ran at most 4 per 50 ms call; refusing the rest kept the burst short.
    assert elapsed < 30
    assert metric(text, "shipway_overload_rejections_total", model="slow") == len(rejected)
    assert metric(text, "shipway_requests_total", model="slow", status="503") == len(rejected)
    assert metric(text, "shipway_requests_total", model="slow", status="200") == len(served)
    assert metric(text, "shipway_queue_depth", model="slow") == 0
    assert metric(text, "shipway_batch_size_bucket", model="slow", le="4.0") == metric(
        text, "shipway_batch_size_count", model="slow"
    )


def test_model_failure_on_one_request_spares_the_rest_of_its_batch(
    env: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    frame = toy_frame(80, seed=6).iloc[1:]
    goods = [frame.iloc[2 * i : 2 * i + 2] for i in range(20)]
    goods[0] = goods[0].copy()
    goods[0].iloc[0, goods[0].columns.get_loc("x")] = SLOW
    bad = frame.iloc[60:62].copy()
    bad.iloc[1, bad.columns.get_loc("x")] = POISON
    app = create_app(["models:/flaky/1"])

    async def burst(url: str) -> tuple[list[httpx.Response], httpx.Response]:
        limits = httpx.Limits(max_connections=30)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            first = asyncio.create_task(client.post("/predict", json=jsonable(goods[0])))
            await asyncio.sleep(0.05)  # the first call (0.5 s) runs: the rest queue behind it
            rest = [client.post("/predict", json=jsonable(g)) for g in goods[1:]]
            rest.insert(7, client.post("/predict", json=jsonable(bad)))
            answers = await asyncio.wait_for(asyncio.gather(first, *rest), 60)
        bad_answer = answers.pop(8)
        return answers, bad_answer

    with caplog.at_level(logging.WARNING, logger="shipway.serving"), live_server(app) as url:
        answers, bad_answer = asyncio.run(burst(url))
        text = httpx.get(f"{url}/metrics").text
        # The server keeps serving after the model raised.
        r = httpx.post(f"{url}/predict", json=jsonable(goods[3]), timeout=30)
        assert r.status_code == 200

    assert bad_answer.status_code == 500, bad_answer.text
    assert bad_answer.headers["content-type"].startswith("application/json")
    assert isinstance(bad_answer.json()["error"], str)
    for g, r in zip(goods, answers, strict=True):
        assert r.status_code == 200, r.text
        assert np.allclose(r.json()["predictions"], toy_expected(g))
    # The bad request did share a batch with good ones, which was then retried one by one.
    assert "retrying one by one" in caplog.text
    assert metric(text, "shipway_requests_total", model="flaky", status="500") == 1
    assert metric(text, "shipway_requests_total", model="flaky", status="200") == 20


# =============================================================================
# Batcher, unit level (plain asyncio, fake predict function)
# =============================================================================


class FakeModel:
    """predict(columns, rows): 10 * x per row, `x` squared as a second output. Records every
    call's rows; optionally blocks each call until `gate` is set, or raises on `poison`."""

    def __init__(self, gate: threading.Event | None = None, poison: int | None = None) -> None:
        self.gate = gate
        self.poison = poison
        self.calls: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, columns: dict[str, list[Any]], rows: int) -> dict[str, list[Any]]:
        xs = columns["x"]
        assert len(xs) == rows
        with self.lock:
            self.calls.append(list(xs))
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.poison is not None and self.poison in xs:
            raise ValueError("poisoned")
        return {"predictions": [10 * x for x in xs], "squares": [x * x for x in xs]}


def request(first: int, n: int) -> dict[str, list[Any]]:
    return {"x": list(range(first, first + n))}


def expected(first: int, n: int) -> dict[str, list[Any]]:
    xs = list(range(first, first + n))
    return {"predictions": [10 * x for x in xs], "squares": [x * x for x in xs]}


async def wait_until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def behind_a_busy_model(
    b: Batcher, fake: FakeModel, plan: list[tuple[int, int]], busy_rows: int = 1
) -> list[asyncio.Task[dict[str, list[Any]]]]:
    """Submit `busy_rows` rows from x=0, which hold the gated model, then queue `plan` (first
    x, rows) behind them; the futures of all, the busy one first, once every planned row is
    queued."""
    futures = [asyncio.ensure_future(b.submit(request(0, busy_rows), busy_rows))]
    await wait_until(lambda: len(fake.calls) == 1)  # the lone request went at once
    futures += [asyncio.ensure_future(b.submit(request(f, n), n)) for f, n in plan]
    await wait_until(lambda: b._queued_rows == sum(n for _, n in plan))
    return futures


def test_batcher_each_caller_gets_its_own_rows_in_order() -> None:
    fake = FakeModel()
    sizes = split_sizes(120, seed=1, low=1, high=6)
    firsts = np.cumsum([0, *sizes[:-1]]).tolist()

    async def main() -> list[dict[str, list[Any]]]:
        b = Batcher(fake, max_batch_size=16, max_latency_ms=2)
        b.start()
        try:
            return await asyncio.gather(
                *(b.submit(request(f, n), n) for f, n in zip(firsts, sizes, strict=True))
            )
        finally:
            await b.close()

    results = asyncio.run(main())
    for f, n, result in zip(firsts, sizes, results, strict=True):
        assert result == expected(f, n)
    seen = sorted(x for call in fake.calls for x in call)
    assert seen == list(range(sum(sizes)))  # every row predicted exactly once
    assert len(fake.calls) < len(sizes)  # and calls were shared


def test_batcher_merges_queued_requests_and_splits_the_answer() -> None:
    gate = threading.Event()
    fake = FakeModel(gate)
    batches: list[int] = []

    async def main() -> None:
        b = Batcher(fake, max_batch_size=100, max_latency_ms=0, on_batch=batches.append)
        b.start()
        first, *queued = await behind_a_busy_model(b, fake, [(100 * i, i) for i in (2, 3, 4)])
        gate.set()
        assert await first == expected(0, 1)
        for i, fut in zip((2, 3, 4), queued, strict=True):
            assert await fut == expected(100 * i, i)
        await b.close()

    asyncio.run(main())
    assert fake.calls == [[0], [200, 201, 300, 301, 302, 400, 401, 402, 403]]
    assert batches == [1, 9]


def test_batcher_respects_max_batch_size_and_passes_big_requests_whole() -> None:
    gate = threading.Event()
    fake = FakeModel(gate)

    async def main() -> None:
        b = Batcher(fake, max_batch_size=5, max_latency_ms=0)
        b.start()
        plan = [(100, 2), (200, 2), (300, 2), (400, 12), (500, 1), (600, 4), (700, 1)]
        futures = await behind_a_busy_model(b, fake, plan)
        gate.set()
        results = await asyncio.gather(*futures)
        for (f, n), result in zip([(0, 1), *plan], results, strict=True):
            assert result == expected(f, n)
        await b.close()

    asyncio.run(main())
    sizes = [len(c) for c in fake.calls]
    # FIFO: 2+2 (the next 2 would make 6), 2, then 12 alone (over the limit but whole),
    # 1+4, 1.
    assert sizes == [1, 4, 2, 12, 5, 1]
    assert fake.calls[4] == [500, 600, 601, 602, 603]


def test_batcher_goes_from_batch_to_batch_without_the_event_loop() -> None:
    # The predict thread takes the next batch itself: a busy event loop (here, blocked
    # outright) does not leave the model idle while requests are queued.
    gate = threading.Event()
    fake = FakeModel(gate)

    async def main() -> None:
        b = Batcher(fake, max_batch_size=2, max_latency_ms=0)
        b.start()
        futures = await behind_a_busy_model(b, fake, [(10, 2), (20, 2)])
        gate.set()
        deadline = time.monotonic() + 5
        while len(fake.calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # blocks the event loop on purpose
        assert fake.calls == [[0], [10, 11], [20, 21]]
        results = await asyncio.gather(*futures)
        assert results == [expected(0, 1), expected(10, 2), expected(20, 2)]
        await b.close()

    asyncio.run(main())


def test_batcher_a_failing_callback_fails_its_batch_not_the_batcher() -> None:
    fake = FakeModel()
    seen: list[int] = []

    def on_batch(rows: int) -> None:
        seen.append(rows)
        if len(seen) == 1:
            raise RuntimeError("metrics broke")

    async def main() -> None:
        b = Batcher(fake, max_latency_ms=0, on_batch=on_batch)
        b.start()
        with pytest.raises(RuntimeError, match="metrics broke"):
            await asyncio.wait_for(b.submit(request(0, 1), 1), 5)
        assert await asyncio.wait_for(b.submit(request(5, 2), 2), 5) == expected(5, 2)
        await b.close()

    asyncio.run(main())
    assert seen == [1, 2]


def test_batcher_lone_request_is_not_delayed() -> None:
    fake = FakeModel()

    async def main() -> float:
        b = Batcher(fake, max_batch_size=64, max_latency_ms=10_000)
        b.start()
        started = time.perf_counter()
        assert await b.submit(request(3, 2), 2) == expected(3, 2)
        elapsed = time.perf_counter() - started
        await b.close()
        return elapsed

    assert asyncio.run(main()) < 3.0  # not held open for the 10 s a batch may wait


def test_batcher_holds_the_batch_open_while_requests_are_arriving() -> None:
    fake = FakeModel()

    async def main() -> None:
        b = Batcher(fake, max_batch_size=64, max_latency_ms=2000)
        b.start()

        async def late() -> dict[str, list[Any]]:
            # As the server does: parse the body inside arriving(), then submit at once
            # (through the same timeout wrapper).
            with b.arriving():
                await asyncio.sleep(0.05)  # a slow body
            result: dict[str, list[Any]] = await _wait_for(b.submit(request(10, 3), 3), 10)
            return result

        second = asyncio.ensure_future(late())
        await asyncio.sleep(0)
        first = await b.submit(request(0, 2), 2)
        assert first == expected(0, 2)
        assert await second == expected(10, 3)
        await b.close()

    asyncio.run(main())
    assert fake.calls == [[0, 1, 10, 11, 12]]


def test_batcher_holds_the_batch_open_no_longer_than_max_latency() -> None:
    fake = FakeModel()

    async def main() -> float:
        b = Batcher(fake, max_batch_size=64, max_latency_ms=100)
        b.start()
        with b.arriving():  # a request that never finishes arriving
            started = time.perf_counter()
            assert await b.submit(request(0, 2), 2) == expected(0, 2)
            elapsed = time.perf_counter() - started
        await b.close()
        return elapsed

    assert 0.09 < asyncio.run(main()) < 2.0


def test_batcher_queue_limit_refuses_with_overloaded_error() -> None:
    gate = threading.Event()
    fake = FakeModel(gate)
    depths: list[int] = []

    async def main() -> None:
        b = Batcher(fake, max_batch_size=4, max_queue_rows=5, on_queue=depths.append)
        b.start()
        running, *queued = await behind_a_busy_model(b, fake, [(10, 2), (20, 2)], busy_rows=3)
        with pytest.raises(OverloadedError, match="queue is full"):
            await b.submit(request(50, 2), 2)  # 4 + 2 > 5
        extra = asyncio.ensure_future(b.submit(request(60, 1), 1))  # 4 + 1 still fits
        await wait_until(lambda: b._queued_rows == 5)
        assert not extra.done()
        gate.set()
        assert await running == expected(0, 3)
        assert [await q for q in queued] == [expected(10, 2), expected(20, 2)]
        assert await extra == expected(60, 1)
        await b.close()

    asyncio.run(main())
    assert depths[-1] == 0 and max(depths) == 5


def test_batcher_big_request_is_accepted_when_the_queue_is_empty() -> None:
    fake = FakeModel()

    async def main() -> None:
        b = Batcher(fake, max_batch_size=4, max_queue_rows=5)
        b.start()
        assert await b.submit(request(0, 9), 9) == expected(0, 9)
        await b.close()

    asyncio.run(main())


def test_batcher_failing_batch_is_retried_one_by_one() -> None:
    gate = threading.Event()
    fake = FakeModel(gate, poison=666)

    async def main() -> None:
        b = Batcher(fake, max_batch_size=64)
        b.start()
        first, good1, bad, good2 = await behind_a_busy_model(b, fake, [(10, 2), (665, 2), (20, 3)])
        gate.set()
        assert await first == expected(0, 1)
        assert await good1 == expected(10, 2)
        assert await good2 == expected(20, 3)
        with pytest.raises(ValueError, match="poisoned"):
            await bad
        await b.close()

    asyncio.run(main())
    assert fake.calls == [[0], [10, 11, 665, 666, 20, 21, 22], [10, 11], [665, 666], [20, 21, 22]]


def test_batcher_close_drains_queued_work_then_refuses() -> None:
    gate = threading.Event()
    fake = FakeModel(gate)

    async def main() -> None:
        b = Batcher(fake, max_batch_size=3)
        b.start()
        plan = [(10 * i, 2) for i in range(1, 6)]
        futures = await behind_a_busy_model(b, fake, plan, busy_rows=2)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.02)
        assert not closing.done()  # close() waits for the queue
        with pytest.raises(OverloadedError, match="shutting down"):
            await b.submit(request(99, 1), 1)
        gate.set()
        await asyncio.wait_for(closing, 10)
        assert all(f.done() for f in futures)
        results = [f.result() for f in futures]
        assert results == [expected(10 * i, 2) for i in range(6)]

    asyncio.run(main())
    assert sum(len(c) for c in fake.calls) == 12
    assert all(len(c) <= 3 for c in fake.calls)


def test_batcher_rejects_a_zero_batch_size() -> None:
    with pytest.raises(ValueError):
        Batcher(FakeModel(), max_batch_size=0)
