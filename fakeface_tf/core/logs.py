"""Library modules report through `logging`; the CLI and the notebooks show those lines.

`show()` sends the package's INFO lines to stdout and warnings to stderr, looking the stream
up at each line, so pytest's capture and a notebook cell both see them. Library code that
is imported elsewhere stays silent unless its user configures logging.
"""

from __future__ import annotations

import logging
import sys

PACKAGE = "fakeface_tf"


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
