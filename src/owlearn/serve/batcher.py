"""Micro-batching: concurrent requests answered by one batched call in one worker thread.

A small network spends most of a one-image forward pass on fixed per-call overhead (a 28×28 digit:
~3 ms for one image, ~6 ms for sixteen on one core), so under concurrent load answering requests one
by one wastes most of the CPU. Requests are put on a queue; a single gatherer task takes whatever is
waiting (after an optional short wait for stragglers) and hands the batch to one dedicated thread.
While that thread computes, the event loop keeps accepting requests, which form the next batch, so
batches grow with the load by themselves and the event loop is never blocked by model work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(RuntimeError):
    """More requests are waiting than the batcher accepts; the caller should answer 503."""


class MicroBatcher(Generic[T, R]):
    """Gather items submitted concurrently and process them with ``run(items)`` in batches.

    ``run`` is called in one dedicated thread, one batch at a time, and returns one result per item:
    a value, or an exception instance that is raised to that item's submitter alone (so one bad image
    fails its own request, not its batch-mates).
    """

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R | BaseException]], *, max_batch: int = 64,
                 max_wait: float = 0.0, max_pending: int = 2048, on_thread_start: Callable[[], Any] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.run, self.max_batch, self.max_wait, self.max_pending = run, max_batch, max_wait, max_pending
        self._on_thread_start = on_thread_start
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # counters for tests and diagnostics
        self.items = 0

    async def start(self) -> None:
        """Start the gatherer on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="owlearn-batch",
                                            initializer=self._on_thread_start)
        self._task = asyncio.get_running_loop().create_task(self._gather(), name="owlearn-batcher")

    async def stop(self) -> None:
        """Stop gathering; requests still waiting get an error rather than hanging."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue is not None and not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(Overloaded("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, item: T) -> R:
        """The result for ``item``, computed in a batch with whatever else is waiting."""
        if self._queue is None or self._task is None:
            raise RuntimeError("MicroBatcher.start() has not been called")
        if self._queue.qsize() >= self.max_pending:
            raise Overloaded(f"more than {self.max_pending} predictions are waiting")
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            if self.max_wait > 0 and queue.qsize() + 1 < self.max_batch:
                await asyncio.sleep(self.max_wait)  # let requests already on the wire join this batch
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            # a submitter that went away (client disconnected) needs no answer
            batch = [(item, fut) for item, fut in batch if not fut.done()]
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.run, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(Overloaded("the service is shutting down"))
                raise
            except Exception as exc:  # noqa: BLE001 — a failed batch fails its requests, never the gatherer
                results = [exc] * len(batch)
            self.batches += 1
            self.items += len(batch)
            for (_, fut), result in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
