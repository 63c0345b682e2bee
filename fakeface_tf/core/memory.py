"""Give memory back to the OS after large requests, so a server's RSS stays flat.

glibc keeps freed blocks in per-thread arenas and raises its mmap threshold after the first
large free, so a burst of big decodes leaves the server gigabytes larger for good. Capping
the arenas and trimming after each decode or batch returns those pages. Elsewhere than glibc
(macOS, musl) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_ARENA_MAX = -8  # mallopt parameter numbers, from glibc's malloc.h


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tame_malloc(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (one per thread by default) before the server starts threads."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def release() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim; about a millisecond)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
