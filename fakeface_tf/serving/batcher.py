"""Micro-batching: requests that arrive together go through the model as one batch.

MTCNN and the classifier cost about 5x less per image in batches of 16 than one by one on
2 cores, so concurrent web requests are worth gathering. One worker thread takes the first
waiting item, waits at most `max_wait` seconds for more (up to `max_batch`), and hands the
batch to `run`. Items that arrived while a batch was running are picked up at once, so the
wait only costs anything when the server is idle.

Items are light or heavy (the server calls an image heavy when MTCNN has a large picture to
search: seconds, not milliseconds). Heavy items never share a batch with light ones, and
while light items are waiting, heavy batches get at most `heavy_share` of the worker's time:
after a heavy batch that took t seconds, light batches run for t * (1 - share) / share
seconds before the next heavy one (at once if no light item waits). So a stream of large or
hostile photos slows small requests by a bounded factor instead of queueing them behind
seconds of detection, and heavy items are never starved.
"""

from __future__ import annotations

import collections
import logging
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
                 max_wait: float = 0.005, heavy_share: float = 1 / 3):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.heavy_share = heavy_share
        self.seconds_per_item = 0.0  # moving average, for Retry-After estimates
        self._cond = threading.Condition()
        self._light: collections.deque[_Job] = collections.deque()
        self._heavy: collections.deque[_Job] = collections.deque()
        self._closing = False
        self._light_owed = 0.0  # seconds of light batches due before the next heavy batch
        self._thread = threading.Thread(target=self._loop, name="fakeface-batcher", daemon=True)
        self._thread.start()

    def submit(self, item, heavy: bool = False) -> Future:
        """Queue one item; cancel the returned Future to drop it if it has not started."""
        job = _Job(item)
        with self._cond:
            (self._heavy if heavy else self._light).append(job)
            self._cond.notify()
        return job.future

    def close(self) -> None:
        """Finish the items already queued, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _take(self, queue: collections.deque) -> list[_Job]:
        return [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]

    def _next(self) -> tuple[list[_Job], bool] | None:
        """The next batch and whether it is heavy; None once closed and drained."""
        with self._cond:
            while not (self._light or self._heavy or self._closing):
                self._cond.wait()
            if not (self._light or self._heavy):
                return None
            if self._heavy and (not self._light or self._light_owed <= 0):
                return self._take(self._heavy), True
            deadline = time.monotonic() + self.max_wait
            while len(self._light) < self.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take(self._light), False

    def _loop(self) -> None:
        while (batch := self._next()) is not None:
            jobs, heavy = batch
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            started = time.monotonic()
            self._run(jobs)
            took = time.monotonic() - started
            if heavy:
                self._light_owed = took * (1 - self.heavy_share) / self.heavy_share
            else:
                self._light_owed -= took
            self.seconds_per_item = 0.8 * self.seconds_per_item + 0.2 * took / len(jobs)

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
