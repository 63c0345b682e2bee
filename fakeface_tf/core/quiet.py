"""A quiet TensorFlow start: its C++ start-up lines are dropped, everything else is kept.

TensorFlow prints an absl "All log messages before absl::InitializeLog()" warning and a
oneDNN notice from C++ while it loads, before `TF_CPP_MIN_LOG_LEVEL` takes effect, on every
`fakeface` call and in every notebook cell that first touches it. `install()` wraps the one
`import tensorflow` of the process: file descriptor 2 goes to a temporary file while the
module loads, and the captured lines come back afterwards minus the known start-up noise.
TensorFlow is still imported only when something needs it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile

NOISE = re.compile(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|"
                   r"To enable the following instructions|rebuild TensorFlow with the appropriate")


@contextlib.contextmanager
def filtered_stderr():
    """Capture file descriptor 2 (C++ and Python alike) and replay it without NOISE lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(True)
                    if not NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)
        python_log_level()


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` like the normal path finder, but loads it under filtered_stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one use: the first import
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


# TF_CPP_MIN_LOG_LEVEL -> the lowest level TensorFlow's Python logger shows, so that one setting
# rules both halves: it otherwise prints "INFO:tensorflow:Assets written to ..." on every
# SavedModel export, twice once absl has called logging.basicConfig().
PYTHON_LEVELS = {"0": logging.INFO, "1": logging.WARNING, "2": logging.ERROR, "3": logging.CRITICAL}


def python_log_level() -> None:
    """Give TensorFlow's Python logger the threshold TF_CPP_MIN_LOG_LEVEL gives its C++ side."""
    level = PYTHON_LEVELS.get(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"), logging.INFO)
    logging.getLogger("tensorflow").setLevel(level)


def install() -> None:
    """Quiet TensorFlow's logs for this process (a no-op once TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING lines
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
