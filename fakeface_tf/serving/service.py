"""The work behind the web app's routes: admit a request, read its upload, decode it in a worker,
score it in a batch, and answer, all within the server's limits.

At most `max_pending` requests are in flight; the next one is refused (503) with a Retry-After
estimated from the batcher's pace. A client that hangs up stops its own work. The same counters
say whether the server is ready for more (`readiness`) and feed /metrics (metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from fakeface_tf.core import memory
from fakeface_tf.serving.answers import model_identity, payload
from fakeface_tf.serving.batcher import Batcher
from fakeface_tf.serving.inference import Detector, band_summary
from fakeface_tf.serving.isolation import DecodePool
from fakeface_tf.serving.limits import Limits
from fakeface_tf.serving.metrics import Metrics
from fakeface_tf.serving.refusals import ClientGone, ServerBusy, UploadTimeout
from fakeface_tf.serving.uploads import parse_explain, parse_images, read_upload

# Images above this many pixels go through MTCNN in the batcher's heavy lane (batcher.py):
# searching a large photo takes seconds, a face-sized one milliseconds.
HEAVY_PIXELS = 640 * 640


def batch_work(detector: Detector, metrics: Metrics | None = None):
    """The batcher's work: score the whole batch at once, then explain the items that asked."""

    def run(items: list[tuple]):
        if metrics is not None:
            metrics.batch_size.observe(len(items))
        results = detector.score_images([image for image, _ in items])
        explained = [i for i, (_, explain) in enumerate(items) if explain and results[i].face.ok]
        for i in range(len(items)):
            if i not in explained:
                yield i, results[i]
        for i in explained:
            yield i, detector.explain(results[i], items[i][1])
        memory.release()

    return run


async def _disconnected(request: Request) -> None:
    """Return once the client has hung up (its body has been read: nothing else can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work):
    """The result of awaiting `work`, which is cancelled (stopping its decode worker or taking
    it out of the batch queue) if the client hangs up first or this request is cancelled."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone()
    return task.result()


@dataclass
class Service:
    """One model's detector, batcher and decode pool, the limits, and the requests in flight."""

    detector: Detector
    limits: Limits
    batcher: Batcher
    decoders: DecodePool
    identity: dict
    metrics: Metrics
    pending: int = 0

    @classmethod
    def for_detector(cls, detector: Detector, limits: Limits) -> Service:
        """A service for a loaded detector; its decode workers start with the app (`lifespan`)."""
        identity = model_identity(detector)
        metrics = Metrics(identity)
        batcher = Batcher(batch_work(detector, metrics), limits.max_batch, limits.max_wait_ms / 1000)
        decoders = DecodePool(limits.decode_workers, limits.decode_memory_mb, limits.decode_timeout,
                              max_bytes=limits.max_bytes)
        service = cls(detector, limits, batcher, decoders, identity, metrics)
        metrics.watch(lambda: service.pending, decoders.available)
        return service

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI):
        """Start the decode workers with the app; stop them and the batcher when it stops."""
        self.decoders.start()
        yield
        self.batcher.close()
        self.decoders.close()

    def retry_after(self) -> int:
        """Seconds until the requests in flight are likely done, at the batcher's pace."""
        return max(1, math.ceil(self.pending * self.batcher.seconds_per_item))

    def health(self) -> dict:
        """The answer of /api/health: the model, its settings (its "uncertain" band only when it
        has one), and the load right now."""
        health = {
            "status": "ok",
            "model": self.identity,
            "threshold": self.detector.threshold,
            "image_size": self.detector.model.image_size,
            "explain_methods": list(self.detector.explain_methods),
            "max_upload_mb": self.limits.max_upload_mb,
            "pending": self.pending,
            "decoders_ready": self.decoders.available(),
        }
        if self.detector.band is not None:
            health["band"] = band_summary(self.detector.band)
        return health

    def readiness(self) -> list[str]:
        """Why the server should get no new requests now (empty: ready): the requests in flight
        are at the --max-pending cap, or no decode worker is free for another upload."""
        reasons = []
        if self.pending >= self.limits.max_pending:
            reasons.append(f"{self.pending} requests in flight, at the --max-pending cap")
        if self.decoders.available() == 0:
            reasons.append(f"no decode worker free (of {self.limits.decode_workers})")
        return reasons

    async def predict(self, request: Request) -> dict:
        """The answer to one upload, or a refusal (busy, too slow, bad upload, client gone)."""
        limits = self.limits
        if self.pending >= limits.max_pending:
            self.metrics.busy.labels("max_pending").inc()
            raise ServerBusy(f"server busy: {self.pending} requests in flight; retry later", self.retry_after())
        self.pending += 1
        try:
            async with asyncio.timeout(limits.request_timeout):
                data, fields = await self._receive(request)
                explain = parse_explain(fields.get("explain"))
                with_images = parse_images(fields.get("images"))
                result = await unless_disconnected(request, self._verdict(data, explain))
                del data
                answer = await run_in_threadpool(payload, result, with_images)
        except TimeoutError:
            self.metrics.busy.labels("request_timeout").inc()
            raise ServerBusy(f"server busy: no answer within {limits.request_timeout:g} s; retry later",
                             self.retry_after()) from None
        finally:
            self.pending -= 1
        request.state.verdict = answer["verdict"]  # for the access log (access.py)
        self.metrics.verdicts.labels(answer["verdict"]).inc()
        return answer

    async def _receive(self, request: Request) -> tuple[bytes, dict[str, str]]:
        """The upload and its fields, within the body time limit (else 408)."""
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                return await read_upload(request, self.limits.max_bytes)
        except TimeoutError:
            raise UploadTimeout(f"the upload took longer than {self.limits.body_timeout:g} s") from None

    async def _verdict(self, data: bytes, explain: str | None):
        image = await self.decoders.decode(data)
        heavy = image.shape[0] * image.shape[1] > HEAVY_PIXELS
        return await asyncio.wrap_future(self.batcher.submit((image, explain), heavy))
