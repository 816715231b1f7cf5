"""One thread owns the model: every model operation of the server runs here, one at a time.

That serialises access to the single shared base model (whose active adapter changes per request), and
it batches for free: while one operation runs, new requests queue up; the next round takes every queued
request with the same batch key (same model, same parameters) and runs them as one batch. Keys take turns
(round-robin), so requests for one model never wait behind a queue of another's.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Job:
    key: Hashable | None  # None: never batched
    fn: Callable[[list[Any]], list[Any]]  # items -> one result per item
    item: Any
    future: Future = field(default_factory=Future)


class ModelWorker:
    def __init__(self, max_batch: int = 32):
        self.max_batch = max_batch
        self.batches = 0  # rounds run (tests and the benchmark read how well requests were batched)
        self.items = 0
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._pending: deque[_Job] = deque()
        self._last: Hashable | None = None  # batch key of the last round
        self._thread = threading.Thread(target=self._loop, name="tunewise-model", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable | None, fn: Callable[[list[Any]], list[Any]], item: Any) -> Future:
        """Run fn([item, ...same-key items...]) on the model thread; the future gets this item's result."""
        job = _Job(key, fn, item)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run fn() alone on the model thread (loading an adapter, a streamed generation, ...)."""
        return self.submit(None, lambda items: [fn()], None)

    def _next_batch(self) -> list[_Job]:
        if not self._pending:
            self._pending.append(self._queue.get())
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        # Round-robin over models: the oldest request of another batch key than the last round's goes first,
        # so one busy adapter's queue does not starve the others (each round still takes all of one key).
        turn = next((i for i, job in enumerate(self._pending) if job.key is None or job.key != self._last), 0)
        head = self._pending[turn]
        del self._pending[turn]
        self._last = head.key
        batch = [head]
        if head.key is not None:
            rest = deque()
            while self._pending:
                job = self._pending.popleft()
                (batch if job.key == head.key and len(batch) < self.max_batch else rest).append(job)
            self._pending = rest
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batches += 1
            self.items += len(live)
            try:
                results = live[0].fn([job.item for job in live])
                for job, result in zip(live, results, strict=True):
                    job.future.set_result(result)
            except BaseException as err:  # the error goes to each waiting request; the thread lives on
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(err)
