"""Library modules report through `logging`; the CLI and the notebooks show those lines.

`show()` sends the package's INFO lines to stdout and warnings to stderr, looking the stream
up at each line, so pytest's capture and a notebook cell both see them. Library code that
is imported elsewhere stays silent unless its user configures logging.
"""

from __future__ import annotations

import logging
import sys
import time

PACKAGE = "fakeface_tf"
PROGRESS_SECONDS = 5.0  # long work logs how far it is at least this often

log = logging.getLogger(__name__)


class _Console(logging.Handler):
    """INFO and below to the current sys.stdout, WARNING and above to the current sys.stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def show(level: int = logging.INFO) -> None:
    """Show the package's log lines on the console as plain text (idempotent). They stop at
    this handler: a root handler (absl adds one on its first log line) would print them again."""
    logger = logging.getLogger(PACKAGE)
    logger.setLevel(level)
    logger.propagate = False
    if not any(isinstance(h, _Console) for h in logger.handlers):
        handler = _Console()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class Progress:
    """Logs 'WHAT: done / total UNIT (seconds)' at most every PROGRESS_SECONDS, and at the end:
    progress that reaches a notebook cell or a log file, where no bar redraws."""

    def __init__(self, what: str, total: int | None, unit: str = "faces", announce: bool = True):
        self.what, self.total, self.unit, self.count = what, total, unit, 0
        self.started = self.last = time.monotonic()
        if announce:
            log.info("%s: %s %s", what, total if total is not None else "?", unit)

    def update(self, count: int) -> None:
        self.count += count
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            log.info("%s: %d / %s %s (%.0f s)", self.what, self.count,
                     self.total if self.total is not None else "?", self.unit, now - self.started)

    def done(self) -> None:
        log.info("%s: %d %s in %.0f s", self.what, self.count, self.unit,
                 time.monotonic() - self.started)
