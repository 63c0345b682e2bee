"""Micro-batching: requests that arrive together go through the model as one batch.

MTCNN and the classifier cost about 5x less per image in batches of 16 than one by one on
2 cores, so concurrent web requests are worth gathering. One worker thread takes the first
waiting item, waits at most `max_wait` seconds for more (up to `max_batch`), and hands the
batch to `run`. Items that arrived while a batch was running are picked up at once, so the
wait only costs anything when the server is idle.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class _Job:
    item: object
    future: Future = field(default_factory=Future)


class Batcher:
    """Runs `run(items)` on batches from one worker thread; `submit` returns a Future.

    `run` yields (index, result) pairs in any order, so a fast result need not wait for a
    slow one in the same batch. A batch that raises is retried one item at a time, so one
    bad item fails only its own request.
    """

    def __init__(self, run: Callable[[list], Iterable[tuple[int, object]]], max_batch: int = 16,
                 max_wait: float = 0.005):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.seconds_per_item = 0.0  # moving average, for Retry-After estimates
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="fakeface-batcher", daemon=True)
        self._thread.start()

    def submit(self, item) -> Future:
        """Queue one item; cancel the returned Future to drop it if it has not started."""
        job = _Job(item)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Finish the items already queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, deadline = [first], time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                return
            jobs, closing = self._gather(first)
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if jobs:
                started = time.monotonic()
                self._run(jobs)
                per_item = (time.monotonic() - started) / len(jobs)
                self.seconds_per_item = 0.8 * self.seconds_per_item + 0.2 * per_item

    def _run(self, jobs: list[_Job]) -> None:
        try:
            for index, result in self.run([job.item for job in jobs]):
                jobs[index].future.set_result(result)
        except Exception as exc:  # noqa: BLE001 - isolate the item that broke the batch
            pending = [job for job in jobs if not job.future.done()]
            if len(jobs) > 1:
                for job in pending:
                    self._run([job])
            else:
                for job in pending:
                    job.future.set_exception(exc)
