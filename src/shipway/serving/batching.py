"""Adaptive micro-batching: concurrent requests for one model become one predict call.

The batcher never waits when the model is idle and nobody else is on the way: a lone request
is predicted at once. While a predict call runs (in a worker thread, so the event loop keeps
reading requests), new requests queue up, and the next call takes all of them, up to
`max_batch_size` rows. When requests are known to be arriving (their bodies are being parsed),
it holds a batch open for at most `max_latency_ms` to let them join. The queue is bounded: past
`max_queue_rows` a request is refused with `OverloadedError` (HTTP 503 with Retry-After) rather
than queued without bound. Each caller gets exactly its own rows back, in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
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
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000
        self.max_queue_rows = max_queue_rows
        self.on_batch = on_batch or (lambda rows: None)
        self.on_queue = on_queue or (lambda rows: None)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._arriving = 0
        self._wakeup = asyncio.Event()  # work is queued
        self._arrived = asyncio.Event()  # a request joined the queue (or stopped arriving)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="shipway-predict")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shipway-batcher")

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Wrap the parsing of a request body, so the batcher knows more rows are on the way."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._arrived.set()

    async def submit(self, columns: Columns, rows: int) -> dict[str, list[Any]]:
        if self._closing:
            raise OverloadedError("The server is shutting down.", "Retry on another replica.")
        if self._queued_rows + rows > self.max_queue_rows and self._pending:
            raise OverloadedError(
                f"The model's queue is full ({self._queued_rows} rows waiting).",
                "Retry after a short pause.",
            )
        future: asyncio.Future[dict[str, list[Any]]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(columns, rows, future))
        self._queued_rows += rows
        self.on_queue(self._queued_rows)
        self._wakeup.set()
        self._arrived.set()
        return await future

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._pending:
            nxt = self._pending[0]
            if batch and rows + nxt.rows > self.max_batch_size:
                break
            batch.append(self._pending.popleft())
            rows += nxt.rows
        self._queued_rows -= rows
        self.on_queue(self._queued_rows)
        return batch

    async def _gather(self) -> None:
        """Hold the batch open briefly while requests are known to be arriving.

        It sleeps on an event that `submit` sets, never spins: on a small machine the predict
        thread needs the GIL time a busy loop would burn.
        """
        deadline = self._pending[0].enqueued + self.max_latency
        while self._arriving > 0 and self._queued_rows < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather()
            batch = self._take()
            await self._execute(loop, batch)

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        rows = sum(p.rows for p in batch)
        self.on_batch(rows)
        if len(batch) == 1:
            merged = batch[0].columns
        else:
            merged = {k: [v for p in batch for v in p.columns[k]] for k in batch[0].columns}
        try:
            result = await loop.run_in_executor(self._executor, self.predict, merged, rows)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exc=exc)
                return
            # One request's rows may have upset the model: retry each alone, so one caller's
            # failure is not everyone's.
            log.warning("batch of %d requests failed (%s); retrying one by one", len(batch), exc)
            for p in batch:
                await self._execute(loop, [p])
            return
        start = 0
        for p in batch:
            _settle(p.future, {k: v[start : start + p.rows] for k, v in result.items()})
            start += p.rows

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._own_executor:
            self._executor.shutdown(wait=True)


def _settle(
    future: asyncio.Future[dict[str, list[Any]]],
    result: dict[str, list[Any]] | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():  # the caller went away (timeout or disconnect)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result or {})
