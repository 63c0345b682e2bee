"""What one `fakeface serve` accepts and how much it takes on at once: the server's settings.

Plain dataclasses with no web stack behind them, so the command line can show their defaults
in `--help` without loading FastAPI or uvicorn.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections one server keeps and how long a request head may take."""

    header_timeout: float = 10.0  # seconds for a request head to arrive
    max_connections: int = 1000  # open connections in all
    max_per_client: int = 64  # open connections per client address
    retry_after: int = 5  # seconds, in the 503 for a connection over a cap


@dataclass
class Limits:
    """What one server accepts and how much it takes on at once (`fakeface serve` options)."""

    max_upload_mb: float = 10.0  # larger uploads: 413
    max_pending: int = 32  # requests in flight (reading, queued or running); more: 503
    body_timeout: float = 30.0  # seconds to receive the whole upload; slower: 408
    request_timeout: float = 60.0  # seconds from arrival to answer; longer: 503
    decode_workers: int = 2  # worker processes decoding uploads, so uploads decoded at once
    # Memory each decode worker may take on, a hard cap (more: 413); None: what any upload
    # images.py accepts needs (isolation.default_memory_mb, ~350 MB for 10 MB uploads).
    decode_memory_mb: float | None = None
    decode_timeout: float = 20.0  # seconds one decode may take; longer: its worker is killed, 413
    max_batch: int = 8  # images per pass through MTCNN and the model (16 holds ~350 MB more)
    max_wait_ms: float = 5.0  # how long an idle server waits to fill a batch
    connections: ConnectionLimits = ConnectionLimits()  # head time-out, connection caps

    @property
    def max_bytes(self) -> int:
        """The upload cap in bytes."""
        return int(self.max_upload_mb * 2**20)
