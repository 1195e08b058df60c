"""Adaptive micro-batching: concurrent requests for one model become one predict call.

The batcher never waits when the model is idle and nobody else is on the way: a lone request
is predicted at once. While a predict call runs, new requests queue up, and the next call takes
all of them, up to `max_batch_size` rows. When requests are known to be arriving (their bodies
are being parsed), it holds a batch open for at most `max_latency_ms` to let them join. The
queue is bounded: past `max_queue_rows` a request is refused with `OverloadedError` (HTTP 503
with Retry-After) rather than queued without bound. Each caller gets exactly its own rows back,
in order.

The batches are taken by the predict thread itself, not by a task on the event loop: the moment
one predict call returns, the thread takes what queued meanwhile and calls again. Going back to
a busy event loop between two calls kept the model idle for part of every cycle (a model process
busy 85% of the time at 64 connections, 93% since). The event loop only queues requests and,
once per batch, hands the answers to their callers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shipway.errors import OverloadedError

log = logging.getLogger("shipway.serving")

Columns = dict[str, list[Any]]
# predict(columns, rows) -> per-row outputs: {"predictions": [...], "probabilities": [...]}
PredictFn = Callable[[Columns, int], dict[str, list[Any]]]


@dataclass
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[dict[str, list[Any]]]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int = 64,
        max_latency_ms: float = 5.0,
        max_queue_rows: int = 2048,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        executor: Executor | None = None,
    ) -> None:
        """`executor`: whose (single) thread runs the batching loop and the model, for as long
        as the batcher runs; the model's own predict thread, so its native pools are the warm
        ones. Calls run on the thread; `on_batch` and `on_queue` must be thread-safe."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000
        self.max_queue_rows = max_queue_rows
        self.on_batch = on_batch or (lambda rows: None)
        self.on_queue = on_queue or (lambda rows: None)
        # Guards the queue, its row count and the count of arriving requests; waited on by the
        # predict thread for work (and for arriving requests to join).
        self._cond = threading.Condition()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._arriving = 0
        self._closing = False
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="shipway-predict")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: Future[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = self._executor.submit(self._run)

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Wrap the parsing of a request body, so the batcher knows more rows are on the way."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify()

    async def submit(self, columns: Columns, rows: int) -> dict[str, list[Any]]:
        if self._closing:
            raise OverloadedError("The server is shutting down.", "Retry on another replica.")
        future: asyncio.Future[dict[str, list[Any]]] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._queued_rows + rows > self.max_queue_rows and self._pending:
                raise OverloadedError(
                    f"The model's queue is full ({self._queued_rows} rows waiting).",
                    "Retry after a short pause.",
                )
            self._pending.append(_Pending(columns, rows, future))
            self._queued_rows += rows
            queued = self._queued_rows
            self._cond.notify()
        self.on_queue(queued)
        return await future

    def _take(self) -> list[_Pending]:
        """The next batch: waits for work, then (while requests are known to be arriving) for
        the batch to fill, at most `max_latency` after its first request queued. Empty when
        the batcher is closing and nothing is left. Holds the lock only while it waits
        (which releases it) or moves requests."""
        with self._cond:
            while not self._pending:
                if self._closing:
                    return []
                self._cond.wait()
            deadline = self._pending[0].enqueued + self.max_latency
            while self._arriving > 0 and self._queued_rows < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[_Pending] = []
            rows = 0
            while self._pending:
                nxt = self._pending[0]
                if batch and rows + nxt.rows > self.max_batch_size:
                    break
                batch.append(self._pending.popleft())
                rows += nxt.rows
            self._queued_rows -= rows
            queued = self._queued_rows
        self.on_queue(queued)
        return batch

    def _run(self) -> None:
        """The predict thread's loop, until the batcher closes and its queue is empty."""
        while batch := self._take():
            try:
                self._execute(batch)
            except BaseException as exc:  # a failing callback must not strand the callers
                self._answer([(p.future, None, exc) for p in batch])
                if not isinstance(exc, Exception):
                    raise

    def _execute(self, batch: list[_Pending]) -> None:
        rows = sum(p.rows for p in batch)
        self.on_batch(rows)
        if len(batch) == 1:
            merged = batch[0].columns
        else:
            merged = {k: [v for p in batch for v in p.columns[k]] for k in batch[0].columns}
        try:
            result = self.predict(merged, rows)
        except Exception as exc:
            if len(batch) == 1:
                self._answer([(batch[0].future, None, exc)])
                return
            # One request's rows may have upset the model: retry each alone, so one caller's
            # failure is not everyone's.
            log.warning("batch of %d requests failed (%s); retrying one by one", len(batch), exc)
            for p in batch:
                self._execute([p])
            return
        answers: list[_Answer] = []
        start = 0
        for p in batch:
            answers.append(
                (p.future, {k: v[start : start + p.rows] for k, v in result.items()}, None)
            )
            start += p.rows
        self._answer(answers)

    def _answer(self, answers: list[_Answer]) -> None:
        """Hand a batch's answers to its callers, in one turn of the event loop."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(_settle_all, answers)

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        with self._cond:
            self._cond.notify_all()
        if self._running is not None:
            await asyncio.wrap_future(self._running)
        if self._own_executor:
            self._executor.shutdown(wait=True)


# A caller's future, and its rows' outputs or the exception it gets instead.
_Answer = tuple[
    "asyncio.Future[dict[str, list[Any]]]", dict[str, list[Any]] | None, BaseException | None
]


def _settle_all(answers: list[_Answer]) -> None:
    for future, result, exc in answers:
        if future.done():  # the caller went away (timeout or disconnect)
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result or {})
