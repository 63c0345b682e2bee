"""Peak memory of a process and its children, sampled in a background thread.

Memory here is anonymous RSS (`RssAnon` in /proc/PID/status: heap, stacks, tensors), the
project's measure: unlike plain RSS it leaves out mapped files (shared libraries, memory-
mapped records), which the OS can drop at will. Where /proc has no RssAnon (not Linux),
psutil's plain RSS stands in. The benchmarks share this one sampler.
"""

from __future__ import annotations

import threading
import time

import psutil


def anon_rss(pid: int) -> int:
    """Anonymous resident bytes of one process (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    except OSError:
        pass
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


class RssWatcher(threading.Thread):
    """Samples the anonymous RSS of `pid` and (with `children`) all its descendants every
    `interval` seconds; keeps the peak and, with `keep_samples`, every (monotonic time, bytes)."""

    def __init__(self, pid: int, interval: float = 0.05, children: bool = True,
                 keep_samples: bool = False):
        super().__init__(daemon=True)
        self.process, self.interval, self.children = psutil.Process(pid), interval, children
        self.peak, self.samples, self.keep_samples = 0, [], keep_samples
        self.stop = threading.Event()

    def current(self) -> int:
        pids = [self.process.pid]
        if self.children:
            try:
                pids += [child.pid for child in self.process.children(recursive=True)]
            except psutil.Error:
                pass
        return sum(anon_rss(pid) for pid in pids)

    def run(self) -> None:
        while not self.stop.is_set():
            value = self.current()
            self.peak = max(self.peak, value)
            if self.keep_samples:
                self.samples.append((time.monotonic(), value))
            self.stop.wait(self.interval)

    def peak_between(self, start: float, end: float) -> int:
        """The highest sample taken between two time.monotonic() readings (needs keep_samples)."""
        return max((value for t, value in self.samples if start <= t <= end), default=0)
