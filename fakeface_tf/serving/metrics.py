"""What `fakeface serve` tells Prometheus at /metrics (prometheus_client, one registry per app).

Requests by route, method and status; latency by route; how many images each pass through the
model held; the requests in flight and the decode workers free right now; 503s by reason; verdicts.
A registry per app (not the library's global one), so several apps in one process (the tests)
count apart.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               ProcessCollector, generate_latest)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The app's counters, histograms and gauges, and their text exposition."""

    def __init__(self, identity: dict):
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # the server's memory, CPU time and open files
        Info("fakeface_model", "The model being served", registry=registry).info(
            {key: str(value) for key, value in identity.items()})
        self.requests = Counter("fakeface_http_requests", "HTTP requests answered, by route and status",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("fakeface_http_request_duration_seconds",
                                 "Seconds from a request's arrival to its answer, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("fakeface_batch_size", "Images per pass through MTCNN and the model",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.busy = Counter("fakeface_busy_refusals", "Requests answered 503: at the --max-pending cap "
                            "(max_pending) or not answered within --request-timeout (request_timeout)",
                            ["reason"], registry=registry)
        self.verdicts = Counter("fakeface_verdicts", "Predict answers, by verdict", ["verdict"],
                                registry=registry)
        self.pending = Gauge("fakeface_pending_requests", "Predict requests in flight (reading, "
                             "decoding, queued or scored): the queue depth", registry=registry)
        self.decoders_free = Gauge("fakeface_decoders_free", "Decode workers free for an upload now",
                                   registry=registry)

    def watch(self, pending: Callable[[], float], decoders_free: Callable[[], float]) -> None:
        """Read the queue depth and the free decode workers when scraped, not on every change."""
        self.pending.set_function(pending)
        self.decoders_free.set_function(decoders_free)

    def observe(self, route: str, method: str, status: int | str, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The scrape body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
